#include "data/worker_pool.h"

namespace stepscope {

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
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
    for (size_t i = 0; i < n; ++i) {
      queue_.emplace_back([&, i] {
        fn(i);
        std::lock_guard<std::mutex> l(doneMutex);
        if (--left == 0) doneCv.notify_all();
      });
    }
  }
  cv_.notify_all();
  std::unique_lock<std::mutex> lock(doneMutex);
  doneCv.wait(lock, [&] { return left == 0; });
}

}  // namespace stepscope
