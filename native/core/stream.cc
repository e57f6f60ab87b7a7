#include "core/stream.h"

#include <atomic>

#include "core/error.h"

namespace stepscope {

static std::atomic<int> nextStreamId{0};

void KernelRecorder::run(const KernelInfo& info, const std::function<void()>& body) {
  KernelRecord record;
  record.info = info;
  record.streamId = streamId_;
  record.streamName = streamName_;
  record.startNs = nowNs();
  body();
  record.endNs = nowNs();
  Timeline::global().add(std::move(record));
}

Stream::Stream(std::string name) : id_(nextStreamId++), name_(std::move(name)) {
  thread_ = std::thread([this] { loop(); });
}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  workCv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Stream::push(Task task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
  }
  workCv_.notify_one();
}

void Stream::enqueue(std::function<void(KernelRecorder&)> work) { push({std::move(work), false}); }

uint64_t Stream::record(const EventPtr& event) {
  uint64_t generation = event->beginRecord(name_);
  push({[event, generation](KernelRecorder&) { event->fire(generation, nowNs()); }, true});
  return generation;
}

void Stream::wait(const EventPtr& event) {
  auto [generation, source] = event->latestRecord();
  if (generation == 0) return;
  int id = id_;
  std::string name = name_;
  push({[event, generation, id, name, source](KernelRecorder&) {
          WaitRecord record{id, name, source, nowNs(), 0, -1};
          event->waitFor(generation);
          record.endNs = nowNs();
          record.firedNs = event->firedAtNs(generation);
          Timeline::global().addWait(std::move(record));
        },
        true});
}

void Stream::synchronize() {
  std::unique_lock<std::mutex> lock(mutex_);
  idleCv_.wait(lock, [&] { return queue_.empty() && !busy_; });
  if (failed_) {
    failed_ = false;
    std::string code, message;
    code.swap(errorCode_);
    message.swap(errorMessage_);
    throw Error(code, "stream '" + name_ + "': " + message);
  }
}

size_t Stream::pending() {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size() + (busy_ ? 1 : 0);
}

void Stream::loop() {
  KernelRecorder recorder(id_, name_);
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      workCv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      if (failed_ && !task.alwaysRuns) {
        if (queue_.empty()) idleCv_.notify_all();
        continue;
      }
      busy_ = true;
    }
    std::string code, message;
    try {
      task.work(recorder);
    } catch (const Error& e) {
      code = e.code();
      message = e.what();
    } catch (const std::exception& e) {
      code = "ERR_NATIVE";
      message = e.what();
    } catch (...) {
      code = "ERR_NATIVE";
      message = "unknown native exception";
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ = false;
      if (!code.empty() && !failed_) {
        failed_ = true;
        errorCode_ = code;
        errorMessage_ = message;
      }
      if (queue_.empty()) idleCv_.notify_all();
    }
  }
}

}  // namespace stepscope
