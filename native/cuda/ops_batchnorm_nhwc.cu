// Batch norm on NHWC activations (nhwc=1), coalesced: a channel's values are
// C floats apart, so instead of a block per channel (ops_batchnorm.cu, which
// would read a 32-byte sector per value here) threads run across channels:
//   1. partial sums: blocks of 32 channels x 8 rows walk their tiles of the
//      n*hw rows, summing x and x^2 (forward) or g and g*(x - mean) (backward)
//      in double, one partial per (tile, channel): no atomics, the same sums
//      on every run;
//   2. finalize: a thread per channel adds the tiles' partials and writes the
//      statistics (or dgamma, dbeta) and the per-channel coefficients;
//   3. apply: y (or dx) element by element, in memory order.
// The per-element and per-channel formulas are op_index.h's, host-checked.
#include <cuda_runtime.h>

#include <memory>

#include "core/bf16.h"
#include "cuda/cuda_buffer.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

constexpr int kChannels = 32, kRows = 8;
constexpr int kMaxTiles = 512;
constexpr int kRowsPerThread = 16;

struct NhwcDims {
  int c;
  long long m;  // rows: n * hw
  int tiles;
  double eps, momentum;
  bool relu;
};

// The block's two sums per channel (its kRows threads of a channel added
// together), stored as this tile's partials. Every thread of the block calls it.
__device__ void storeTilePartials(const NhwcDims& d, int c, double a, double b, double* __restrict__ out0, double* __restrict__ out1) {
  __shared__ double s[kRows][kChannels], q[kRows][kChannels];
  s[threadIdx.y][threadIdx.x] = a;
  q[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y == 0 && c < d.c) {
    for (int r = 1; r < kRows; ++r) a += s[r][threadIdx.x], b += q[r][threadIdx.x];
    out0[(long long)blockIdx.y * d.c + c] = a;
    out1[(long long)blockIdx.y * d.c + c] = b;
  }
}

// Step 1 of forward: partial sums of x and x^2 per (tile, channel).
template <typename T>
__global__ void forwardPartials(NhwcDims d, const T* __restrict__ x, double* __restrict__ sum, double* __restrict__ sumSq) {
  const int c = blockIdx.x * kChannels + threadIdx.x;
  double a = 0, b = 0;
  if (c < d.c) {
    for (long long r = (long long)blockIdx.y * kRows + threadIdx.y; r < d.m; r += (long long)d.tiles * kRows) {
      const double v = loadf(x[r * d.c + c]);
      a += v;
      b += v * v;
    }
  }
  storeTilePartials(d, c, a, b, sum, sumSq);
}

// Step 2 of forward: statistics, running statistics, and scale/shift per channel.
__global__ void forwardFinalize(NhwcDims d, const double* __restrict__ sum, const double* __restrict__ sumSq, const float* __restrict__ gamma,
                                const float* __restrict__ beta, float* runMean, float* runVar, float* saveMean, float* saveInvStd, float* coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= d.c) return;
  double a = 0, b = 0;
  for (int t = 0; t < d.tiles; ++t) a += sum[(long long)t * d.c + c], b += sumSq[(long long)t * d.c + c];
  const BnStats st = bnStatsFromSums(a, b, double(d.m), d.eps);
  saveMean[c] = float(st.mean);
  saveInvStd[c] = float(st.invstd);
  bnRunningUpdate(runMean + c, runVar + c, st, double(d.m), d.momentum);
  coef[c] = float(gamma[c] * st.invstd);
  coef[d.c + c] = float(beta[c] - gamma[c] * st.mean * st.invstd);
}

template <typename T>
__global__ void forwardApply(NhwcDims d, const T* __restrict__ x, const float* __restrict__ coef, T* __restrict__ y) {
  const long long total = d.m * d.c;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int c = int(i % d.c);
    storef(y + i, bnForwardValue(loadf(x[i]), coef[c], coef[d.c + c], d.relu));
  }
}

// Step 1 of backward: partial sums of g and g * (x - mean) per (tile, channel).
template <typename T>
__global__ void backwardPartials(NhwcDims d, const T* __restrict__ x, const float* __restrict__ saveMean, const T* __restrict__ dy,
                                 const T* __restrict__ y, double* __restrict__ sumG, double* __restrict__ sumGX) {
  const int c = blockIdx.x * kChannels + threadIdx.x;
  double a = 0, b = 0;
  if (c < d.c) {
    const float mean = saveMean[c];
    for (long long r = (long long)blockIdx.y * kRows + threadIdx.y; r < d.m; r += (long long)d.tiles * kRows) {
      const long long e = r * d.c + c;
      const float g = bnGrad(loadf(dy[e]), d.relu ? loadf(y[e]) : 1.0f, d.relu);
      a += g;
      b += double(g) * (double(loadf(x[e])) - mean);
    }
  }
  storeTilePartials(d, c, a, b, sumG, sumGX);
}

