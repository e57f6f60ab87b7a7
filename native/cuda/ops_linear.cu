// The FC layer on the CUDA backend, as cpu/linear.cc: x [n, in], w [out, in],
// b [out]. The GEMMs are cuBLAS sgemm in fp32 (operand layouts in
// op_index.h, checked on the host by check/op_host_check.cc); the bias and its
// gradient are our kernels.
//   fc-fwd: x, w, b -> y = x w^T + b
//   fc-bwd: x, w, dy -> dx = dy w, dw = dy^T x, db = sum over n of dy
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/cuda_error.h"
#include "cuda/device.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

__global__ void addBias(int n, int out, const float* __restrict__ bias, float* __restrict__ y) {
  const long long total = (long long)n * out;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    y[i] += bias[i % out];
}

// db[j] = sum over the n rows of dy[:, j], in double, one thread per column.
__global__ void biasGrad(int n, int out, const float* __restrict__ dy, float* __restrict__ db) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= out) return;
  double s = 0;
  for (int i = 0; i < n; ++i) s += dy[(long long)i * out + j];
  db[j] = float(s);
}

class CudaLinear : public CudaOpKernel {
 public:
  CudaLinear(bool forward, int n, int in, int out, const std::string& layer)
      : CudaOpKernel("fc", forward ? "fwd" : "bwd", layer), forward_(forward), n_(n), in_(in), out_(out) {
    const long long X = (long long)n * in, W = (long long)out * in, Y = (long long)n * out;
    if (forward) buffers_ = {{"x", X}, {"w", W}, {"b", out}, {"y", Y}};
    else buffers_ = {{"x", X}, {"w", W}, {"dy", Y}, {"dx", X}, {"dw", W}, {"db", out}};
    flops_ = (forward ? 2.0 : 4.0) * double(n) * in * out;
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    const std::string ctx = context();
    cublasHandle_t handle = cublasOn(stream, ctx);
    // fp32 products: the reference the CPU backend is checked against is fp32 too.
    checkCublas(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", ctx);
    if (forward_) {
      gemm(handle, fcForwardGemm(n_, in_, out_), b, ctx);
      addBias<<<opGridFor((long long)n_ * out_), 256, 0, stream>>>(n_, out_, b[2], b[3]);
      checkLaunch("fc bias launch", ctx);
    } else {
      gemm(handle, fcBackwardDataGemm(n_, in_, out_), b, ctx);
      gemm(handle, fcBackwardFilterGemm(n_, in_, out_), b, ctx);
      biasGrad<<<(out_ + 255) / 256, 256, 0, stream>>>(n_, out_, b[2], b[5]);
      checkLaunch("fc bias gradient launch", ctx);
    }
  }

 private:
  float* operand(FcOperand o, const std::vector<float*>& b) const {
    switch (o) {
      case FcOperand::X: return b[0];
      case FcOperand::W: return b[1];
      case FcOperand::Y: return b[3];
      case FcOperand::DY: return b[2];
      case FcOperand::DX: return b[3];
      case FcOperand::DW: return b[4];
    }
    return nullptr;
  }

  void gemm(cublasHandle_t handle, const FcGemm& g, const std::vector<float*>& b, const std::string& ctx) const {
    const float one = 1.f, zero = 0.f;
    checkCublas(cublasSgemm(handle, g.transA ? CUBLAS_OP_T : CUBLAS_OP_N, g.transB ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &one,
                            operand(g.a, b), g.lda, operand(g.b, b), g.ldb, &zero, operand(g.c, b), g.ldc),
                "cublasSgemm", ctx);
  }

  bool forward_;
  int n_, in_, out_;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaLinear(const std::string& op, const OpParams& p, const std::string& layer) {
  return std::make_unique<CudaLinear>(op == "fc-fwd", p.integer("n", 1, 1 << 20), p.integer("in", 1, 1 << 24), p.integer("out", 1, 1 << 24), layer);
}

}  // namespace stepscope
