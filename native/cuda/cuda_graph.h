// CUDA graphs: one training iteration captured from its streams (stream
// capture, relaxed mode) and replayed with one launch, so the host's cost of
// enqueueing ~500 kernels becomes one call. The kernels keep their timeline
// records: the capture's timing events are external nodes of the graph, and
// each launch puts the records on the timeline again (cuda_stream.h). Drain
// the timeline before the next launch: the events hold the latest launch's times.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>

#include "cuda/cuda_stream.h"

namespace stepscope {

class CudaGraph {
 public:
  // Opens a capture on `origin`: its later work, and that of every stream that
  // waits on one of its captured events, goes into the graph instead of running.
  static void beginCapture(CudaStream& origin);
  // Closes the capture and instantiates the graph. Throws ERR_CUDA when the
  // capture was invalidated (a stream that joined did not rejoin `origin`, or
  // a call that cannot be captured, such as a synchronize, was made).
  static std::shared_ptr<CudaGraph> endCapture(CudaStream& origin);
  // Ends and discards the capture `origin` opened, if any, without
  // instantiating it: an iteration that failed halfway (stream.abortCapture),
  // or the stream going away (its destructor), so a later beginCapture can open one.
  static void abandonCaptureOf(CudaStream& origin) noexcept;

  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  void launch(CudaStream& stream);
  size_t nodes() const;
  size_t kernels() const { return capturedKernelCount(*timeline_); }

 private:
  CudaGraph() = default;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  int device_ = 0;  // of the stream it was captured from; launched there only
  std::shared_ptr<CapturedTimeline> timeline_;
};

using CudaGraphPtr = std::shared_ptr<CudaGraph>;

}  // namespace stepscope
