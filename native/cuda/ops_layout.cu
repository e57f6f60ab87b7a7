// The conversions of layout_kernels.h, and the op `input` (x [n, c, hw] fp32
// NCHW -> y in the step's layout and dtype: NHWC with nhwc=1, bf16 with
// bf16=1). One thread per output element in memory order: stores are
// coalesced, loads strided (a tiled transpose would coalesce both).
#include <cuda_runtime.h>

#include "core/bf16.h"
#include "cuda/layout_kernels.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

// out[i] (memory order of layout `nhwc`) = in at the same (n, c, s) in layout `inNhwc`.
template <typename In, typename Out>
__global__ void convert(const In* __restrict__ in, Out* __restrict__ out, long long n, long long c, long long s, bool inNhwc, bool nhwc) {
  const long long total = n * c * s;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const ActPos at = actPos(nhwc, i, c, s);
    storef(out + i, loadf(in[actIndex(inNhwc, at.n, at.c, at.s, c, s)]));
  }
}

template <typename In, typename Out>
void launchConvert(const void* in, void* out, long long n, long long c, long long s, bool inNhwc, bool nhwc, cudaStream_t stream) {
  convert<In, Out><<<opGridFor(n * c * s), 256, 0, stream>>>(static_cast<const In*>(in), static_cast<Out*>(out), n, c, s, inNhwc, nhwc);
}

class CudaInput : public CudaOpKernel {
 public:
  CudaInput(long long n, long long c, long long hw, bool nhwc, bool bf16, const std::string& layer)
      : CudaOpKernel("input", "fwd", layer), n_(n), c_(c), hw_(hw), nhwc_(nhwc), bf16_(bf16) {
    buffers_ = {{"x", n * c * hw}, {"y", n * c * hw, bf16}};
  }
  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    launchInputConversion(b[0], b[1], n_, c_, hw_, nhwc_, bf16_, stream);
    checkLaunch("input launch", context());
  }

 private:
  long long n_, c_, hw_;
  bool nhwc_, bf16_;
};

}  // namespace

void launchInputConversion(const float* x, void* y, long long n, long long c, long long s, bool nhwc, bool bf16, cudaStream_t stream) {
  if (bf16) launchConvert<float, Bf16>(x, y, n, c, s, false, nhwc, stream);
  else launchConvert<float, float>(x, y, n, c, s, false, nhwc, stream);
}

// Weights are [k, c, rs] activations of "images" k: KRSC is their NHWC.
void launchWeightsForCudnn(const float* kcrs, void* out, long long k, long long c, long long rs, bool krsc, bool bf16, cudaStream_t stream) {
  if (bf16) launchConvert<float, Bf16>(kcrs, out, k, c, rs, false, krsc, stream);
  else launchConvert<float, float>(kcrs, out, k, c, rs, false, krsc, stream);
}

void launchWeightsFromCudnn(const void* in, float* kcrs, long long k, long long c, long long rs, bool krsc, bool bf16, cudaStream_t stream) {
  if (bf16) launchConvert<Bf16, float>(in, kcrs, k, c, rs, krsc, false, stream);
  else launchConvert<float, float>(in, kcrs, k, c, rs, krsc, false, stream);
}

std::unique_ptr<CudaOpKernel> makeCudaInput(const std::string& op, const OpParams& p, const std::string& layer) {
  return std::make_unique<CudaInput>(p.integer("n", 1, 1 << 20), p.integer("c", 1, 1 << 20), p.integer("hw", 1, 1 << 28), p.flag("nhwc"), p.flag("bf16"),
                                     layer);
}

}  // namespace stepscope
