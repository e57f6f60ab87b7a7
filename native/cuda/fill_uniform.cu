// Buffer.fillUniform on the device: the CPU addon's generator (core/uniform.h),
// so the same seed gives the same values on both backends.
#include <cuda_runtime.h>

#include "core/uniform.h"
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"

namespace stepscope {
namespace {

__global__ void fillUniformKernel(float* out, long long n, uint64_t key, float lo, float scale) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = uniformAt(key, i, lo, scale);
}

}  // namespace

void CudaMemory::fillUniform(uint64_t seed, float lo, float hi) {
  const long long n = (long long)length_;
  const long long blocks = (n + 255) / 256;
  fillUniformKernel<<<int(blocks < 65535LL * 32 ? blocks : 65535LL * 32), 256>>>(data_, n, splitmix64(seed), lo, (hi - lo) / 16777216.0f);
  checkCuda(cudaGetLastError(), "fillUniform launch");
  checkCuda(cudaDeviceSynchronize(), "fillUniform");  // synchronous, as write() and fill()
}

}  // namespace stepscope
