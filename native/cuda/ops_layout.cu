// The layout transposes of layout_kernels.h, and the op `to-nhwc` (x [n, c,
// hw] NCHW -> y NHWC) that puts the step's input into the NHWC layout.
// One thread per output element in memory order: stores are coalesced, loads
// strided (a tiled transpose would coalesce both: not needed for correctness).
#include <cuda_runtime.h>

#include "cuda/layout_kernels.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

__global__ void nchwToNhwc(const float* __restrict__ x, float* __restrict__ y, long long n, long long c, long long s) {
  const long long total = n * c * s;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const ActPos at = actPos(true, i, c, s);
    y[i] = x[actIndex(false, at.n, at.c, at.s, c, s)];
  }
}

// Weights are [k, c, rs] activations of "images" k: KRSC is their NHWC.
__global__ void krscToKcrs(const float* __restrict__ krsc, float* __restrict__ kcrs, long long k, long long c, long long rs) {
  const long long total = k * c * rs;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const ActPos at = actPos(false, i, c, rs);
    kcrs[i] = krsc[krscIndex(at.n, at.c, at.s, c, rs)];
  }
}

class CudaToNhwc : public CudaOpKernel {
 public:
  CudaToNhwc(long long n, long long c, long long hw, const std::string& layer)
      : CudaOpKernel("layout", "fwd", layer), n_(n), c_(c), hw_(hw) {
    buffers_ = {{"x", n * c * hw}, {"y", n * c * hw}};
  }
  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    launchNchwToNhwc(b[0], b[1], n_, c_, hw_, stream);
    checkLaunch("to-nhwc launch", context());
  }

 private:
  long long n_, c_, hw_;
};

}  // namespace

void launchNchwToNhwc(const float* x, float* y, long long n, long long c, long long s, cudaStream_t stream) {
  nchwToNhwc<<<opGridFor(n * c * s), 256, 0, stream>>>(x, y, n, c, s);
}

void launchKcrsToKrsc(const float* kcrs, float* krsc, long long k, long long c, long long rs, cudaStream_t stream) {
  nchwToNhwc<<<opGridFor(k * c * rs), 256, 0, stream>>>(kcrs, krsc, k, c, rs);
}

void launchKrscToKcrs(const float* krsc, float* kcrs, long long k, long long c, long long rs, cudaStream_t stream) {
  krscToKcrs<<<opGridFor(k * c * rs), 256, 0, stream>>>(krsc, kcrs, k, c, rs);
}

std::unique_ptr<CudaOpKernel> makeCudaLayout(const std::string& op, const OpParams& p, const std::string& layer) {
  return std::make_unique<CudaToNhwc>(p.integer("n", 1, 1 << 20), p.integer("c", 1, 1 << 20), p.integer("hw", 1, 1 << 28), layer);
}

}  // namespace stepscope
