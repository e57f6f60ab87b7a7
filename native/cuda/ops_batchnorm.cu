// Batch norm on the CUDA backend (training mode, NCHW; NHWC is ops_batchnorm_nhwc.cu), as cpu/batchnorm.cc:
// one block per channel sums its n * hw values in double (mean first, then
// the centred squares), updates the running statistics and normalizes them;
// backward sums g and g * (x - mean) the same way, then writes dx.
//   batchnorm-fwd: x, gamma, beta, running_mean, running_var -> y, save_mean, save_invstd
//   batchnorm-bwd: x, gamma, save_mean, save_invstd, dy [, y if relu] -> dx, dgamma, dbeta
#include <cuda_runtime.h>

#include "core/bf16.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

constexpr int kThreads = 256;

struct BnDims {
  int n, c;
  long long hw;
  double eps, momentum;
  bool relu;
  bool bf16;  // x, y, dy, dx bf16 (the statistics and parameters stay fp32)
};

// The sum over the block of one value per thread (thread 0 gets it; all threads return it).
__device__ double blockSum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();  // shared is reused by the next call
  return total;
}

// Value i (0 .. n*hw) of channel c.
__device__ __forceinline__ long long at(const BnDims& d, int c, long long i) {
  return actIndex(false, i / d.hw, c, i % d.hw, d.c, d.hw);
}

template <typename T>
__global__ void bnForward(BnDims d, const T* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
                          float* runMean, float* runVar, T* __restrict__ y, float* saveMean, float* saveInvStd) {
  __shared__ double shared[kThreads];
  const int c = blockIdx.x;
  const long long m = (long long)d.n * d.hw;
  double s = 0;
  for (long long i = threadIdx.x; i < m; i += blockDim.x) s += loadf(x[at(d, c, i)]);
  const double mean = blockSum(s, shared) / double(m);
  double q = 0;
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const double v = loadf(x[at(d, c, i)]) - mean;
    q += v * v;
  }
  const double var = blockSum(q, shared) / double(m);
  const double invstd = 1.0 / sqrt(var + d.eps);
  if (threadIdx.x == 0) {
    saveMean[c] = float(mean);
    saveInvStd[c] = float(invstd);
    bnRunningUpdate(runMean + c, runVar + c, BnStats{mean, var, invstd}, double(m), d.momentum);
  }
  const float scale = float(gamma[c] * invstd), shift = float(beta[c] - gamma[c] * mean * invstd);
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const long long k = at(d, c, i);
    storef(y + k, bnForwardValue(loadf(x[k]), scale, shift, d.relu));
  }
}

template <typename T>
__global__ void bnBackward(BnDims d, const T* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ saveMean,
                           const float* __restrict__ saveInvStd, const T* __restrict__ dy, const T* __restrict__ y,
                           T* __restrict__ dx, float* dgamma, float* dbeta) {
  __shared__ double shared[kThreads];
  const int c = blockIdx.x;
  const long long m = (long long)d.n * d.hw;
  const float mean = saveMean[c], invstd = saveInvStd[c];
  double sg = 0, sgx = 0;
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const long long k = at(d, c, i);
    const float g = bnGrad(loadf(dy[k]), d.relu ? loadf(y[k]) : 1.0f, d.relu);
    sg += g;
    sgx += double(g) * (double(loadf(x[k])) - mean);
  }
  const double sumG = blockSum(sg, shared);
  const double sumGXhat = blockSum(sgx, shared) * invstd;
  if (threadIdx.x == 0) {
    dbeta[c] = float(sumG);
    dgamma[c] = float(sumGXhat);
  }
  const BnBackwardCoefficients k = bnBackwardCoefficients(gamma[c], invstd, double(m), sumG, sumGXhat);
  for (long long i = threadIdx.x; i < m; i += blockDim.x) {
    const long long e = at(d, c, i);
    const float g = bnGrad(loadf(dy[e]), d.relu ? loadf(y[e]) : 1.0f, d.relu);
    storef(dx + e, k.a * g + k.bias + k.slope * (loadf(x[e]) - mean));
  }
}

class CudaBatchNorm : public CudaOpKernel {
 public:
  CudaBatchNorm(bool forward, const BnDims& d, const std::string& layer)
      : CudaOpKernel("batchnorm", forward ? "fwd" : "bwd", layer), forward_(forward), d_(d) {
    const long long N = (long long)d.n * d.c * d.hw;
    const bool h = d.bf16;
    if (forward) {
      buffers_ = {{"x", N, h}, {"gamma", d.c}, {"beta", d.c}, {"running_mean", d.c}, {"running_var", d.c},
                  {"y", N, h}, {"save_mean", d.c}, {"save_invstd", d.c}};
    } else {
      buffers_ = {{"x", N, h}, {"gamma", d.c}, {"save_mean", d.c}, {"save_invstd", d.c}, {"dy", N, h},
                  {"dx", N, h}, {"dgamma", d.c}, {"dbeta", d.c}};
      if (d.relu) buffers_.push_back({"y", N, h});
    }
    flops_ = (forward ? 8.0 : 10.0) * double(N);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    if (d_.bf16) run<Bf16>(b, stream);
    else run<float>(b, stream);
    checkLaunch(forward_ ? "batchnorm forward launch" : "batchnorm backward launch", context());
  }

 private:
  template <typename T>
  void run(const std::vector<float*>& b, cudaStream_t stream) {
    auto t = [&](int i) { return reinterpret_cast<T*>(b[i]); };  // the activations (bf16 or fp32)
    if (forward_) bnForward<T><<<d_.c, kThreads, 0, stream>>>(d_, t(0), b[1], b[2], b[3], b[4], t(5), b[6], b[7]);
    else bnBackward<T><<<d_.c, kThreads, 0, stream>>>(d_, t(0), b[1], b[2], b[3], t(4), d_.relu ? t(8) : nullptr, t(5), b[6], b[7]);
  }

  bool forward_;
  BnDims d_;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaBatchNorm(const std::string& op, const OpParams& p, const std::string& layer) {
  BnDims d{p.integer("n", 1, 1 << 20), p.integer("c", 1, 1 << 20), p.integer("hw", 1, 1 << 28), p.number("eps", 1e-5),
           p.number("momentum", 0.1), p.flag("relu"), p.flag("bf16")};
  // NHWC: threads across channels (ops_batchnorm_nhwc.cu); a block per channel would read strided.
  if (p.flag("nhwc")) return makeCudaBatchNormNhwc(op == "batchnorm-fwd", d.n, d.c, d.hw, d.eps, d.momentum, d.relu, d.bf16, layer);
  return std::make_unique<CudaBatchNorm>(op == "batchnorm-fwd", d, layer);
}

}  // namespace stepscope
