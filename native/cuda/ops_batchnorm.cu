// Our batch norm on the CUDA backend (training mode, NCHW or NHWC, fp32 or
// bf16 activations), as cpu/batchnorm.cc, in three launches per pass
// (bn_schedule.h says which thread reads what):
//   forward:  partial sums of x and x^2 -> statistics, running statistics and
//             scale/shift per channel -> y = x * scale + shift (ReLU fused)
//   backward: partial sums of g and g * (x - mean), g = dy masked by the
//             fused ReLU's output -> dgamma, dbeta and dx's coefficients ->
//             dx = a * g + bias + slope * (x - mean)
// Sums in double, one pass (op_index.h's bnStatsFromSums); no atomics, so
// the same results on every run. The per-element and per-channel formulas
// are op_index.h's, host-checked with this schedule in check/op_host_check.cc.
//   batchnorm-fwd: x, gamma, beta, running_mean, running_var -> y, save_mean, save_invstd
//   batchnorm-bwd: x, gamma, save_mean, save_invstd, dy [, y if relu] -> dx, dgamma, dbeta
// (Before this schedule, a single block per channel reduced the whole
// channel with one load in flight per warp: a sixth of the GPU's blocks at
// C = 64. docs/perf-notes.md has the figures.)
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <type_traits>

#include "core/bf16.h"
#include "core/error.h"
#include "cuda/bn_schedule.h"
#include "cuda/cuda_buffer.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"
#include "cuda/vec_access.h"

