// Device memory of fp32 or bf16 elements (cudaMalloc), the CUDA backend's
// Buffer. Copies in and out are synchronous and not stream-ordered:
// synchronize the streams that use the buffer first, as with the CPU Buffer.
// A bf16 buffer is read and written as floats (rounded to nearest even on
// the way in): its kernels see core/bf16.h's Bf16.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace stepscope {

// Device memory held by live Buffers (cudaMalloc'd, no caching allocator yet:
// cachedBytes stays 0), as the CPU addon's memoryStats(); and apart, the
// kernels' device scratch (DeviceScratch: cuDNN workspaces, weight copies,
// tap tables), which PyTorch's max_memory_allocated counts too.
struct CudaMemoryStats {
  int64_t bytesInUse = 0;
  int64_t peakBytes = 0;       // most Buffer bytes at once since the last reset
  int64_t scratchBytes = 0;    // the kernels' scratch now
  int64_t peakTotalBytes = 0;  // most of both at once since the last reset
};
// Of the whole process (device -1), or of one GPU.
CudaMemoryStats cudaMemoryStats(int device = -1);
void resetCudaPeakMemory(int device = -1);  // the peak starts again from what is in use now

class CudaMemory {
 public:
  // On GPU `device` (-1: the default one, device.h). Throws ERR_NO_DEVICE, ERR_OUT_OF_MEMORY, ERR_INVALID_ARG.
  explicit CudaMemory(size_t length, bool bf16 = false, int device = -1);
  ~CudaMemory();
  CudaMemory(const CudaMemory&) = delete;
  CudaMemory& operator=(const CudaMemory&) = delete;

  // The device address; a bf16 buffer's elements are Bf16 (kernels cast).
  float* data() const { return data_; }
  size_t size() const { return length_; }
  bool bf16() const { return bf16_; }
  size_t bytes() const { return length_ * (bf16_ ? 2 : 4); }
  int device() const { return device_; }
  void write(const float* src, size_t offset, size_t count);
  void read(float* dst, size_t offset, size_t count) const;
  // NaN is written as all-ones bytes (a quiet NaN), anything else via the host.
  void fill(float value);
  // The CPU addon's fillUniform, on the device (fill_uniform.cu); synchronous.
  void fillUniform(uint64_t seed, float lo, float hi);

 private:
  float* data_ = nullptr;
  size_t length_;
  bool bf16_;
  int device_ = 0;
};

using CudaMemoryPtr = std::shared_ptr<CudaMemory>;

// Scratch memory of a prepared kernel (workspace, im2col columns), on the
// calling thread's current GPU (the kernel's: it made it current).
class DeviceScratch {
 public:
  DeviceScratch() = default;
  explicit DeviceScratch(size_t bytes);
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  // Copies `bytes` from the host to its start, landed before it returns (as CudaMemory::write).
  void upload(const void* src, size_t bytes, const std::string& context);

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};


}  // namespace stepscope
