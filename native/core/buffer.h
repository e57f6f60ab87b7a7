// A Buffer is device memory; on the CPU backend, 64-byte aligned host floats.
// Streams and kernels hold shared_ptrs so memory outlives queued work.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace stepscope {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(float); }

  // Largest buffer we hand out; beyond this a request is surely a bug.
  static constexpr size_t kMaxCount = size_t(1) << 33;

 private:
  float* data_ = nullptr;
  size_t count_ = 0;
};

using BufferPtr = std::shared_ptr<DeviceBuffer>;

// Device memory held by live buffers, and the most held at once since the
// last reset: the step's peak memory.
struct MemoryStats {
  int64_t bytesInUse;
  int64_t peakBytes;
};
MemoryStats memoryStats();
void resetPeakMemory();
// Blocks kept for reuse by the caching allocator; emptyBufferCache frees them.
size_t bufferCacheBytes();
size_t emptyBufferCache();

// Fills with uniform values in [lo, hi) from a counter-based generator, so the
// same seed gives the same data whatever the thread count.
void fillUniform(DeviceBuffer& buffer, uint64_t seed, float lo, float hi);

}  // namespace stepscope
