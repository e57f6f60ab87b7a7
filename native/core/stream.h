// A Stream is an ordered queue of work. On the CPU backend it is a worker
// thread draining a FIFO, so enqueueing returns at once and work runs
// asynchronously, as on a CUDA stream; the same schedule code drives both.
//
// A failed kernel puts the stream in an error state: later kernels are
// skipped (their inputs may be garbage) but event markers still fire, so no
// other stream deadlocks. synchronize() reports the error and clears it.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/event.h"
#include "core/timeline.h"

namespace stepscope {

// Handed to a task so that it can time one or more kernels it runs
// (a oneDNN convolution records its reorders as kernels of their own).
class KernelRecorder {
 public:
  KernelRecorder(int streamId, const std::string& streamName) : streamId_(streamId), streamName_(streamName) {}
  void run(const KernelInfo& info, const std::function<void()>& body);

 private:
  int streamId_;
  const std::string& streamName_;
};

class Stream {
 public:
  explicit Stream(std::string name);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int id() const { return id_; }
  const std::string& name() const { return name_; }

  // Work that records its kernels through the recorder. Skipped after an error.
  void enqueue(std::function<void(KernelRecorder&)> work);
  // Returns the generation the event will fire with.
  uint64_t record(const EventPtr& event);
  void wait(const EventPtr& event);
  // Blocks until everything enqueued so far has run; throws the stream's error.
  void synchronize();
  size_t pending();

 private:
  struct Task {
    std::function<void(KernelRecorder&)> work;
    bool alwaysRuns;  // event markers run even in the error state
  };
  void push(Task task);
  void loop();

  int id_;
  std::string name_;
  std::mutex mutex_;
  std::condition_variable workCv_;
  std::condition_variable idleCv_;
  std::deque<Task> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  bool failed_ = false;
  std::string errorCode_;
  std::string errorMessage_;
  std::thread thread_;
};

using StreamPtr = std::shared_ptr<Stream>;

}  // namespace stepscope
