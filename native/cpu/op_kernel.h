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

class OpKernel : public OpDescription {
 public:
  using OpDescription::OpDescription;

  // buffers[i] has buffers()[i].length floats (checked by the caller).
  virtual void run(const std::vector<float*>& buffers) = 0;

  void execute(const std::vector<float*>& buffers, KernelRecorder& recorder) {
    recorder.run(info(), [&] { run(buffers); });
  }
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
