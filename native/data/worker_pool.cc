#include "data/worker_pool.h"

#include <string>

#include "core/error.h"

namespace stepscope {

WorkerPool::WorkerPool(int threads) {
  try {
    threads_.reserve(threads);
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  } catch (const std::exception& e) {
    // The destructor will not run: the started threads are joined here (a
    // joinable thread destroyed would terminate the process).
    const size_t started = threads_.size();
    stop();
    throw Error("ERR_OUT_OF_MEMORY", "could not start " + std::to_string(threads) + " decoding threads (" + std::to_string(started) +
                                         " started): " + e.what() + "; give fewer threads");
  }
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::stop() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void WorkerPool::loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void WorkerPool::run(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  std::mutex doneMutex;
  std::condition_variable doneCv;
  size_t left = n;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t queued = 0;
    try {
      for (; queued < n; ++queued) {
        queue_.emplace_back([&, i = queued] {
          fn(i);
          std::lock_guard<std::mutex> l(doneMutex);
          if (--left == 0) doneCv.notify_all();
        });
      }
    } catch (...) {
      // The tasks point into this frame: none may outlive it. No worker has
      // taken one yet (the lock is held), so they are all still at the back.
      queue_.erase(queue_.end() - ptrdiff_t(queued), queue_.end());
      throw;
    }
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> lock(doneMutex);
  doneCv.wait(lock, [&] { return left == 0; });
}

}  // namespace stepscope