namespace stepscope {
namespace {

using namespace cudaops;
using namespace cudaops::bn;

struct BnOptions {
  double eps, momentum;
  bool relu;
};

// The block's sum of a and b (kThreads threads, warps first; fixed order): thread 0 gets them.
__device__ void blockSum2(double& a, double& b) {
  __shared__ double sa[kThreads / 32], sb[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) a += __shfl_down_sync(0xffffffffu, a, o), b += __shfl_down_sync(0xffffffffu, b, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sa[warp] = a, sb[warp] = b;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) a += sa[w], b += sb[w];
  }
  __syncthreads();  // sa, sb free for another call
}

// What the partials sum per element: forward x and x^2, backward g and g * (x - mean).
template <typename T, bool Forward>
struct PartialTerms {
  const T* x;
  const T* dy;  // backward
  const T* y;   // backward with the fused ReLU
  const float* mean;
  bool relu;
  __device__ __forceinline__ void add(float xv, float dyv, float yv, float mu, double& a, double& b) const {
    if constexpr (Forward) {
      a += xv, b += double(xv) * xv;
    } else {
      const float g = bnGrad(dyv, yv, relu);
      a += g, b += double(g) * (double(xv) - mu);
    }
  }
  // Element k (one at a time).
  __device__ __forceinline__ void addAt(long long k, float mu, double& a, double& b) const {
    add(loadf(x[k]), Forward ? 0.0f : loadf(dy[k]), !Forward && relu ? loadf(y[k]) : 1.0f, mu, a, b);
  }
  // Elements k .. k + kVec - 1, all of channel mu's.
  __device__ __forceinline__ void addVecAt(long long k, float mu, double& a, double& b) const {
    const Vec<T> xv = loadVec(x + k);
    Vec<T> dv{}, yv{};
    if constexpr (!Forward) {
      dv = loadVec(dy + k);
      if (relu) yv = loadVec(y + k);
    }
#pragma unroll
    for (int e = 0; e < kVec; ++e) add(loadf(xv.v[e]), Forward ? 0.0f : loadf(dv.v[e]), !Forward && relu ? loadf(yv.v[e]) : 1.0f, mu, a, b);
  }
};

// Step 1, NCHW: block (channel, tile) sums its contiguous share of the channel.
template <typename T, bool Forward>
__global__ void nchwPartials(BnGeometry g, PartialTerms<T, Forward> terms, double* __restrict__ out0, double* __restrict__ out1) {
  const int c = blockIdx.x, t = blockIdx.y;
  const float mu = Forward ? 0.0f : terms.mean[c];
  double a = 0, b = 0;
  const long long end = nchwTileEnd(g, t), stride = nchwStride(g);
  // A thread's share of a tile is 4 vectors (16 values): unrolled, its loads are all in flight at once
  // instead of one round trip each (the loop has no stores to order them).
  if (g.vec) {
#pragma unroll 4
    for (long long i = nchwFirst(g, t, threadIdx.x); i < end; i += stride) terms.addVecAt(nchwOffset(g, c, i), mu, a, b);  // i, hw, tile bounds: multiples of kVec
  } else {
#pragma unroll 4
    for (long long i = nchwFirst(g, t, threadIdx.x); i < end; i += stride) terms.addAt(nchwOffset(g, c, i), mu, a, b);
  }
  blockSum2(a, b);
  if (threadIdx.x == 0) out0[partialAt(g, t, c)] = a, out1[partialAt(g, t, c)] = b;
}

// Step 1, NHWC: block (channel group, tile), a warp across 32 consecutive channels of a row.
template <typename T, bool Forward>
__global__ void nhwcPartials(BnGeometry g, PartialTerms<T, Forward> terms, double* __restrict__ out0, double* __restrict__ out1) {
  __shared__ double sa[kRows][kChannels], sb[kRows][kChannels];
  const int c = blockIdx.x * kChannels + threadIdx.x, t = blockIdx.y;
  double a = 0, b = 0;
  if (c < g.c) {
    const float mu = Forward ? 0.0f : terms.mean[c];
    for (long long r = nhwcFirstRow(t, threadIdx.y); r < g.m; r += nhwcRowStride(g)) terms.addAt(r * g.c + c, mu, a, b);
  }
  sa[threadIdx.y][threadIdx.x] = a, sb[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y == 0 && c < g.c) {
    for (int r = 1; r < kRows; ++r) a += sa[r][threadIdx.x], b += sb[r][threadIdx.x];
    out0[partialAt(g, t, c)] = a, out1[partialAt(g, t, c)] = b;
  }
}

// Step 2: a warp per channel adds the channel's tiles (lane-strided, then a fixed tree); lane 0 gets the sums.
__device__ bool channelTotals(const BnGeometry& g, const double* __restrict__ p0, const double* __restrict__ p1, int& c, double& a,
                              double& b) {
  c = blockIdx.x * kChannelsPerFinalizeBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (c >= g.c) return false;  // the whole warp: the shuffles below have every lane
  a = 0, b = 0;
  for (int t = lane; t < g.tiles; t += 32) a += p0[partialAt(g, t, c)], b += p1[partialAt(g, t, c)];
  for (int o = 16; o > 0; o >>= 1) a += __shfl_down_sync(0xffffffffu, a, o), b += __shfl_down_sync(0xffffffffu, b, o);
  return lane == 0;
}

// coef: scale [c], shift [c].
__global__ void forwardFinalize(BnGeometry g, BnOptions o, const double* __restrict__ sum, const double* __restrict__ sumSq,
                                const float* __restrict__ gamma, const float* __restrict__ beta, float* runMean, float* runVar,
                                float* saveMean, float* saveInvStd, float* coef) {
  int c;
  double a, b;
  if (!channelTotals(g, sum, sumSq, c, a, b)) return;
  const BnStats st = bnStatsFromSums(a, b, double(g.m), o.eps);
  saveMean[c] = float(st.mean);
  saveInvStd[c] = float(st.invstd);
  bnRunningUpdate(runMean + c, runVar + c, st, double(g.m), o.momentum);
  coef[c] = float(gamma[c] * st.invstd);
  coef[g.c + c] = float(beta[c] - gamma[c] * st.mean * st.invstd);
}

// coef: a [c], bias [c], slope [c].
__global__ void backwardFinalize(BnGeometry g, const double* __restrict__ sumG, const double* __restrict__ sumGX,
                                 const float* __restrict__ gamma, const float* __restrict__ saveInvStd, float* dgamma, float* dbeta,
                                 float* coef) {
  int c;
  double sg, sgx;
  if (!channelTotals(g, sumG, sumGX, c, sg, sgx)) return;
  const double invstd = saveInvStd[c], sumGXhat = sgx * invstd;
  dbeta[c] = float(sg);
  dgamma[c] = float(sumGXhat);
  const BnBackwardCoefficients k = bnBackwardCoefficients(gamma[c], invstd, double(g.m), sg, sumGXhat);
  coef[c] = k.a;
  coef[g.c + c] = k.bias;
  coef[2 * g.c + c] = k.slope;
}

// Step 3: y (or dx) in memory order; value(x, dy, y, c) gives element's output.
template <typename T, typename Value>
__device__ __forceinline__ void applyAll(const BnGeometry& g, const T* __restrict__ x, const T* __restrict__ dy, const T* __restrict__ y,
                                         T* __restrict__ out, Value&& value) {
  const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x, step = (long long)gridDim.x * blockDim.x;
  // cStep: a vector's channels advance by 0 (NCHW: one channel, its coefficients read once) or 1 (NHWC).
  auto vectors = [&](auto cStep) {
#pragma unroll 2
    for (long long e = first * kVec; e < g.total; e += step * kVec) {
      const int c = channelOf(g, e);
      const Vec<T> xv = loadVec(x + e);
      Vec<T> dv{}, yv{}, r;
      if (dy) dv = loadVec(dy + e);
      if (y) yv = loadVec(y + e);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        storef(&r.v[k], value(loadf(xv.v[k]), dy ? loadf(dv.v[k]) : 0.0f, y ? loadf(yv.v[k]) : 1.0f, c + k * decltype(cStep)::value));
      }
      storeVec(out + e, r);
    }
  };
  if (g.vec && vectorChannelStep(g) == 1) {
    vectors(std::integral_constant<int, 1>());
  } else if (g.vec) {
    vectors(std::integral_constant<int, 0>());
  } else {
    for (long long e = first; e < g.total; e += step) {
      storef(out + e, value(loadf(x[e]), dy ? loadf(dy[e]) : 0.0f, y ? loadf(y[e]) : 1.0f, channelOf(g, e)));
    }
  }
}

