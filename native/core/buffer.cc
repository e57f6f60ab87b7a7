#include "core/buffer.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

#include <atomic>
#include <map>
#include <mutex>

namespace stepscope {

// A caching allocator, as the frameworks have: freed blocks are kept by size
// and handed out again, so a training step that allocates the same tensors
// every iteration does not pay the kernel's page faults (mmap, first touch,
// munmap) each time. Memory statistics count blocks in use, not the cache.
namespace {
std::mutex cacheMutex;
std::multimap<size_t, float*>& cache() {
  static auto* blocks = new std::multimap<size_t, float*>();  // never destroyed: buffers may outlive statics
  return *blocks;
}
size_t cachedBytes = 0;

size_t blockBytes(size_t count) {
  const size_t bytes = count * sizeof(float);
  return bytes < (1 << 20) ? (bytes + 63) / 64 * 64 : (bytes + 4095) / 4096 * 4096;
}

float* takeBlock(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(cacheMutex);
    auto it = cache().find(bytes);
    if (it != cache().end()) {
      float* p = it->second;
      cache().erase(it);
      cachedBytes -= bytes;
      return p;
    }
  }
  return static_cast<float*>(std::aligned_alloc(bytes < (1 << 20) ? 64 : 4096, bytes));
}

void returnBlock(float* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(cacheMutex);
  cache().emplace(bytes, p);
  cachedBytes += bytes;
}
}  // namespace

size_t emptyBufferCache() {
  std::lock_guard<std::mutex> lock(cacheMutex);
  size_t freed = cachedBytes;
  for (auto& [bytes, p] : cache()) std::free(p);
  cache().clear();
  cachedBytes = 0;
  return freed;
}

size_t bufferCacheBytes() {
  std::lock_guard<std::mutex> lock(cacheMutex);
  return cachedBytes;
}

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
  const size_t bytes = blockBytes(count);
  data_ = takeBlock(bytes);
  if (!data_) {
    throw Error("ERR_OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes");
  }
  account(int64_t(count_ * sizeof(float)));
}

DeviceBuffer::~DeviceBuffer() {
  returnBlock(data_, blockBytes(count_));
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
