#include "core/event.h"

namespace stepscope {

uint64_t Event::beginRecord(const std::string& source) {
  std::lock_guard<std::mutex> lock(mutex_);
  source_ = source;
  return ++recorded_;
}

std::pair<uint64_t, std::string> Event::latestRecord() {
  std::lock_guard<std::mutex> lock(mutex_);
  return {recorded_, source_};
}

int64_t Event::firedAtNs(uint64_t generation) {
  std::lock_guard<std::mutex> lock(mutex_);
  return fired_ == generation ? timestamp_ : -1;
}

void Event::fire(uint64_t generation, int64_t timestampNs) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (generation > fired_) {
      fired_ = generation;
      timestamp_ = timestampNs;
    }
  }
  cv_.notify_all();
}

uint64_t Event::latestGeneration() {
  std::lock_guard<std::mutex> lock(mutex_);
  return recorded_;
}

void Event::waitFor(uint64_t generation) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return fired_ >= generation; });
}

bool Event::isComplete() {
  std::lock_guard<std::mutex> lock(mutex_);
  return fired_ >= recorded_;
}

bool Event::hasFired(uint64_t generation) {
  std::lock_guard<std::mutex> lock(mutex_);
  return fired_ >= generation;
}

int64_t Event::timestampNs() {
  std::lock_guard<std::mutex> lock(mutex_);
  return timestamp_;
}

}  // namespace stepscope
