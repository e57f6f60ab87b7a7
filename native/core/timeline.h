// One record per executed kernel, appended by the stream that ran it.
// JS drains the records to build breakdowns, traces and reports.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace stepscope {

// Monotonic nanoseconds since the addon was loaded.
int64_t nowNs();

// What a kernel is, known before it runs.
struct KernelInfo {
  std::string op;       // e.g. "conv", "reorder"
  std::string variant;  // e.g. "im2col-gemm"
  std::string layer;    // e.g. "res2a_branch2b"; may be empty
  std::string pass;     // "fwd", "bwd-data", "bwd-filter" or ""
  double flops = 0;
  double bytes = 0;
};

struct KernelRecord {
  KernelInfo info;
  int streamId = 0;
  std::string streamName;
  int64_t startNs = 0;
  int64_t endNs = 0;
};

// A stream that waited for an event another stream recorded: the dependency
// edges of the schedule, so the critical path follows what really waited.
struct WaitRecord {
  int streamId = 0;
  std::string streamName;    // the stream that waited
  std::string sourceStream;  // the stream that recorded the event ("" for none)
  int64_t startNs = 0;       // the wait began (the stream reached it)
  int64_t endNs = 0;         // the wait returned
  int64_t firedNs = -1;      // the event fired (-1: not known)
};

class Timeline {
 public:
  static Timeline& global();
  void add(KernelRecord record);
  std::vector<KernelRecord> drain();
  void addWait(WaitRecord record);
  std::vector<WaitRecord> drainWaits();
  void clear();
  size_t size();

 private:
  // Nobody may drain the waits (a benchmark): keep memory bounded.
  static constexpr size_t kMaxWaits = 1 << 20;
  std::mutex mutex_;
  std::vector<KernelRecord> records_;
  std::vector<WaitRecord> waits_;
};

}  // namespace stepscope
