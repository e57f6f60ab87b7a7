#include "cuda/cuda_buffer.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

namespace {

// A pageable host-to-device cudaMemcpy may return before the data reaches the
// device, and cudaMemset always does; the compute streams are non-blocking
// (they do not wait for the legacy stream), so a copy in or a fill waits for
// itself here: the promise of this class is a synchronous copy.
void finishLegacyStream(const char* what) { checkCuda(cudaStreamSynchronize(cudaStreamLegacy), what); }

// Bytes of the live Buffers and of the kernels' scratch, and the most at
// once: of the process, and of each GPU (replicas on several GPUs each
// track their own peak).
// Never destroyed (as the timeline's lists): buffers and scratch held by a
// capture still open at exit are released during static destruction.
std::mutex& statsMutex = *new std::mutex();
CudaMemoryStats& total = *new CudaMemoryStats();
std::vector<CudaMemoryStats>& perDevice = *new std::vector<CudaMemoryStats>();

void grow(CudaMemoryStats& s, int64_t buffer, int64_t scratch) {
  s.bytesInUse += buffer;
  s.scratchBytes += scratch;
  if (s.bytesInUse > s.peakBytes) s.peakBytes = s.bytesInUse;
  if (s.bytesInUse + s.scratchBytes > s.peakTotalBytes) s.peakTotalBytes = s.bytesInUse + s.scratchBytes;
}

// Never throws (destructors call it): without room for a GPU's entry, only the total counts.
void account(int device, int64_t buffer, int64_t scratch = 0) {
  std::lock_guard<std::mutex> lock(statsMutex);
  grow(total, buffer, scratch);
  if (size_t(device) >= perDevice.size()) {
    try {
      perDevice.resize(size_t(device) + 1);
    } catch (...) {
      return;
    }
  }
  grow(perDevice[size_t(device)], buffer, scratch);
}

// Frees device memory of GPU `device` from any thread (never throws: destructors).
void freeOnDevice(void* ptr, int device) {
  trySetDevice(device);  // nothing relies on the device current before (device.h)
  if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();  // not the next launch's error to report
}

}  // namespace

CudaMemoryStats cudaMemoryStats(int device) {
  std::lock_guard<std::mutex> lock(statsMutex);
  if (device < 0) return total;
  return size_t(device) < perDevice.size() ? perDevice[size_t(device)] : CudaMemoryStats{};
}

void resetCudaPeakMemory(int device) {
  std::lock_guard<std::mutex> lock(statsMutex);
  auto reset = [](CudaMemoryStats& s) {
    s.peakBytes = s.bytesInUse;
    s.peakTotalBytes = s.bytesInUse + s.scratchBytes;
  };
  if (device < 0) {
    reset(total);
    for (CudaMemoryStats& s : perDevice) reset(s);
  } else if (size_t(device) < perDevice.size()) {
    reset(perDevice[size_t(device)]);
  }
}

CudaMemory::CudaMemory(size_t length, bool bf16, int device) : length_(length), bf16_(bf16) {
  device_ = bindDevice(device, "Buffer");
  if (length == 0) throw Error("ERR_INVALID_ARG", "Buffer: length must be at least 1");
  checkCuda(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()), "cudaMalloc",
            "Buffer of " + std::to_string(length) + (bf16 ? " bf16 values" : " floats"));
  account(device_, int64_t(bytes()));
}

CudaMemory::~CudaMemory() {
  if (!data_) return;
  freeOnDevice(data_, device_);  // cudaFree waits for kernels still using it
  account(device_, -int64_t(bytes()));
}

void CudaMemory::write(const float* src, size_t offset, size_t count) {
  useDevice(device_);  // the legacy stream synchronized below is this GPU's
  if (!bf16_) {
    checkCuda(cudaMemcpy(data_ + offset, src, count * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy (write)");
    finishLegacyStream("cudaMemcpy (write)");
    return;
  }
  std::vector<Bf16> host(count);
  for (size_t i = 0; i < count; ++i) host[i] = toBf16(src[i]);
  checkCuda(cudaMemcpy(reinterpret_cast<Bf16*>(data_) + offset, host.data(), count * sizeof(Bf16), cudaMemcpyHostToDevice), "cudaMemcpy (write)");
  finishLegacyStream("cudaMemcpy (write)");
}

void CudaMemory::read(float* dst, size_t offset, size_t count) const {
  useDevice(device_);
  if (!bf16_) {
    checkCuda(cudaMemcpy(dst, data_ + offset, count * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy (read)");
    return;
  }
  std::vector<Bf16> host(count);
  checkCuda(cudaMemcpy(host.data(), reinterpret_cast<const Bf16*>(data_) + offset, count * sizeof(Bf16), cudaMemcpyDeviceToHost), "cudaMemcpy (read)");
  for (size_t i = 0; i < count; ++i) dst[i] = fromBf16(host[i]);
}

void CudaMemory::fill(float value) {
  useDevice(device_);
  if (std::isnan(value)) {  // all-ones bytes: a NaN in fp32 and in bf16
    checkCuda(cudaMemset(data_, 0xFF, bytes()), "cudaMemset (fill)");
    finishLegacyStream("cudaMemset (fill)");
    return;
  }
  std::vector<float> host(length_, value);
  write(host.data(), 0, length_);
}

DeviceScratch::DeviceScratch(size_t bytes) : bytes_(bytes) {
  checkCuda(cudaGetDevice(&device_), "cudaGetDevice", "workspace");
  if (bytes == 0) return;
  checkCuda(cudaMalloc(&ptr_, bytes), "cudaMalloc", "workspace of " + std::to_string(bytes) + " bytes");
  account(device_, 0, int64_t(bytes));
}

void DeviceScratch::upload(const void* src, size_t bytes, const std::string& context) {
  if (bytes > bytes_) throw Error("ERR_INVALID_ARG", context + ": " + std::to_string(bytes) + " bytes do not fit a scratch of " + std::to_string(bytes_));
  useDevice(device_);
  checkCuda(cudaMemcpy(ptr_, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (upload)", context);
  finishLegacyStream("cudaMemcpy (upload)");
}

DeviceScratch::~DeviceScratch() {
  if (!ptr_) return;
  freeOnDevice(ptr_, device_);
  account(device_, 0, -int64_t(bytes_));
}

}  // namespace stepscope
