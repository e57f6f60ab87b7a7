// The table of CUDA convolution variants and the factory that picks one.
#include "cuda/conv_cuda.h"

#include <algorithm>

#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

CudaConvKernel::CudaConvKernel(const ConvShape& shape, ConvPass pass, std::string variant, std::string layer)
    : shape_(shape),
      pass_(pass),
      variant_(std::move(variant)),
      layer_(std::move(layer)),
      device_(currentDevice()),
      context_((layer_.empty() ? shape_.describe() : layer_) + " " + convPassName(pass_) + " " + variant_) {}

void CudaConvKernel::useWeightCopyOf(CudaConvKernel& forward) {
  throw CudaError("ERR_UNSUPPORTED", context() + ": cannot use the weight copy of " + forward.context() + ": '" + variant_ +
                                         "' takes the weights as they are (only cudnn:* kernels with NHWC or bf16 buffers convert them)",
                  "", layer_);
}

KernelInfo CudaConvKernel::info() const {
  KernelInfo i;
  i.op = "conv";
  i.variant = variant_;
  i.layer = layer_;
  i.pass = convPassName(pass_);
  i.flops = shape_.flops();
  // x and y at their dtype's size, w fp32; a kernel that hands cuDNN a
  // converted copy of w (NHWC, bf16) also reads w and writes the copy.
  const double activation = bf16() ? 2.0 : 4.0;
  i.bytes = activation * double(shape_.xSize() + shape_.ySize()) + 4.0 * double(shape_.wSize()) + convertedWeightBytes();
  return i;
}

std::vector<CudaConvVariantInfo> cudaConvVariants() {
  const std::vector<std::string> all = {"fwd", "bwd-data", "bwd-filter"};
  std::vector<CudaConvVariantInfo> out;
  // One row per cuDNN algorithm name, with the passes that have it.
  std::vector<std::string> names;
  for (ConvPass p : {ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter})
    for (const std::string& n : cudnnAlgorithmNames(p))
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  for (const std::string& n : names) {
    CudaConvVariantInfo v{"cudnn:" + n, "cuDNN's " + n + " algorithm (legacy API), fp32 tensors", {}};
    for (ConvPass p : {ConvPass::Forward, ConvPass::BackwardData, ConvPass::BackwardFilter}) {
      auto algos = cudnnAlgorithmNames(p);
      if (std::find(algos.begin(), algos.end(), n) != algos.end()) v.passes.push_back(convPassName(p));
    }
    out.push_back(v);
  }
  out.push_back({"cudnn:heuristic", "what cuDNN picks without timing (cudnnGetConvolution*Algorithm_v7)", all});
  out.push_back({"cudnn:autotune", "every cuDNN algorithm timed (cudnnFind*), the fastest kept for the layer", all});
  out.push_back({"direct", "our CUDA kernel: one thread per output element, fp32", all});
  out.push_back({"im2col-cublas", "our im2col/col2im kernels + cuBLAS GEMM (cublasGemmEx; tf32 with --dtype tf32)", all});
  out.push_back({"implicit-gemm-tf32", "our implicit GEMM on tensor cores (WMMA m16n16k8), tf32 inputs, fp32 accumulation", all});
  out.push_back({"implicit-gemm-bf16", "our implicit GEMM on tensor cores (WMMA m16n16k16), bf16 inputs, fp32 accumulation", all});
  out.push_back({"implicit-gemm-tf32-pipelined",
                 "our tf32 implicit GEMM with its gathers pipelined (cp.async into 3 stages, 2 K steps ahead of the WMMA)", all});
  out.push_back({"implicit-gemm-tf32-along-m",
                 "the pipelined tf32 implicit GEMM with A (x in fwd, dy in bwd-data) gathered along m: a warp copies 32 consecutive "
                 "positions, their taps' validity a per-row bit mask and kk's offsets a per-layer table (bwd-filter: as pipelined)",
                 all});
  return out;
}

namespace {
std::unique_ptr<CudaConvKernel> makeOnCurrentDevice(const ConvShape& shape, ConvPass pass, const std::string& variant, const std::string& layer,
                                                    ConvMath math, bool nhwc) {
  if (variant.rfind("cudnn:", 0) == 0) return makeCudnnConv(shape, pass, variant, layer, math, nhwc);
  if (variant == "direct") return makeDirectCudaConv(shape, pass, layer);
  if (variant == "im2col-cublas") return makeIm2colCublasConv(shape, pass, layer, math);
  if (variant == "implicit-gemm-tf32") return makeImplicitGemmConv(shape, pass, layer, ImplicitGemmKind::Tf32);
  if (variant == "implicit-gemm-bf16") return makeImplicitGemmConv(shape, pass, layer, ImplicitGemmKind::Bf16);
  if (variant == "implicit-gemm-tf32-pipelined") return makeImplicitGemmConv(shape, pass, layer, ImplicitGemmKind::Tf32Pipelined);
  if (variant == "implicit-gemm-tf32-along-m") return makeImplicitGemmConv(shape, pass, layer, ImplicitGemmKind::Tf32AlongM);
  throw Error("ERR_UNKNOWN_VARIANT", "conv variant '" + variant + "' has no factory");  // a table/factory mismatch
}
}  // namespace

std::unique_ptr<CudaConvKernel> makeCudaConvKernel(const ConvShape& shape, ConvPass pass, const std::string& variant,
                                                   const std::string& layer, ConvMath math, bool nhwc, int device) {
  shape.validate();
  std::string names;
  const CudaConvVariantInfo* found = nullptr;
  const auto table = cudaConvVariants();
  for (const auto& v : table) {
    names += (names.empty() ? "" : ", ") + v.name;
    if (v.name == variant) found = &v;
  }
  if (!found) throw Error("ERR_UNKNOWN_VARIANT", "unknown conv variant '" + variant + "' on the cuda backend: allowed " + names);
  const std::string passName = convPassName(pass);
  if (std::find(found->passes.begin(), found->passes.end(), passName) == found->passes.end()) {
    std::string algos;
    for (const auto& a : cudnnAlgorithmNames(pass)) algos += (algos.empty() ? "cudnn:" : ", cudnn:") + a;
    throw CudaError("ERR_UNSUPPORTED", "conv variant '" + variant + "' has no " + passName + " pass; " + passName +
                                           " cuDNN algorithms: " + algos,
                    "no such algorithm", layer);
  }
  const bool cudnn = variant.rfind("cudnn:", 0) == 0;
  if (nhwc && !cudnn) {
    throw CudaError("ERR_UNSUPPORTED", layer + " " + passName + " " + variant + ": our own kernels take NCHW only; with layout nhwc use a cudnn:* variant",
                    "NCHW only", layer);
  }
  if (math == ConvMath::Bf16 && !cudnn) {
    throw CudaError("ERR_UNSUPPORTED", layer + " " + passName + " " + variant +
                                           ": our own kernels take fp32 buffers; with dtype bf16 use a cudnn:* variant (implicit-gemm-bf16 rounds fp32 buffers)",
                    "fp32 buffers only", layer);
  }
  bindDevice(device, "ConvKernel");  // its workspace, handle and autotuning are that GPU's (the kernel remembers it)
  return makeOnCurrentDevice(shape, pass, variant, layer, math, nhwc);
}

}  // namespace stepscope
