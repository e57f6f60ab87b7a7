#include "core/buffer.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

#include <atomic>

namespace stepscope {

static std::atomic<int64_t> bytesInUse{0};
static std::atomic<int64_t> peakBytes{0};

static void account(int64_t delta) {
  const int64_t now = bytesInUse.fetch_add(delta) + delta;
  int64_t peak = peakBytes.load();
  while (now > peak && !peakBytes.compare_exchange_weak(peak, now)) {
  }
}

MemoryStats memoryStats() { return {bytesInUse.load(), peakBytes.load()}; }
void resetPeakMemory() { peakBytes.store(bytesInUse.load()); }

DeviceBuffer::DeviceBuffer(size_t count) : count_(count) {
  if (count == 0 || count > kMaxCount) {
    throw Error("ERR_INVALID_ARG", "buffer length " + std::to_string(count) +
                                       " is out of range: allowed 1 to " + std::to_string(kMaxCount) + " floats");
  }
  size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
  data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!data_) {
    throw Error("ERR_OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes");
  }
  account(int64_t(count_ * sizeof(float)));
}

DeviceBuffer::~DeviceBuffer() {
  std::free(data_);
  account(-int64_t(count_ * sizeof(float)));
}

static inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void fillUniform(DeviceBuffer& buffer, uint64_t seed, float lo, float hi) {
  float* out = buffer.data();
  const int64_t n = static_cast<int64_t>(buffer.size());
  const uint64_t key = splitmix64(seed);
  const float scale = (hi - lo) / 16777216.0f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t bits = splitmix64(key ^ static_cast<uint64_t>(i));
    out[i] = lo + static_cast<float>(bits >> 40) * scale;
  }
}

}  // namespace stepscope