// Step 2 of backward: dgamma, dbeta and dx's coefficients per channel.
__global__ void backwardFinalize(NhwcDims d, const double* __restrict__ sumG, const double* __restrict__ sumGX, const float* __restrict__ gamma,
                                 const float* __restrict__ saveInvStd, float* dgamma, float* dbeta, float* coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= d.c) return;
  double g = 0, gx = 0;
  for (int t = 0; t < d.tiles; ++t) g += sumG[(long long)t * d.c + c], gx += sumGX[(long long)t * d.c + c];
  const double invstd = saveInvStd[c], sumGXhat = gx * invstd;
  dbeta[c] = float(g);
  dgamma[c] = float(sumGXhat);
  const BnBackwardCoefficients k = bnBackwardCoefficients(gamma[c], invstd, double(d.m), g, sumGXhat);
  coef[c] = k.a;
  coef[d.c + c] = k.bias;
  coef[2 * d.c + c] = k.slope;
}

template <typename T>
__global__ void backwardApply(NhwcDims d, const T* __restrict__ x, const float* __restrict__ saveMean, const T* __restrict__ dy,
                              const T* __restrict__ y, const float* __restrict__ coef, T* __restrict__ dx) {
  const long long total = d.m * d.c;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int c = int(i % d.c);
    const float g = bnGrad(loadf(dy[i]), d.relu ? loadf(y[i]) : 1.0f, d.relu);
    storef(dx + i, coef[c] * g + coef[d.c + c] + coef[2 * d.c + c] * (loadf(x[i]) - saveMean[c]));
  }
}

class CudaBatchNormNhwc : public CudaOpKernel {
 public:
  CudaBatchNormNhwc(bool forward, int n, int c, long long hw, double eps, double momentum, bool relu, bool bf16, const std::string& layer)
      : CudaOpKernel("batchnorm", forward ? "fwd" : "bwd", layer), forward_(forward), bf16_(bf16) {
    const long long m = (long long)n * hw, N = m * c;
    const long long tiles = (m + (long long)kRows * kRowsPerThread - 1) / ((long long)kRows * kRowsPerThread);
    d_ = {c, m, int(tiles < kMaxTiles ? tiles : kMaxTiles), eps, momentum, relu};
    const bool h = bf16;
    if (forward) {
      buffers_ = {{"x", N, h}, {"gamma", c}, {"beta", c}, {"running_mean", c}, {"running_var", c}, {"y", N, h}, {"save_mean", c}, {"save_invstd", c}};
    } else {
      buffers_ = {{"x", N, h}, {"gamma", c}, {"save_mean", c}, {"save_invstd", c}, {"dy", N, h}, {"dx", N, h}, {"dgamma", c}, {"dbeta", c}};
      if (relu) buffers_.push_back({"y", N, h});
    }
    flops_ = (forward ? 8.0 : 10.0) * double(N);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    const size_t partials = size_t(d_.tiles) * d_.c;
    // Made at the first launch (describing the kernel needs no device).
    if (!scratch_) scratch_ = std::make_unique<DeviceScratch>(2 * partials * sizeof(double) + 3 * size_t(d_.c) * sizeof(float));
    double* p0 = static_cast<double*>(scratch_->get());
    double* p1 = p0 + partials;
    float* coef = reinterpret_cast<float*>(p1 + partials);
    if (bf16_) run<Bf16>(b, p0, p1, coef, stream);
    else run<float>(b, p0, p1, coef, stream);
    checkLaunch(forward_ ? "batchnorm nhwc forward launch" : "batchnorm nhwc backward launch", context());
  }

 private:
  template <typename T>
  void run(const std::vector<float*>& b, double* p0, double* p1, float* coef, cudaStream_t stream) {
    auto t = [&](int i) { return reinterpret_cast<T*>(b[i]); };  // the activations (bf16 or fp32)
    const dim3 block(kChannels, kRows), grid((d_.c + kChannels - 1) / kChannels, d_.tiles);
    const int perChannel = (d_.c + 255) / 256;
    if (forward_) {
      forwardPartials<T><<<grid, block, 0, stream>>>(d_, t(0), p0, p1);
      forwardFinalize<<<perChannel, 256, 0, stream>>>(d_, p0, p1, b[1], b[2], b[3], b[4], b[6], b[7], coef);
      forwardApply<T><<<opGridFor(d_.m * d_.c), 256, 0, stream>>>(d_, t(0), coef, t(5));
    } else {
      const T* y = d_.relu ? t(8) : nullptr;
      backwardPartials<T><<<grid, block, 0, stream>>>(d_, t(0), b[2], t(4), y, p0, p1);
      backwardFinalize<<<perChannel, 256, 0, stream>>>(d_, p0, p1, b[1], b[3], b[6], b[7], coef);
      backwardApply<T><<<opGridFor(d_.m * d_.c), 256, 0, stream>>>(d_, t(0), b[2], t(4), y, coef, t(5));
    }
  }

  bool forward_, bf16_;
  NhwcDims d_;
  std::unique_ptr<DeviceScratch> scratch_;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaBatchNormNhwc(bool forward, int n, int c, long long hw, double eps, double momentum, bool relu, bool bf16,
                                                    const std::string& layer) {
  return std::make_unique<CudaBatchNormNhwc>(forward, n, c, hw, eps, momentum, relu, bf16, layer);
}

}  // namespace stepscope
