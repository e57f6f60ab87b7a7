// Pooling on the CUDA backend over NCHW planes, as cpu/pool.cc.
//   maxpool-fwd: x -> y, argmax (h * W + w in the plane, as a float)
//   maxpool-bwd: dy, argmax -> dx (each input gathers from the windows that chose it)
//   avgpool-fwd: x [n, c, hw] -> y [n, c];  avgpool-bwd: dy [n, c] -> dx = dy / hw
#include <cuda_runtime.h>

#include "core/error.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

__global__ void maxpoolForward(PoolDims d, long long planes, const float* __restrict__ x, float* __restrict__ y, float* __restrict__ arg) {
  const long long outPlane = (long long)d.p * d.q, inPlane = (long long)d.h * d.w, total = planes * outPlane;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const long long g = i / outPlane;
    maxpoolForwardAt(d, x + g * inPlane, int(i % outPlane), y + i, arg + i);
  }
}

__global__ void maxpoolBackward(PoolDims d, long long planes, const float* __restrict__ dy, const float* __restrict__ arg, float* __restrict__ dx) {
  const long long outPlane = (long long)d.p * d.q, inPlane = (long long)d.h * d.w, total = planes * inPlane;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const long long g = i / inPlane;
    dx[i] = maxpoolBackwardAt(d, dy + g * outPlane, arg + g * outPlane, int(i % inPlane));
  }
}

// One warp per plane: lanes sum strided values in double, then shuffle.
__global__ void avgpoolForward(long long planes, long long hw, const float* __restrict__ x, float* __restrict__ y) {
  const long long plane = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (plane >= planes) return;
  double s = 0;
  for (long long i = lane; i < hw; i += 32) s += x[plane * hw + i];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
  if (lane == 0) y[plane] = float(s / double(hw));
}

__global__ void avgpoolBackward(long long planes, long long hw, const float* __restrict__ dy, float* __restrict__ dx) {
  const long long total = planes * hw;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    dx[i] = float(double(dy[i / hw]) / double(hw));
}

class CudaMaxPool : public CudaOpKernel {
 public:
  CudaMaxPool(bool forward, long long planes, const PoolDims& d, const std::string& layer)
      : CudaOpKernel("maxpool", forward ? "fwd" : "bwd", layer), forward_(forward), planes_(planes), d_(d) {
    const long long in = planes * d.h * d.w, out = planes * d.p * d.q;
    if (forward) buffers_ = {{"x", in}, {"y", out}, {"argmax", out}};
    else buffers_ = {{"dy", out}, {"argmax", out}, {"dx", in}};
    flops_ = forward ? double(out) * d.k * d.k : double(out);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    if (forward_) maxpoolForward<<<opGridFor(planes_ * d_.p * d_.q), 256, 0, stream>>>(d_, planes_, b[0], b[1], b[2]);
    else maxpoolBackward<<<opGridFor(planes_ * d_.h * d_.w), 256, 0, stream>>>(d_, planes_, b[0], b[1], b[2]);
    checkLaunch("maxpool launch", context());
  }

 private:
  bool forward_;
  long long planes_;
  PoolDims d_;
};

class CudaAvgPool : public CudaOpKernel {
 public:
  CudaAvgPool(bool forward, long long planes, long long hw, const std::string& layer)
      : CudaOpKernel("avgpool", forward ? "fwd" : "bwd", layer), forward_(forward), planes_(planes), hw_(hw) {
    if (forward) buffers_ = {{"x", planes * hw}, {"y", planes}};
    else buffers_ = {{"dy", planes}, {"dx", planes * hw}};
    flops_ = double(planes * hw);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    if (forward_) avgpoolForward<<<opGridFor(planes_ * 32), 256, 0, stream>>>(planes_, hw_, b[0], b[1]);
    else avgpoolBackward<<<opGridFor(planes_ * hw_), 256, 0, stream>>>(planes_, hw_, b[0], b[1]);
    checkLaunch("avgpool launch", context());
  }

 private:
  bool forward_;
  long long planes_, hw_;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaPool(const std::string& op, const OpParams& p, const std::string& layer) {
  const int n = p.integer("n", 1, 1 << 20), c = p.integer("c", 1, 1 << 20);
  const long long planes = (long long)n * c;
  if (op == "avgpool-fwd" || op == "avgpool-bwd") return std::make_unique<CudaAvgPool>(op == "avgpool-fwd", planes, p.integer("hw", 1, 1 << 28), layer);
  PoolDims d{p.integer("h", 1, 1 << 16), p.integer("w", 1, 1 << 16), p.integer("k", 1, 64, 3), p.integer("stride", 1, 64, 2), p.integer("pad", 0, 63, 1), 0, 0};
  d.p = (d.h + 2 * d.pad - d.k) / d.stride + 1;
  d.q = (d.w + 2 * d.pad - d.k) / d.stride + 1;
  if (d.pad >= d.k || d.p < 1 || d.q < 1) {
    throw Error("ERR_BAD_SHAPE", "maxpool: input " + std::to_string(d.h) + "x" + std::to_string(d.w) + " with kernel " +
                                     std::to_string(d.k) + " and pad " + std::to_string(d.pad) + " gives no output");
  }
  return std::make_unique<CudaMaxPool>(op == "maxpool-fwd", planes, d, layer);
}

}  // namespace stepscope
