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
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

namespace {

struct Dims {
  int n, c, h, w, k, r, s, stride, pad, p, q;
};

__global__ void im2colKernel(Dims d, const float* __restrict__ x, float* __restrict__ col) {
  const long long pq = (long long)d.p * d.q, crs = (long long)d.c * d.r * d.s;
  const long long total = d.n * crs * pq;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int q = int(i % d.q), p = int(i / d.q % d.p);
    const long long row = i / pq % crs;
    const int n = int(i / (pq * crs));
    const int s = int(row % d.s), r = int(row / d.s % d.r), c = int(row / (d.s * d.r));
    const int h = p * d.stride - d.pad + r, ww = q * d.stride - d.pad + s;
    col[i] = (h >= 0 && h < d.h && ww >= 0 && ww < d.w) ? x[(((long long)n * d.c + c) * d.h + h) * d.w + ww] : 0.f;
  }
}

// Gathers (no atomics): each dx element sums the column entries that read it.
__global__ void col2imKernel(Dims d, const float* __restrict__ col, float* __restrict__ dx) {
  const long long pq = (long long)d.p * d.q, crs = (long long)d.c * d.r * d.s;
  const long long total = (long long)d.n * d.c * d.h * d.w;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int ww = int(i % d.w), h = int(i / d.w % d.h), c = int(i / ((long long)d.w * d.h) % d.c);
    const int n = int(i / ((long long)d.w * d.h * d.c));
    float acc = 0.f;
    for (int r = 0; r < d.r; ++r) {
      const int ph = h + d.pad - r;
      if (ph < 0 || ph % d.stride || ph / d.stride >= d.p) continue;
      for (int s = 0; s < d.s; ++s) {
        const int qw = ww + d.pad - s;
        if (qw < 0 || qw % d.stride || qw / d.stride >= d.q) continue;
        const long long row = ((long long)c * d.r + r) * d.s + s;
        acc += col[(n * crs + row) * pq + (ph / d.stride) * d.q + qw / d.stride];
      }
    }
    dx[i] = acc;
  }
}

int gridFor(long long total) {
  long long blocks = (total + 255) / 256;
  return int(blocks < 65535LL * 32 ? blocks : 65535LL * 32);
}

class Im2colCublasConv : public CudaConvKernel {
 public:
  Im2colCublasConv(const ConvShape& shape, ConvPass pass, const std::string& layer, ConvMath math)
      : CudaConvKernel(shape, pass, "im2col-cublas", layer), math_(math) {
    handle_ = cublasHandle();
    const size_t colFloats = size_t(shape.n) * shape.c * shape.r * shape.s * shape.p() * shape.q();
    col_ = std::make_unique<DeviceScratch>(colFloats * sizeof(float));
  }

  void launch(float* x, float* w, float* y, cudaStream_t stream) override {
    const ConvShape& sh = shape_;
    const Dims d{sh.n, sh.c, sh.h, sh.w, sh.k, sh.r, sh.s, sh.stride, sh.pad, sh.p(), sh.q()};
    const int PQ = d.p * d.q, CRS = d.c * d.r * d.s, K = d.k;
    float* col = static_cast<float*>(col_->get());
    const std::string ctx = context();
    checkCublas(cublasSetStream(handle_, stream), "cublasSetStream", ctx);
    const cublasComputeType_t compute = math_ == ConvMath::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1.f, zero = 0.f;
    const long long colStride = (long long)CRS * PQ, yStride = (long long)K * PQ;
    switch (pass_) {
      case ConvPass::Forward:
        im2colKernel<<<gridFor(sh.n * colStride), 256, 0, stream>>>(d, x, col);
        checkCuda(cudaGetLastError(), "im2col launch", ctx);
        checkCublas(cublasGemmStridedBatchedEx(handle_, CUBLAS_OP_N, CUBLAS_OP_N, PQ, K, CRS, &one,
                                               col, CUDA_R_32F, PQ, colStride, w, CUDA_R_32F, CRS, 0, &zero,
                                               y, CUDA_R_32F, PQ, yStride, d.n, compute, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmStridedBatchedEx", ctx);
        break;
      case ConvPass::BackwardData:
        checkCublas(cublasGemmStridedBatchedEx(handle_, CUBLAS_OP_N, CUBLAS_OP_T, PQ, CRS, K, &one,
                                               y, CUDA_R_32F, PQ, yStride, w, CUDA_R_32F, CRS, 0, &zero,
                                               col, CUDA_R_32F, PQ, colStride, d.n, compute, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmStridedBatchedEx", ctx);
        col2imKernel<<<gridFor(sh.xSize()), 256, 0, stream>>>(d, col, x);
        checkCuda(cudaGetLastError(), "col2im launch", ctx);
        break;
      case ConvPass::BackwardFilter:
        im2colKernel<<<gridFor(sh.n * colStride), 256, 0, stream>>>(d, x, col);
        checkCuda(cudaGetLastError(), "im2col launch", ctx);
        for (int n = 0; n < d.n; ++n) {
          checkCublas(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, CRS, K, PQ, &one,
                                   col + n * colStride, CUDA_R_32F, PQ, y + n * yStride, CUDA_R_32F, PQ,
                                   n == 0 ? &zero : &one, w, CUDA_R_32F, CRS, compute, CUBLAS_GEMM_DEFAULT),
                      "cublasGemmEx", ctx);
        }
        break;
    }
  }

  size_t workspaceBytes() const override { return col_->bytes(); }
  std::string implementation() const override {
    return std::string("im2col + cuBLAS GEMM (") + (math_ == ConvMath::Tf32 ? "TF32 tensor ops" : "fp32") + ")";
  }
  std::string precision() const override { return math_ == ConvMath::Tf32 ? "tf32" : "fp32"; }

 private:
  ConvMath math_;
  cublasHandle_t handle_ = nullptr;
  std::unique_ptr<DeviceScratch> col_;
};

}  // namespace

std::unique_ptr<CudaConvKernel> makeIm2colCublasConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                                     ConvMath math) {
  return std::make_unique<Im2colCublasConv>(shape, pass, layer, math);
}

}  // namespace stepscope
