#include "core/timeline.h"

#include <chrono>

namespace stepscope {

static const auto kEpoch = std::chrono::steady_clock::now();

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - kEpoch).count();
}

Timeline& Timeline::global() {
  static Timeline* timeline = new Timeline();  // never destroyed: streams may outlive statics
  return *timeline;
}

void Timeline::add(KernelRecord record) {
  std::lock_guard<std::mutex> lock(mutex_);
  records_.push_back(std::move(record));
}

std::vector<KernelRecord> Timeline::drain() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<KernelRecord> out;
  out.swap(records_);
  return out;
}

void Timeline::addWait(WaitRecord record) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (waits_.size() < kMaxWaits) waits_.push_back(std::move(record));
}

std::vector<WaitRecord> Timeline::drainWaits() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<WaitRecord> out;
  out.swap(waits_);
  return out;
}

void Timeline::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  records_.clear();
  waits_.clear();
}

size_t Timeline::size() {
  std::lock_guard<std::mutex> lock(mutex_);
  return records_.size();
}

}  // namespace stepscope
