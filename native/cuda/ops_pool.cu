// Pooling on the CUDA backend over NCHW or NHWC planes (nhwc=1), as cpu/pool.cc.
//   maxpool-fwd: x -> y, argmax (h * W + w in the plane, as a float)
//   maxpool-bwd: dy, argmax -> dx (each input gathers from the windows that chose it)
//   avgpool-fwd: x [n, c, hw] -> y [n, c];  avgpool-bwd: dy [n, c] -> dx = dy / hw
// bf16=1: x, y, dy, dx of max-pool and x, dx of avg-pool are bf16 (the
// argmax and avg-pool's [n, c] side, the FC layer's, stay fp32).
// Threads walk their output in memory order in both layouts (coalesced
// stores); a plane's values are read with its step (op_index.h).
#include <cuda_runtime.h>

#include "core/bf16.h"
#include "core/error.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

template <typename T>
__global__ void maxpoolForward(PoolDims d, int n, int c, bool nhwc, const T* __restrict__ x, T* __restrict__ y, float* __restrict__ arg) {
  const long long outPlane = (long long)d.p * d.q, inPlane = (long long)d.h * d.w, total = (long long)n * c * outPlane;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const ActPos o = actPos(nhwc, i, c, outPlane);
    float best;
    maxpoolForwardAt(d, x + actIndex(nhwc, o.n, o.c, 0, c, inPlane), int(o.s), &best, arg + i);
    storef(y + i, best);
  }
}

template <typename T>
__global__ void maxpoolBackward(PoolDims d, int n, int c, bool nhwc, const T* __restrict__ dy, const float* __restrict__ arg, T* __restrict__ dx) {
  const long long outPlane = (long long)d.p * d.q, inPlane = (long long)d.h * d.w, total = (long long)n * c * inPlane;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const ActPos in = actPos(nhwc, i, c, inPlane);
    const long long origin = actIndex(nhwc, in.n, in.c, 0, c, outPlane);
    storef(dx + i, maxpoolBackwardAt(d, dy + origin, arg + origin, int(in.s)));
  }
}

// One warp per plane: lanes sum strided values in double, then shuffle.
// Warp-stride over planes (the grid is capped: opGridFor); the bound is the
// same for all lanes of a warp, so the full-mask shuffle stays legal.
template <typename T>
__global__ void avgpoolForward(int n, int c, long long hw, bool nhwc, const T* __restrict__ x, float* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const long long warps = (long long)gridDim.x * blockDim.x / 32;
  for (long long plane = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; plane < (long long)n * c; plane += warps) {
    const long long img = plane / c, ch = plane % c;
    double s = 0;
    for (long long i = lane; i < hw; i += 32) s += loadf(x[actIndex(nhwc, img, ch, i, c, hw)]);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) y[plane] = float(s / double(hw));
  }
}

// NHWC: a thread per (image, channel), threads across channels, so each step
// over the plane's positions reads consecutive addresses (a warp per plane
// would read C floats apart).
template <typename T>
__global__ void avgpoolForwardNhwc(int n, int c, long long hw, const T* __restrict__ x, float* __restrict__ y) {
  for (long long plane = blockIdx.x * (long long)blockDim.x + threadIdx.x; plane < (long long)n * c; plane += (long long)gridDim.x * blockDim.x) {
    const long long img = plane / c, ch = plane % c;
    double s = 0;
    for (long long i = 0; i < hw; ++i) s += loadf(x[actIndex(true, img, ch, i, c, hw)]);
    y[plane] = float(s / double(hw));
  }
}

template <typename T>
__global__ void avgpoolBackward(int n, int c, long long hw, bool nhwc, const float* __restrict__ dy, T* __restrict__ dx) {
  const long long total = (long long)n * c * hw;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const ActPos at = actPos(nhwc, i, c, hw);
    storef(dx + i, float(double(dy[at.n * c + at.c]) / double(hw)));
  }
}

class CudaMaxPool : public CudaOpKernel {
 public:
  CudaMaxPool(bool forward, int n, int c, const PoolDims& d, bool nhwc, bool bf16, const std::string& layer)
      : CudaOpKernel("maxpool", forward ? "fwd" : "bwd", layer), forward_(forward), n_(n), c_(c), nhwc_(nhwc), bf16_(bf16), d_(d) {
    const long long planes = (long long)n * c, in = planes * d.h * d.w, out = planes * d.p * d.q;
    if (forward) buffers_ = {{"x", in, bf16}, {"y", out, bf16}, {"argmax", out}};
    else buffers_ = {{"dy", out, bf16}, {"argmax", out}, {"dx", in, bf16}};
    flops_ = forward ? double(out) * d.k * d.k : double(out);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    if (bf16_) run<Bf16>(b, stream);
    else run<float>(b, stream);
    checkLaunch("maxpool launch", context());
  }

