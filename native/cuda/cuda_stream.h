// A CUDA stream with the same role as core/stream.h's Stream, and the CUDA
// timeline: each kernel launched through timed() is bracketed by CUDA events
// and an NVTX range (so Nsight Systems shows the same layer/pass/variant
// names); drainTimeline() turns the events into the KernelRecords the CPU
// backend produces, on this addon's nowNs() clock.
#pragma once
#include <cuda_runtime_api.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/timeline.h"

namespace stepscope {

// Maps a stream's event times to host nanoseconds: an event recorded and
// waited for at creation, and the host time it completed.
struct StreamAnchor {
  cudaEvent_t event = nullptr;
  int64_t hostNs = 0;
  ~StreamAnchor();
};

class CudaStream {
 public:
  explicit CudaStream(std::string name);  // throws ERR_NO_DEVICE without a GPU
  ~CudaStream();
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  int id() const { return id_; }
  const std::string& name() const { return name_; }
  // Launches body's kernels between two events; a launch error throws here.
  void timed(const KernelInfo& info, const std::function<void()>& body);
  // Blocks until the stream is idle; throws the first asynchronous error.
  void synchronize();

 private:
  cudaStream_t stream_ = nullptr;
  int id_;
  std::string name_;
  std::shared_ptr<StreamAnchor> anchor_;
};

using CudaStreamPtr = std::shared_ptr<CudaStream>;

// Waits for every recorded kernel and returns them in launch order.
std::vector<KernelRecord> drainTimeline();
void clearTimeline();

}  // namespace stepscope
