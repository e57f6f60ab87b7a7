// Variant `direct`: our plainest CUDA convolution, one thread per output
// element (a block per filter gradient element for bwd-filter, whose sum runs
// over the whole batch). fp32 throughout; the baseline the other variants beat.
#include <cuda_runtime.h>

#include "cuda/conv_cuda.h"
#include "cuda/cuda_error.h"

namespace stepscope {

namespace {

struct Dims {
  int n, c, h, w, k, r, s, stride, pad, p, q;
};

Dims dims(const ConvShape& sh) { return {sh.n, sh.c, sh.h, sh.w, sh.k, sh.r, sh.s, sh.stride, sh.pad, sh.p(), sh.q()}; }

__global__ void directForward(Dims d, const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y) {
  const long long total = (long long)d.n * d.k * d.p * d.q;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int q = int(i % d.q), p = int(i / d.q % d.p), k = int(i / ((long long)d.q * d.p) % d.k);
    const int n = int(i / ((long long)d.q * d.p * d.k));
    float acc = 0.f;
    for (int c = 0; c < d.c; ++c) {
      const float* xc = x + ((long long)n * d.c + c) * d.h * d.w;
      const float* wc = w + ((long long)k * d.c + c) * d.r * d.s;
      for (int r = 0; r < d.r; ++r) {
        const int h = p * d.stride - d.pad + r;
        if (h < 0 || h >= d.h) continue;
        for (int s = 0; s < d.s; ++s) {
          const int ww = q * d.stride - d.pad + s;
          if (ww < 0 || ww >= d.w) continue;
          acc += xc[h * d.w + ww] * wc[r * d.s + s];
        }
      }
    }
    y[i] = acc;
  }
}

__global__ void directBackwardData(Dims d, float* __restrict__ dx, const float* __restrict__ w, const float* __restrict__ dy) {
  const long long total = (long long)d.n * d.c * d.h * d.w;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int ww = int(i % d.w), h = int(i / d.w % d.h), c = int(i / ((long long)d.w * d.h) % d.c);
    const int n = int(i / ((long long)d.w * d.h * d.c));
    float acc = 0.f;
    for (int r = 0; r < d.r; ++r) {
      const int ph = h + d.pad - r;  // = p * stride
      if (ph < 0 || ph % d.stride) continue;
      const int p = ph / d.stride;
      if (p >= d.p) continue;
      for (int s = 0; s < d.s; ++s) {
        const int qw = ww + d.pad - s;
        if (qw < 0 || qw % d.stride) continue;
        const int q = qw / d.stride;
        if (q >= d.q) continue;
        for (int k = 0; k < d.k; ++k) {
          acc += dy[(((long long)n * d.k + k) * d.p + p) * d.q + q] * w[(((long long)k * d.c + c) * d.r + r) * d.s + s];
        }
      }
    }
    dx[i] = acc;
  }
}

constexpr int kFilterThreads = 256;

// One block per dw element: the block sums dy * x over n, p, q.
__global__ void directBackwardFilter(Dims d, const float* __restrict__ x, float* __restrict__ dw, const float* __restrict__ dy) {
  const long long e = blockIdx.x;
  const int s = int(e % d.s), r = int(e / d.s % d.r), c = int(e / (d.s * d.r) % d.c), k = int(e / ((long long)d.s * d.r * d.c));
  const int pq = d.p * d.q;
  const long long terms = (long long)d.n * pq;
  float acc = 0.f;
  for (long long t = threadIdx.x; t < terms; t += blockDim.x) {
    const int n = int(t / pq), p = int(t % pq) / d.q, q = int(t % pq) % d.q;
    const int h = p * d.stride - d.pad + r, ww = q * d.stride - d.pad + s;
    if (h < 0 || h >= d.h || ww < 0 || ww >= d.w) continue;
    acc += dy[(((long long)n * d.k + k) * d.p + p) * d.q + q] * x[(((long long)n * d.c + c) * d.h + h) * d.w + ww];
  }
  __shared__ float partial[kFilterThreads];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) dw[e] = partial[0];
}

int gridFor(long long total, int threads) {
  long long blocks = (total + threads - 1) / threads;
  return int(blocks < 65535LL * 32 ? blocks : 65535LL * 32);  // grid-stride loops cover the rest
}

class DirectCudaConv : public CudaConvKernel {
 public:
  using CudaConvKernel::CudaConvKernel;

  void launch(float* x, float* w, float* y, cudaStream_t stream) override {
    const Dims d = dims(shape_);
    switch (pass_) {
      case ConvPass::Forward:
        directForward<<<gridFor(shape_.ySize(), 256), 256, 0, stream>>>(d, x, w, y);
        break;
      case ConvPass::BackwardData:
        directBackwardData<<<gridFor(shape_.xSize(), 256), 256, 0, stream>>>(d, x, w, y);
        break;
      case ConvPass::BackwardFilter:
        directBackwardFilter<<<unsigned(shape_.wSize()), kFilterThreads, 0, stream>>>(d, x, w, y);
        break;
    }
    checkCuda(cudaGetLastError(), "direct conv launch", context());
  }
  std::string implementation() const override { return "direct (one thread per output element, fp32)"; }
};

}  // namespace

std::unique_ptr<CudaConvKernel> makeDirectCudaConv(const ConvShape& shape, ConvPass pass, const std::string& layer) {
  return std::make_unique<DirectCudaConv>(shape, pass, "direct", layer);
}

}  // namespace stepscope
