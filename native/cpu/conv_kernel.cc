// The table of CPU convolution variants and the factory that picks one.
#include "cpu/conv_kernel.h"

#include "core/error.h"

namespace stepscope {

KernelInfo ConvKernel::info(const char* op) const {
  KernelInfo i;
  i.op = op;
  i.variant = variant_;
  i.layer = layer_;
  i.pass = convPassName(pass_);
  i.flops = shape_.flops();
  i.bytes = shape_.bytes();
  return i;
}

namespace {

class FunctionConv : public ConvKernel {
 public:
  FunctionConv(const ConvShape& shape, ConvPass pass, const std::string& variant, const std::string& layer,
               const ConvPassFunctions& functions)
      : ConvKernel(shape, pass, variant, layer),
        fn_(pass == ConvPass::Forward        ? functions.forward
            : pass == ConvPass::BackwardData ? functions.backwardData
                                             : functions.backwardFilter) {}
  void execute(const ConvTensors& t, KernelRecorder& recorder) override {
    recorder.run(info(), [&] { fn_(shape_, t); });
  }

 private:
  ConvPassFn fn_;
};

}  // namespace

std::unique_ptr<ConvKernel> makeFunctionConv(const ConvShape& shape, ConvPass pass, const std::string& variant,
                                             const std::string& layer, const ConvPassFunctions& functions) {
  return std::make_unique<FunctionConv>(shape, pass, variant, layer, functions);
}

static bool haveOnednn() {
#ifdef STEPSCOPE_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

static bool haveOpenblas() {
#ifdef STEPSCOPE_HAVE_OPENBLAS
  return true;
#else
  return false;
#endif
}

#ifndef STEPSCOPE_ONEDNN_BUILD_STATUS
#define STEPSCOPE_ONEDNN_BUILD_STATUS "not configured"
#endif
#ifndef STEPSCOPE_OPENBLAS_BUILD_STATUS
#define STEPSCOPE_OPENBLAS_BUILD_STATUS "not configured"
#endif

std::vector<ConvVariantInfo> cpuConvVariants() {
  return {
      {"reference", "plain loops, double accumulation: the test oracle", true, ""},
      {"direct", "direct loops over the output, vectorized along the row", true, ""},
      {"im2col-gemm", "im2col/col2im plus our own cache-blocked, vectorized GEMM", true, ""},
      {"im2col-blas", "im2col/col2im plus OpenBLAS sgemm (library GEMM)", haveOpenblas(),
       haveOpenblas() ? "" : std::string("OpenBLAS ") + STEPSCOPE_OPENBLAS_BUILD_STATUS},
      {"onednn", "oneDNN convolution in its preferred blocked layout (reorders timed as kernels of their own)",
       haveOnednn(), haveOnednn() ? "" : std::string("oneDNN ") + STEPSCOPE_ONEDNN_BUILD_STATUS},
      {"onednn-nchw", "oneDNN convolution on plain NCHW activations (no activation reorders; weights reordered)",
       haveOnednn(), haveOnednn() ? "" : std::string("oneDNN ") + STEPSCOPE_ONEDNN_BUILD_STATUS},
  };
}

std::unique_ptr<ConvKernel> makeCpuConvKernel(const ConvShape& shape, ConvPass pass, const std::string& variant,
                                              const std::string& layer, ConvLayouts layouts) {
  shape.validate();
  const bool blocked = layouts.x == ActivationLayout::NChw16c || layouts.y == ActivationLayout::NChw16c;
  if (blocked && variant != "onednn") {
    throw Error("ERR_UNAVAILABLE", "conv variant '" + variant + "' takes NCHW activations only; nChw16c needs 'onednn'");
  }
  if ((layouts.x == ActivationLayout::NChw16c && shape.c % 16) || (layouts.y == ActivationLayout::NChw16c && shape.k % 16)) {
    throw Error("ERR_INVALID_ARG", "conv " + shape.describe() + ": nChw16c needs channels divisible by 16");
  }
  std::string names;
  for (const auto& v : cpuConvVariants()) {
    names += (names.empty() ? "" : ", ") + v.name;
    if (v.name != variant) continue;
    if (!v.available) throw Error("ERR_UNAVAILABLE", "conv variant '" + variant + "' is unavailable: " + v.unavailableReason);
    if (variant == "reference") return makeReferenceConv(shape, pass, layer);
    if (variant == "direct") return makeDirectConv(shape, pass, layer);
    if (variant == "im2col-gemm") return makeIm2colConv(shape, pass, layer, false);
    if (variant == "im2col-blas") return makeIm2colConv(shape, pass, layer, true);
    if (variant == "onednn") return makeOnednnConv(shape, pass, layer, false, layouts);
    if (variant == "onednn-nchw") return makeOnednnConv(shape, pass, layer, true);
  }
  throw Error("ERR_UNKNOWN_VARIANT", "unknown conv variant '" + variant + "' on the cpu backend: allowed " + names);
}

}  // namespace stepscope