template <typename T>
__global__ void forwardApply(BnGeometry g, BnOptions o, const T* __restrict__ x, const float* __restrict__ coef, T* __restrict__ y) {
  applyAll(g, x, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), y,
           [&](float xv, float, float, int c) { return bnForwardValue(xv, coef[c], coef[g.c + c], o.relu); });
}

template <typename T>
__global__ void backwardApply(BnGeometry g, BnOptions o, const T* __restrict__ x, const float* __restrict__ saveMean, const T* __restrict__ dy,
                              const T* __restrict__ y, const float* __restrict__ coef, T* __restrict__ dx) {
  applyAll(g, x, dy, o.relu ? y : nullptr, dx, [&](float xv, float dyv, float yv, int c) {
    return coef[c] * bnGrad(dyv, yv, o.relu) + coef[g.c + c] + coef[2 * g.c + c] * (xv - saveMean[c]);
  });
}

class CudaBatchNorm : public CudaOpKernel {
 public:
  CudaBatchNorm(bool forward, const BnGeometry& g, const BnOptions& o, bool bf16, const std::string& layer)
      : CudaOpKernel("batchnorm", forward ? "fwd" : "bwd", layer), forward_(forward), bf16_(bf16), g_(g), o_(o) {
    const long long N = g.total, c = g.c;
    const bool h = bf16;
    if (forward) {
      buffers_ = {{"x", N, h}, {"gamma", c}, {"beta", c}, {"running_mean", c}, {"running_var", c}, {"y", N, h}, {"save_mean", c}, {"save_invstd", c}};
    } else {
      buffers_ = {{"x", N, h}, {"gamma", c}, {"save_mean", c}, {"save_invstd", c}, {"dy", N, h}, {"dx", N, h}, {"dgamma", c}, {"dbeta", c}};
      if (o.relu) buffers_.push_back({"y", N, h});
    }
    flops_ = (forward ? 8.0 : 10.0) * double(N);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    const size_t partials = size_t(g_.tiles) * g_.c;
    // Made at the first launch (describing the kernel needs no device).
    if (!scratch_) scratch_ = std::make_unique<DeviceScratch>(2 * partials * sizeof(double) + 3 * size_t(g_.c) * sizeof(float));
    double* p0 = static_cast<double*>(scratch_->get());
    double* p1 = p0 + partials;
    float* coef = reinterpret_cast<float*>(p1 + partials);
    if (bf16_) run<Bf16>(b, p0, p1, coef, stream);
    else run<float>(b, p0, p1, coef, stream);
    checkLaunch(forward_ ? "batchnorm forward launch" : "batchnorm backward launch", context());
  }

