// A Buffer is device memory; on the CPU backend, aligned host floats.
// Streams and kernels hold shared_ptrs so memory outlives queued work.
//
// Memory comes from a caching allocator, as in the frameworks: freed blocks
// are kept by size and handed out again, so a step that allocates the same
// tensors every iteration pays no page faults. Freeing can be stream-ordered
// (like cudaFreeAsync): the block returns at once, reusable by later work on
// the same stream (which runs after every earlier use) and by anyone else
// once an event recorded at the free has fired. That keeps the peak memory of
// an asynchronously enqueued step what the schedule needs, not the sum of
// everything it ever allocated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/event.h"

namespace stepscope {

class DeviceBuffer {
 public:
  // streamId >= 0: the buffer is used in order on that stream, so a block
  // freed on that stream may be reused at once.
  explicit DeviceBuffer(size_t count, int streamId = -1);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(float); }

  // Host reads and writes wait for work that used this block before it was
  // handed out (stream-ordered reuse).
  void waitUntilHostSafe();
  // Stream-ordered free; `event` was just recorded on stream `streamId`.
  // Queued work that holds this buffer still finds its data intact.
  void freeAsync(int streamId, const EventPtr& event, uint64_t generation);

  // Largest buffer we hand out; beyond this a request is surely a bug.
  static constexpr size_t kMaxCount = size_t(1) << 33;

 private:
  float* data_ = nullptr;
  size_t count_ = 0;
  bool owned_ = true;  // false once freeAsync gave the block back
  EventPtr hostReady_;
  uint64_t hostReadyGeneration_ = 0;
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
