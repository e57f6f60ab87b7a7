// The data pipeline's own threads (--data-threads): decoding and augmenting
// never run on the JS thread nor on libuv's small pool. Several batches (a
// prefetch queue) may be in flight: their items share the threads in FIFO order.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace stepscope {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int threads() const { return int(threads_.size()); }
  // Runs fn(0..n-1) on the pool and returns when all have run. fn must not
  // throw (callers catch per item: one bad image must not lose the others).
  void run(size_t n, const std::function<void(size_t)>& fn);

 private:
  void loop();
  void stop() noexcept;  // ends and joins the threads (the queue's tasks run first)

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace stepscope