 private:
  template <typename T>
  void run(const std::vector<float*>& b, cudaStream_t stream) {
    auto t = [&](int i) { return reinterpret_cast<T*>(b[i]); };
    const long long planes = (long long)n_ * c_;
    if (forward_) maxpoolForward<T><<<opGridFor(planes * d_.p * d_.q), 256, 0, stream>>>(d_, n_, c_, nhwc_, t(0), t(1), b[2]);
    else maxpoolBackward<T><<<opGridFor(planes * d_.h * d_.w), 256, 0, stream>>>(d_, n_, c_, nhwc_, t(0), b[1], t(2));
  }

  bool forward_;
  int n_, c_;
  bool nhwc_, bf16_;
  PoolDims d_;
};

class CudaAvgPool : public CudaOpKernel {
 public:
  CudaAvgPool(bool forward, int n, int c, long long hw, bool nhwc, bool bf16, const std::string& layer)
      : CudaOpKernel("avgpool", forward ? "fwd" : "bwd", layer), forward_(forward), n_(n), c_(c), hw_(hw), nhwc_(nhwc), bf16_(bf16) {
    const long long planes = (long long)n * c;
    if (forward) buffers_ = {{"x", planes * hw, bf16}, {"y", planes}};
    else buffers_ = {{"dy", planes}, {"dx", planes * hw, bf16}};
    flops_ = double(planes * hw);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    if (bf16_) run<Bf16>(b, stream);
    else run<float>(b, stream);
    checkLaunch("avgpool launch", context());
  }

 private:
  template <typename T>
  void run(const std::vector<float*>& b, cudaStream_t stream) {
    const long long planes = (long long)n_ * c_;
    if (forward_ && nhwc_) avgpoolForwardNhwc<T><<<opGridFor(planes), 256, 0, stream>>>(n_, c_, hw_, reinterpret_cast<const T*>(b[0]), b[1]);
    else if (forward_) avgpoolForward<T><<<opGridFor(planes * 32), 256, 0, stream>>>(n_, c_, hw_, nhwc_, reinterpret_cast<const T*>(b[0]), b[1]);
    else avgpoolBackward<T><<<opGridFor(planes * hw_), 256, 0, stream>>>(n_, c_, hw_, nhwc_, b[0], reinterpret_cast<T*>(b[1]));
  }

  bool forward_;
  int n_, c_;
  long long hw_;
  bool nhwc_, bf16_;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaPool(const std::string& op, const OpParams& p, const std::string& layer) {
  const int n = p.integer("n", 1, 1 << 20), c = p.integer("c", 1, 1 << 20);
  const bool nhwc = p.flag("nhwc"), bf16 = p.flag("bf16");
  if (op == "avgpool-fwd" || op == "avgpool-bwd") return std::make_unique<CudaAvgPool>(op == "avgpool-fwd", n, c, p.integer("hw", 1, 1 << 28), nhwc, bf16, layer);
  PoolDims d{p.integer("h", 1, 1 << 16), p.integer("w", 1, 1 << 16), p.integer("k", 1, 64, 3), p.integer("stride", 1, 64, 2), p.integer("pad", 0, 63, 1), 0, 0, nhwc ? c : 1};
  d.p = (d.h + 2 * d.pad - d.k) / d.stride + 1;
  d.q = (d.w + 2 * d.pad - d.k) / d.stride + 1;
  // The argmax is a plane index held as a float: exact up to 2^24.
  if ((long long)d.h * d.w > (1LL << 24)) {
    throw Error("ERR_BAD_SHAPE", "maxpool: a plane of " + std::to_string(d.h) + "x" + std::to_string(d.w) + " exceeds 2^24 values (the argmax is a float index)");
  }
  if (d.pad >= d.k || d.p < 1 || d.q < 1) {
    throw Error("ERR_BAD_SHAPE", "maxpool: input " + std::to_string(d.h) + "x" + std::to_string(d.w) + " with kernel " +
                                     std::to_string(d.k) + " and pad " + std::to_string(d.pad) + " gives no output");
  }
  return std::make_unique<CudaMaxPool>(op == "maxpool-fwd", n, c, d, nhwc, bf16, layer);
}

}  // namespace stepscope
