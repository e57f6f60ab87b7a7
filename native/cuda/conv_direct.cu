// Variant `direct`: our plainest CUDA convolution, one thread per output
// element (a block per filter gradient element for bwd-filter, whose sum runs
// over the whole batch). fp32 throughout; the baseline the other variants beat.
#include <cuda_runtime.h>

#include "cuda/conv_cuda.h"
#include "cuda/conv_index.h"
#include "cuda/cuda_error.h"

namespace stepscope {

namespace {

using namespace cudaconv;

Dims dims(const ConvShape& sh) { return {sh.n, sh.c, sh.h, sh.w, sh.k, sh.r, sh.s, sh.stride, sh.pad, sh.p(), sh.q()}; }

__global__ void directForward(Dims d, const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y) {
  const long long total = (long long)d.n * d.k * d.p * d.q;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    y[i] = directForwardAt(d, x, w, i);
}

__global__ void directBackwardData(Dims d, float* __restrict__ dx, const float* __restrict__ w, const float* __restrict__ dy) {
  const long long total = (long long)d.n * d.c * d.h * d.w;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    dx[i] = directBackwardDataAt(d, w, dy, i);
}

constexpr int kFilterThreads = 256;

// One block per dw element: the block sums dy * x over n, p, q.
__global__ void directBackwardFilter(Dims d, const float* __restrict__ x, float* __restrict__ dw, const float* __restrict__ dy) {
  const long long e = blockIdx.x;
  const long long terms = (long long)d.n * d.p * d.q;
  float acc = 0.f;
  for (long long t = threadIdx.x; t < terms; t += blockDim.x) acc += directBackwardFilterTerm(d, x, dy, e, t);
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
