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

class Timeline {
 public:
  static Timeline& global();
  void add(KernelRecord record);
  std::vector<KernelRecord> drain();
  void clear();
  size_t size();

 private:
  std::mutex mutex_;
  std::vector<KernelRecord> records_;
};

}  // namespace stepscope
