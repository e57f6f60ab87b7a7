#include "cuda/cuda_buffer.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

namespace {

// Bytes of the live Buffers (not the kernels' scratch), and the most at once.
std::mutex statsMutex;
CudaMemoryStats stats;

void account(int64_t bytes) {
  std::lock_guard<std::mutex> lock(statsMutex);
  stats.bytesInUse += bytes;
  if (stats.bytesInUse > stats.peakBytes) stats.peakBytes = stats.bytesInUse;
}

}  // namespace

CudaMemoryStats cudaMemoryStats() {
  std::lock_guard<std::mutex> lock(statsMutex);
  return stats;
}

void resetCudaPeakMemory() {
  std::lock_guard<std::mutex> lock(statsMutex);
  stats.peakBytes = stats.bytesInUse;
}

CudaMemory::CudaMemory(size_t length) : length_(length) {
  requireDevice("Buffer");
  if (length == 0) throw Error("ERR_INVALID_ARG", "Buffer: length must be at least 1");
  checkCuda(cudaMalloc(reinterpret_cast<void**>(&data_), length * sizeof(float)), "cudaMalloc",
            "Buffer of " + std::to_string(length) + " floats");
  account(int64_t(length * sizeof(float)));
}

CudaMemory::~CudaMemory() {
  if (!data_) return;
  cudaFree(data_);  // cudaFree waits for kernels still using it
  account(-int64_t(length_ * sizeof(float)));
}

void CudaMemory::write(const float* src, size_t offset, size_t count) {
  checkCuda(cudaMemcpy(data_ + offset, src, count * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy (write)");
}

void CudaMemory::read(float* dst, size_t offset, size_t count) const {
  checkCuda(cudaMemcpy(dst, data_ + offset, count * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy (read)");
}

void CudaMemory::fill(float value) {
  if (std::isnan(value)) {
    checkCuda(cudaMemset(data_, 0xFF, length_ * sizeof(float)), "cudaMemset (fill)");
    return;
  }
  std::vector<float> host(length_, value);
  write(host.data(), 0, length_);
}

DeviceScratch::DeviceScratch(size_t bytes) : bytes_(bytes) {
  if (bytes > 0) checkCuda(cudaMalloc(&ptr_, bytes), "cudaMalloc", "workspace of " + std::to_string(bytes) + " bytes");
}

DeviceScratch::~DeviceScratch() {
  if (ptr_) cudaFree(ptr_);
}

}  // namespace stepscope
