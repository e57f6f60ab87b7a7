// Batch norm through cuDNN's library kernels (variant `cudnn`, legacy API,
// spatial mode, NCHW or NHWC), the same op, parameters and buffers as ops_batchnorm.cu:
//   batchnorm-fwd: cudnnBatchNormalizationForwardTraining (batch statistics,
//     running statistics with factor `momentum`, the saved mean and 1/sqrt(var+eps))
//   batchnorm-bwd: cudnnBatchNormalizationBackward (dx, dgamma, dbeta from the saved statistics)
// cuDNN fuses a ReLU only in its NHWC half-precision path, so relu=1 is
// refused here (the plan's `fused-relu` is our own kernel). Descriptors are
// made at the first launch: describing the kernel makes no cuDNN call.
#include <cudnn.h>

#include "core/error.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"
#include "cuda/op_cuda.h"

namespace stepscope {
namespace {

class CudnnBatchNorm : public CudaOpKernel {
 public:
  CudnnBatchNorm(bool forward, int n, int c, long long hw, bool nhwc, bool bf16, double eps, double momentum, const std::string& layer)
      : CudaOpKernel("batchnorm", forward ? "fwd" : "bwd", layer), forward_(forward), nhwc_(nhwc), bf16_(bf16), n_(n), c_(c), hw_(hw), eps_(eps), momentum_(momentum) {
    variant_ = "cudnn";
    const long long N = (long long)n * c * hw;
    const bool h = bf16;  // x, y, dy, dx in bf16; cuDNN keeps the scale, bias and statistics fp32
    if (forward) {
      buffers_ = {{"x", N, h}, {"gamma", c}, {"beta", c}, {"running_mean", c}, {"running_var", c}, {"y", N, h}, {"save_mean", c}, {"save_invstd", c}};
    } else {
      buffers_ = {{"x", N, h}, {"gamma", c}, {"save_mean", c}, {"save_invstd", c}, {"dy", N, h}, {"dx", N, h}, {"dgamma", c}, {"dbeta", c}};
    }
    flops_ = (forward ? 8.0 : 10.0) * double(N);
  }

  ~CudnnBatchNorm() override {
    if (x_) cudnnDestroyTensorDescriptor(x_);
    if (bn_) cudnnDestroyTensorDescriptor(bn_);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    const std::string ctx = context();
    cudnnHandle_t h = cudnnHandle();
    if (!described_) describe(ctx);
    checkCudnn(cudnnSetStream(h, stream), "cudnnSetStream", ctx);
    const float one = 1.0f, zero = 0.0f;
    if (forward_) {
      checkCudnn(cudnnBatchNormalizationForwardTraining(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, x_, b[0], x_, b[5], bn_, b[1], b[2], momentum_,
                                                        b[3], b[4], eps_, b[6], b[7]),
                 "cudnnBatchNormalizationForwardTraining", ctx);
    } else {
      // beta 0: dx and the parameter gradients are overwritten, as by our kernel.
      checkCudnn(cudnnBatchNormalizationBackward(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, x_, b[0], x_, b[4], x_, b[5], bn_, b[1],
                                                 b[6], b[7], eps_, b[2], b[3]),
                 "cudnnBatchNormalizationBackward", ctx);
    }
  }

 private:
  void describe(const std::string& ctx) {
    // hw as the height, width 1: cuDNN's spatial mode reduces over both.
    if (hw_ > 2147483647LL) throw Error("ERR_UNSUPPORTED", ctx + ": cudnn batch norm: hw " + std::to_string(hw_) + " exceeds cuDNN's int dimensions");
    // A failure part-way leaves described_ false: the next launch describes again (the destructor frees what exists).
    if (!x_) checkCudnn(cudnnCreateTensorDescriptor(&x_), "cudnnCreateTensorDescriptor", ctx);
    if (!bn_) checkCudnn(cudnnCreateTensorDescriptor(&bn_), "cudnnCreateTensorDescriptor", ctx);
    checkCudnn(cudnnSetTensor4dDescriptor(x_, nhwc_ ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, bf16_ ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT, n_, c_, int(hw_), 1),
               "cudnnSetTensor4dDescriptor", ctx);
    // The scale, bias and statistics are fp32 whatever x is (deriving the descriptor from a bf16 x is not documented to give FLOAT).
    checkCudnn(cudnnSetTensor4dDescriptor(bn_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, c_, 1, 1), "cudnnSetTensor4dDescriptor (scale)", ctx);
    described_ = true;
  }

  bool forward_, nhwc_, bf16_;
  int n_, c_;
  long long hw_;
  double eps_, momentum_;
  cudnnTensorDescriptor_t x_ = nullptr, bn_ = nullptr;
  bool described_ = false;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudnnBatchNorm(const std::string& op, const OpParams& p, const std::string& layer) {
  const int n = p.integer("n", 1, 1 << 20), c = p.integer("c", 1, 1 << 20);
  const long long hw = p.integer("hw", 1, 1 << 28);
  const double eps = p.number("eps", 1e-5), momentum = p.number("momentum", 0.1);
  if (p.flag("relu")) {
    throw Error("ERR_UNSUPPORTED", op + " cudnn: no fused ReLU for NCHW fp32 (cuDNN fuses it only in its NHWC half-precision path); allowed: relu=0, or variant cuda");
  }
  if (eps < CUDNN_BN_MIN_EPSILON) throw Error("ERR_INVALID_ARG", op + " cudnn: eps " + std::to_string(eps) + " is below cuDNN's minimum " + std::to_string(CUDNN_BN_MIN_EPSILON));
  return std::make_unique<CudnnBatchNorm>(op == "batchnorm-fwd", n, c, hw, p.flag("nhwc"), p.flag("bf16"), eps, momentum, layer);
}

}  // namespace stepscope
