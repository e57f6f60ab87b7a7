// An Event is a point on a stream. Recording it enqueues a marker; when the
// stream reaches the marker the event fires with a timestamp. Other streams
// (and the host) can wait for it. Semantics follow cudaEvent_t: waiting on an
// event that was never recorded returns at once.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace stepscope {

class Event {
 public:
  // Called when a record is enqueued by the named stream; returns the generation to fire.
  uint64_t beginRecord(const std::string& source = "");
  // The generation a waiter must see fired, and the stream that recorded it.
  std::pair<uint64_t, std::string> latestRecord();
  // When `generation` fired, or -1 if a later generation has replaced it (or none fired).
  int64_t firedAtNs(uint64_t generation);
  // Called by the stream when it reaches the marker.
  void fire(uint64_t generation, int64_t timestampNs);
  // The generation a waiter must see fired (0: nothing to wait for).
  uint64_t latestGeneration();
  void waitFor(uint64_t generation);
  bool isComplete();
  bool hasFired(uint64_t generation);
  // Timestamp of the latest fired generation, or -1.
  int64_t timestampNs();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t recorded_ = 0;
  uint64_t fired_ = 0;
  int64_t timestamp_ = -1;
  std::string source_;
};

using EventPtr = std::shared_ptr<Event>;

}  // namespace stepscope
