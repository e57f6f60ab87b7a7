// Buffer.fillUniform on the device: the CPU addon's generator (core/uniform.h),
// so the same seed gives the same values on both backends.
#include <cuda_runtime.h>

#include "core/bf16.h"
#include "core/uniform.h"
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {
namespace {

template <typename T>
__global__ void fillUniformKernel(T* out, long long n, uint64_t key, float lo, float scale) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    storef(out + i, uniformAt(key, i, lo, scale));  // bf16: the fp32 value rounded, as write() rounds
}

}  // namespace

void CudaMemory::fillUniform(uint64_t seed, float lo, float hi) {
  useDevice(device_);
  const long long n = (long long)length_;
  const long long blocks = (n + 255) / 256;
  const int grid = int(blocks < 65535LL * 32 ? blocks : 65535LL * 32);
  if (bf16_) fillUniformKernel<<<grid, 256>>>(reinterpret_cast<Bf16*>(data_), n, splitmix64(seed), lo, (hi - lo) / 16777216.0f);
  else fillUniformKernel<<<grid, 256>>>(data_, n, splitmix64(seed), lo, (hi - lo) / 16777216.0f);
  checkCuda(cudaGetLastError(), "fillUniform launch");
  checkCuda(cudaDeviceSynchronize(), "fillUniform");  // synchronous, as write() and fill()
}

}  // namespace stepscope
