// Variant `im2col-cublas`: our im2col / col2im kernels around cuBLAS GEMMs
// (cublasGemmStridedBatchedEx / cublasGemmEx, fp32 or TF32 compute).
// The column matrix holds the whole batch: col[n][c*R*S + r*S + s][p*Q + q].
//   fwd:        Y_n[K][PQ]    = W[K][CRS] x col_n[CRS][PQ]          (one batched GEMM)
//   bwd-data:   dcol_n[CRS][PQ] = W^T x dY_n[K][PQ], then col2im      (one batched GEMM)
//   bwd-filter: dW[K][CRS]   += dY_n[K][PQ] x col_n^T               (one GEMM per image)
// cuBLAS is column-major: a row-major [R][C] matrix is its C x R transpose.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/conv_cuda.h"
#include "cuda/conv_index.h"
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

namespace {

using namespace cudaconv;

__global__ void im2colKernel(Dims d, const float* __restrict__ x, float* __restrict__ col) {
  const long long total = (long long)d.n * d.c * d.r * d.s * d.p * d.q;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    col[i] = im2colAt(d, x, i);
}

__global__ void col2imKernel(Dims d, const float* __restrict__ col, float* __restrict__ dx) {
  const long long total = (long long)d.n * d.c * d.h * d.w;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    dx[i] = col2imAt(d, col, i);
}

int gridFor(long long total) {
  long long blocks = (total + 255) / 256;
  return int(blocks < 65535LL * 32 ? blocks : 65535LL * 32);
}

class Im2colCublasConv : public CudaConvKernel {
 public:
  Im2colCublasConv(const ConvShape& shape, ConvPass pass, const std::string& layer, ConvMath math)
      : CudaConvKernel(shape, pass, "im2col-cublas", layer), math_(math) {
    const size_t colFloats = size_t(shape.n) * shape.c * shape.r * shape.s * shape.p() * shape.q();
    col_ = std::make_unique<DeviceScratch>(colFloats * sizeof(float));
  }

  void launch(float* x, float* w, float* y, cudaStream_t stream) override {
    const ConvShape& sh = shape_;
    const Dims d{sh.n, sh.c, sh.h, sh.w, sh.k, sh.r, sh.s, sh.stride, sh.pad, sh.p(), sh.q()};
    float* col = static_cast<float*>(col_->get());
    const std::string& ctx = context();
    cublasHandle_t handle = cublasOn(stream, ctx);  // this thread's, on this GPU
    const cublasComputeType_t compute = math_ == ConvMath::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1.f, zero = 0.f;
    const int pass = pass_ == ConvPass::Forward ? 0 : pass_ == ConvPass::BackwardData ? 1 : 2;
    const GemmCall g = im2colGemm(pass, d);
    auto ptr = [&](Operand o) { return o == Operand::X ? x : o == Operand::W ? w : o == Operand::Y ? y : col; };
    const cublasOperation_t ta = g.transA ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (pass != 1) {
      im2colKernel<<<gridFor((long long)sh.n * sh.c * sh.r * sh.s * sh.p() * sh.q()), 256, 0, stream>>>(d, x, col);
      checkCuda(cudaGetLastError(), "im2col launch", ctx);
    }
    if (!g.perImageAccumulate) {
      checkCublas(cublasGemmStridedBatchedEx(handle, ta, tb, g.m, g.n, g.k, &one, ptr(g.a), CUDA_R_32F, g.lda, g.strideA,
                                             ptr(g.b), CUDA_R_32F, g.ldb, g.strideB, &zero, ptr(g.c), CUDA_R_32F, g.ldc,
                                             g.strideC, g.batch, compute, CUBLAS_GEMM_DEFAULT),
                  "cublasGemmStridedBatchedEx", ctx);
    } else {
      for (int n = 0; n < g.batch; ++n) {
        checkCublas(cublasGemmEx(handle, ta, tb, g.m, g.n, g.k, &one, ptr(g.a) + n * g.strideA, CUDA_R_32F, g.lda,
                                 ptr(g.b) + n * g.strideB, CUDA_R_32F, g.ldb, n == 0 ? &zero : &one, ptr(g.c), CUDA_R_32F,
                                 g.ldc, compute, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmEx", ctx);
      }
    }
    if (pass == 1) {
      col2imKernel<<<gridFor(sh.xSize()), 256, 0, stream>>>(d, col, x);
      checkCuda(cudaGetLastError(), "col2im launch", ctx);
    }
  }

  size_t workspaceBytes() const override { return col_->bytes(); }
  std::string implementation() const override {
    return std::string("im2col + cuBLAS GEMM (") + (math_ == ConvMath::Tf32 ? "TF32 tensor ops" : "fp32") + ")";
  }
  std::string precision() const override { return math_ == ConvMath::Tf32 ? "tf32" : "fp32"; }

 private:
  ConvMath math_;
  std::unique_ptr<DeviceScratch> col_;
};

}  // namespace

std::unique_ptr<CudaConvKernel> makeIm2colCublasConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                                     ConvMath math) {
  return std::make_unique<Im2colCublasConv>(shape, pass, layer, math);
}

}  // namespace stepscope