 private:
  template <typename T>
  void run(const std::vector<float*>& b, double* p0, double* p1, float* coef, cudaStream_t stream) {
    auto t = [&](int i) { return reinterpret_cast<T*>(b[i]); };  // the activations (bf16 or fp32)
    const T* y = !forward_ && o_.relu ? t(8) : nullptr;
    BnGeometry g = g_;
    // Vectors where the layout keeps them in one channel run and every activation buffer is aligned to one.
    g.vec = layoutAllowsVectors(g) && isVecAligned<T>(t(0)) && isVecAligned<T>(t(5)) && (forward_ || isVecAligned<T>(t(4))) && isVecAligned<T>(y);
    const dim3 partialsGrid = g.nhwc ? dim3((g.c + kChannels - 1) / kChannels, g.tiles) : dim3(g.c, g.tiles);
    const int finalizeBlocks = (g.c + kChannelsPerFinalizeBlock - 1) / kChannelsPerFinalizeBlock;
    // bf16 vectors are 8 bytes: two per thread (the grid halved, the loop unrolled by 2) keep 16 bytes in flight.
    const int applyBlocks = opGridFor((g.vec ? g.total / kVec : g.total) / (sizeof(T) == 2 ? 2 : 1));
    if (forward_) {
      const PartialTerms<T, true> terms{t(0), nullptr, nullptr, nullptr, false};
      if (g.nhwc) nhwcPartials<T, true><<<partialsGrid, dim3(kChannels, kRows), 0, stream>>>(g, terms, p0, p1);
      else nchwPartials<T, true><<<partialsGrid, kThreads, 0, stream>>>(g, terms, p0, p1);
      forwardFinalize<<<finalizeBlocks, kThreads, 0, stream>>>(g, o_, p0, p1, b[1], b[2], b[3], b[4], b[6], b[7], coef);
      forwardApply<T><<<applyBlocks, kThreads, 0, stream>>>(g, o_, t(0), coef, t(5));
    } else {
      const PartialTerms<T, false> terms{t(0), t(4), y, b[2], o_.relu};
      if (g.nhwc) nhwcPartials<T, false><<<partialsGrid, dim3(kChannels, kRows), 0, stream>>>(g, terms, p0, p1);
      else nchwPartials<T, false><<<partialsGrid, kThreads, 0, stream>>>(g, terms, p0, p1);
      backwardFinalize<<<finalizeBlocks, kThreads, 0, stream>>>(g, p0, p1, b[1], b[3], b[6], b[7], coef);
      backwardApply<T><<<applyBlocks, kThreads, 0, stream>>>(g, o_, t(0), b[2], t(4), y, coef, t(5));
    }
  }

  bool forward_, bf16_;
  BnGeometry g_;
  BnOptions o_;
  std::unique_ptr<DeviceScratch> scratch_;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaBatchNorm(const std::string& op, const OpParams& p, const std::string& layer) {
  const int n = p.integer("n", 1, 1 << 20), c = p.integer("c", 1, 1 << 20);
  const long long hw = p.integer("hw", 1, 1 << 28);
  if (double(n) * c * double(hw) > 1e15) {
    throw Error("ERR_INVALID_ARG", "batchnorm: n * c * hw = " + std::to_string(double(n) * c * double(hw)) + " values: at most 1e15");
  }
  const BnOptions o{p.number("eps", 1e-5), p.number("momentum", 0.1), p.flag("relu")};
  const bool bf16 = p.flag("bf16");
  return std::make_unique<CudaBatchNorm>(op == "batchnorm-fwd", bnGeometry(n, c, hw, p.flag("nhwc")), o, bf16, layer);
}

}  // namespace stepscope
