// Kernels for the ops of the training step other than convolution (batch
// norm, ReLU, pooling, residual add, fully connected, loss, optimizer). Each
// is an OpKernel prepared from an op name, a variant and numeric parameters;
// it declares the buffers it takes, in order, with their exact lengths, and
// the N-API layer checks them before anything is queued.
//
// Every op has a `reference` variant (plain loops, double accumulation: the
// oracle) and a `fast` one (vectorized, threaded, our GEMM where it applies).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/stream.h"
#include "cpu/op_params.h"

namespace stepscope {

class OpKernel {
 public:
  OpKernel(std::string op, std::string variant, std::string pass, std::string layer)
      : op_(std::move(op)), variant_(std::move(variant)), pass_(std::move(pass)), layer_(std::move(layer)) {}
  virtual ~OpKernel() = default;

  // buffers[i] has buffers()[i].length floats (checked by the caller).
  virtual void run(const std::vector<float*>& buffers) = 0;

  void execute(const std::vector<float*>& buffers, KernelRecorder& recorder) {
    recorder.run(info(), [&] { run(buffers); });
  }
  const std::vector<BufferSpec>& buffers() const { return buffers_; }
  const std::string& op() const { return op_; }
  const std::string& variant() const { return variant_; }
  const std::string& pass() const { return pass_; }
  const std::string& layer() const { return layer_; }
  double flops() const { return flops_; }
  double bytes() const;

 protected:
  KernelInfo info() const;
  std::string op_, variant_, pass_, layer_;
  std::vector<BufferSpec> buffers_;
  double flops_ = 0;
};

std::vector<OpVariantInfo> cpuOpVariants();
// Throws ERR_UNKNOWN_OP / ERR_UNKNOWN_VARIANT listing the valid names, or
// ERR_INVALID_ARG naming a bad parameter.
std::unique_ptr<OpKernel> makeCpuOpKernel(const std::string& op, const std::string& variant, const OpParams& params,
                                          const std::string& layer);

// Factories, one per op family (one file each); `fast` is false for `reference`.
std::unique_ptr<OpKernel> makeBatchNorm(const std::string& op, bool fast, const OpParams& p, const std::string& layer);
std::unique_ptr<OpKernel> makeEltwise(const std::string& op, bool fast, const OpParams& p, const std::string& layer);
std::unique_ptr<OpKernel> makePool(const std::string& op, bool fast, const OpParams& p, const std::string& layer);
std::unique_ptr<OpKernel> makeLinear(const std::string& op, bool fast, const OpParams& p, const std::string& layer);
std::unique_ptr<OpKernel> makeLoss(const std::string& op, bool fast, const OpParams& p, const std::string& layer);
std::unique_ptr<OpKernel> makeSgd(const std::string& op, bool fast, const OpParams& p, const std::string& layer);
std::unique_ptr<OpKernel> makeComm(const std::string& op, bool fast, const OpParams& p, const std::string& layer);

}  // namespace stepscope
