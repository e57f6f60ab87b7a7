// The step's ops other than convolution on the CUDA backend: batch norm (with
// the fused ReLU), ReLU, residual add, max- and average-pool, the FC layer
// (cuBLAS), softmax cross-entropy, SGD, the local communicator with the
// modeled link (ops_comm.cu), and the input's conversion (ops_layout.cu).
// Same op names, parameters and buffers as the CPU kernels (cpu/op_kernel.h,
// read through cpu/op_params.h); NCHW or NHWC (nhwc=1), fp32 or bf16
// activations (bf16=1). Variant `cuda` (our kernels, cuBLAS for the FC GEMMs),
// and `cudnn` for batch norm. A kernel is prepared without a device (its
// buffers can be described and checked anywhere); launching needs one.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "core/timeline.h"
#include "cpu/op_params.h"

namespace stepscope {

class CudaOpKernel : public OpDescription {
 public:
  // Variant `cuda` (our kernels); a library's kernel sets its own (`cudnn`).
  CudaOpKernel(std::string op, std::string pass, std::string layer)
      : OpDescription(std::move(op), "cuda", std::move(pass), std::move(layer)) {}

  // buffers[i] holds buffers()[i].length values of device memory (checked by the caller).
  virtual void launch(const std::vector<float*>& buffers, cudaStream_t stream) = 0;

  // "bn1 fwd batchnorm": the context of every error message.
  std::string context() const;
};

std::vector<OpVariantInfo> cudaOpVariants();

// ERR_UNKNOWN_OP / ERR_UNKNOWN_VARIANT list the valid names; a bad parameter
// is ERR_INVALID_ARG naming it; the nChw16c layout (blocked=1) is
// ERR_UNSUPPORTED on this backend.
std::unique_ptr<CudaOpKernel> makeCudaOpKernel(const std::string& op, const std::string& variant, const OpParams& params,
                                               const std::string& layer);

// Factories, one per file.
std::unique_ptr<CudaOpKernel> makeCudaBatchNorm(const std::string& op, const OpParams& p, const std::string& layer);
// Variant `cudnn` of batchnorm-fwd/-bwd: cuDNN's library kernels (ops_batchnorm_cudnn.cc).
std::unique_ptr<CudaOpKernel> makeCudnnBatchNorm(const std::string& op, const OpParams& p, const std::string& layer);
std::unique_ptr<CudaOpKernel> makeCudaPool(const std::string& op, const OpParams& p, const std::string& layer);
std::unique_ptr<CudaOpKernel> makeCudaLinear(const std::string& op, const OpParams& p, const std::string& layer);
// relu-fwd, relu-bwd, add, softmax-xent, sgd.
std::unique_ptr<CudaOpKernel> makeCudaElementOp(const std::string& op, const OpParams& p, const std::string& layer);
// input (the step's fp32 NCHW batch into its activations' layout and dtype).
std::unique_ptr<CudaOpKernel> makeCudaInput(const std::string& op, const OpParams& p, const std::string& layer);
// allreduce-local, link-hold (the local communicator and the modeled link).
std::unique_ptr<CudaOpKernel> makeCudaComm(const std::string& op, const OpParams& p, const std::string& layer);

// A launch's error (bad configuration, no device) as a CudaError with the kernel's context.
void checkLaunch(const char* what, const std::string& context);
// Blocks of 256 threads covering `total` elements, at most 65535 * 32 (grid-stride loops do the rest).
int opGridFor(long long total);

}  // namespace stepscope
