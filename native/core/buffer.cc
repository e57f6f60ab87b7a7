#include "core/buffer.h"
#include "core/uniform.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

#include <atomic>
#include <map>
#include <mutex>

namespace stepscope {

namespace {

struct CachedBlock {
  float* data;
  int streamId;  // -1: free everywhere
  EventPtr event;
  uint64_t generation;
  bool freeEverywhere() const { return !event || event->hasFired(generation); }
};

std::mutex cacheMutex;
std::multimap<size_t, CachedBlock>& cache() {
  static auto* blocks = new std::multimap<size_t, CachedBlock>();  // never destroyed: buffers may outlive statics
  return *blocks;
}
size_t cachedBytes = 0;

size_t blockBytes(size_t count) {
  const size_t bytes = count * sizeof(float);
  return bytes < (1 << 20) ? (bytes + 63) / 64 * 64 : (bytes + 4095) / 4096 * 4096;
}

// Under the sanitizers blocks are never reused, so that AddressSanitizer sees
// every free and reports a use after it; blocks still in flight on a stream
// wait in the cache until their event has fired.
#ifdef STEPSCOPE_SANITIZE_BUILD
constexpr bool kReuseBlocks = false;
#else
constexpr bool kReuseBlocks = true;
#endif

// A cached block of exactly `bytes` that may be used on `streamId`, or a new one.
CachedBlock takeBlock(size_t bytes, int streamId) {
  if (kReuseBlocks) {
    std::lock_guard<std::mutex> lock(cacheMutex);
    auto range = cache().equal_range(bytes);
    for (auto it = range.first; it != range.second; ++it) {
      const CachedBlock& b = it->second;
      if ((streamId >= 0 && b.streamId == streamId) || b.freeEverywhere()) {
        CachedBlock out = b;
        cache().erase(it);
        cachedBytes -= bytes;
        return out;
      }
    }
  }
  return {static_cast<float*>(std::aligned_alloc(bytes < (1 << 20) ? 64 : 4096, bytes)), -1, nullptr, 0};
}

void returnBlock(size_t bytes, CachedBlock block) {
  std::lock_guard<std::mutex> lock(cacheMutex);
  if (!kReuseBlocks) {
    for (auto it = cache().begin(); it != cache().end();) {
      if (it->second.freeEverywhere()) {
        std::free(it->second.data);
        cachedBytes -= it->first;
        it = cache().erase(it);
      } else {
        ++it;
      }
    }
    if (block.freeEverywhere()) return std::free(block.data);
  }
  cache().emplace(bytes, std::move(block));
  cachedBytes += bytes;
}

}  // namespace

size_t emptyBufferCache() {
  std::lock_guard<std::mutex> lock(cacheMutex);
  size_t freed = cachedBytes;
  for (auto it = cache().begin(); it != cache().end();) {
    if (it->second.freeEverywhere()) {  // blocks still in flight on a stream stay
      std::free(it->second.data);
      cachedBytes -= it->first;
      it = cache().erase(it);
    } else {
      ++it;
    }
  }
  return freed - cachedBytes;
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

DeviceBuffer::DeviceBuffer(size_t count, int streamId) : count_(count) {
  if (count == 0 || count > kMaxCount) {
    throw Error("ERR_INVALID_ARG", "buffer length " + std::to_string(count) +
                                       " is out of range: allowed 1 to " + std::to_string(kMaxCount) + " floats");
  }
  const size_t bytes = blockBytes(count);
  CachedBlock block = takeBlock(bytes, streamId);
  data_ = block.data;
  hostReady_ = block.event;
  hostReadyGeneration_ = block.generation;
  if (!data_) {
    throw Error("ERR_OUT_OF_MEMORY", "could not allocate " + std::to_string(bytes) + " bytes");
  }
  account(int64_t(count_ * sizeof(float)));
}

DeviceBuffer::~DeviceBuffer() {
  if (!owned_) return;
  returnBlock(blockBytes(count_), {data_, -1, hostReady_, hostReadyGeneration_});
  account(-int64_t(count_ * sizeof(float)));
}

void DeviceBuffer::waitUntilHostSafe() {
  if (hostReady_) hostReady_->waitFor(hostReadyGeneration_);
}

void DeviceBuffer::freeAsync(int streamId, const EventPtr& event, uint64_t generation) {
  if (!owned_) return;
  owned_ = false;
  returnBlock(blockBytes(count_), {data_, streamId, event, generation});
  account(-int64_t(count_ * sizeof(float)));
}

void fillUniform(DeviceBuffer& buffer, uint64_t seed, float lo, float hi) {
  float* out = buffer.data();
  const int64_t n = static_cast<int64_t>(buffer.size());
  const uint64_t key = splitmix64(seed);
  const float scale = (hi - lo) / 16777216.0f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = uniformAt(key, i, lo, scale);
}

}  // namespace stepscope
