// A ConvKernel is one variant of one convolution pass at one shape, prepared
// ahead of time (workspace, library primitives) and then executed as often as
// needed. Tensor roles per pass are in conv_shape.h; `x`, `w`, `y` always name
// the activation, the filter and the output-side tensor (dx, dw, dy for
// the backward passes).
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/stream.h"
#include "cpu/conv_shape.h"

namespace stepscope {

struct ConvTensors {
  float* x;  // x (fwd, bwd-filter) or dx (bwd-data)
  float* w;  // w (fwd, bwd-data) or dw (bwd-filter)
  float* y;  // y (fwd) or dy (bwd-data, bwd-filter)
};

class ConvKernel {
 public:
  ConvKernel(const ConvShape& shape, ConvPass pass, std::string variant, std::string layer)
      : shape_(shape), pass_(pass), variant_(std::move(variant)), layer_(std::move(layer)) {}
  virtual ~ConvKernel() = default;

  // Runs on a stream thread; times itself (and any reorders) through recorder.
  virtual void execute(const ConvTensors& t, KernelRecorder& recorder) = 0;
  virtual size_t workspaceBytes() const { return 0; }
  // What actually runs, e.g. oneDNN's "jit:avx512_core" or our GEMM's micro-kernel.
  virtual std::string implementation() const { return variant_; }

  const ConvShape& shape() const { return shape_; }
  ConvPass pass() const { return pass_; }
  const std::string& variant() const { return variant_; }
  const std::string& layer() const { return layer_; }
  // Workspace is per kernel: executions on different streams take turns.
  std::mutex& executionMutex() { return executionMutex_; }

 protected:
  KernelInfo info(const char* op = "conv") const;
  ConvShape shape_;
  ConvPass pass_;
  std::string variant_;
  std::string layer_;
  std::mutex executionMutex_;
};

// One entry in the table of CPU convolution variants.
// The layout of the activation tensors a kernel reads and writes.
enum class ActivationLayout { NCHW, NChw16c };
struct ConvLayouts {
  ActivationLayout x = ActivationLayout::NCHW;  // x or dx
  ActivationLayout y = ActivationLayout::NCHW;  // y or dy
};

struct ConvVariantInfo {
  std::string name;
  std::string description;
  bool available;
  std::string unavailableReason;  // why not, when !available
};

std::vector<ConvVariantInfo> cpuConvVariants();
// Throws ERR_UNKNOWN_VARIANT (listing valid names) or ERR_UNAVAILABLE.
// Only `onednn` takes nChw16c activations (oneDNN's own blocked layout);
// the others throw ERR_UNAVAILABLE for them.
std::unique_ptr<ConvKernel> makeCpuConvKernel(const ConvShape& shape, ConvPass pass, const std::string& variant,
                                              const std::string& layer, ConvLayouts layouts = {});

// A variant made of one plain function per pass, timed as one kernel.
using ConvPassFn = void (*)(const ConvShape&, const ConvTensors&);
struct ConvPassFunctions {
  ConvPassFn forward, backwardData, backwardFilter;
};
std::unique_ptr<ConvKernel> makeFunctionConv(const ConvShape& shape, ConvPass pass, const std::string& variant,
                                             const std::string& layer, const ConvPassFunctions& functions);

// Factories, one per variant family (one file each).
std::unique_ptr<ConvKernel> makeReferenceConv(const ConvShape&, ConvPass, const std::string& layer);
std::unique_ptr<ConvKernel> makeDirectConv(const ConvShape&, ConvPass, const std::string& layer);
std::unique_ptr<ConvKernel> makeIm2colConv(const ConvShape&, ConvPass, const std::string& layer, bool useBlas);
std::unique_ptr<ConvKernel> makeOnednnConv(const ConvShape&, ConvPass, const std::string& layer, bool plainActivations,
                                           ConvLayouts layouts = {});
std::string onednnVersion();  // "" when built without oneDNN

}  // namespace stepscope
