// A CUDA stream with the same role as core/stream.h's Stream, and the CUDA
// timeline: each kernel launched through timed() is bracketed by CUDA events
// and an NVTX range (so Nsight Systems shows the same layer/pass/variant
// names); drainTimeline() turns the events into the KernelRecords the CPU
// backend produces, on this addon's nowNs() clock.
//
// Stream capture (CUDA graphs, cuda_graph.h): while a capture is open, the
// timing events are recorded as external event nodes of the graph, and the
// records go to the capture instead of the timeline; each launch of the graph
// puts them on the timeline again (the events then hold that launch's times).
// One capture at a time per process; every stream that joins it (through a
// wait on a captured event) is captured too.
#pragma once
#include <cuda_runtime_api.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/timeline.h"

namespace stepscope {

// Maps a stream's event times to host nanoseconds: an event recorded and
// waited for at creation, and the host time it completed.
struct StreamAnchor {
  cudaEvent_t event = nullptr;
  int64_t hostNs = 0;
  int device = -1;  // of the event: elapsed times are only read between events of one GPU
  ~StreamAnchor();
};

class CudaStream;

// A point on a stream (cudaEvent_t with timing): record() marks where the
// stream is; another stream's wait() makes its later work wait for it. The
// CUDA events are made at the first record, on the stream's GPU (an event
// belongs to one device; recording it on another GPU's stream makes new ones).
class CudaEvent : public std::enable_shared_from_this<CudaEvent> {
 public:
  CudaEvent();  // throws ERR_NO_DEVICE without a GPU
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  void record(CudaStream& stream);  // in a capture: a dependency for waits, plus an external node for the time
  // True when the latest record has fired (or the event was never recorded).
  bool complete() const;
  // Host nanoseconds (nowNs clock) when the latest record fired; -1 when not recorded or not fired yet.
  int64_t timestampNs() const;
  void synchronize() const;
  cudaEvent_t get() const { return event_; }
  uint64_t generation() const { return generation_; }
  const std::string& streamName() const { return streamName_; }
  bool captured() const { return captured_; }  // the latest record was into a graph capture
  // The latest record was into the capture open now (so a wait on it joins that capture).
  bool inOpenCapture() const;
  // What an eager stream waits on: after a capture, the external timing event
  // the graph records (the internal one belongs to the graph).
  cudaEvent_t eagerHandle() const { return timeSource(); }
  // A launch of the graph of capture `captureId`: if the latest record is that
  // capture's, its time is read from `anchor` (the launch stream's, recorded
  // shortly before the launch) instead of the capture's, so its float ms
  // stay precise however long after the capture the graph runs.
  void reanchor(const std::shared_ptr<StreamAnchor>& anchor, uint64_t captureId);
  // Capture `captureId` was discarded (or failed to end): if the latest record
  // was into it, the event never fires, and waits on it are refused until the next record.
  void forgetDiscardedCapture(uint64_t captureId) noexcept;
  bool inDiscardedCapture() const { return discarded_; }

 private:
  cudaEvent_t event_ = nullptr;
  cudaEvent_t timing_ = nullptr;  // recorded as an external node when the latest record was captured
  int device_ = -1;               // of event_ and timing_; -1 before the first record
  bool captured_ = false;
  bool discarded_ = false;  // the latest record's capture was discarded
  uint64_t captureId_ = 0;  // the capture of the latest captured record
  cudaEvent_t timeSource() const { return captured_ ? timing_ : event_; }
  std::shared_ptr<StreamAnchor> anchor_;  // the anchor of the stream of the latest record
  std::string streamName_;
  uint64_t generation_ = 0;  // counts records: a wait's firedNs is known while it is unchanged
};
using CudaEventPtr = std::shared_ptr<CudaEvent>;

class CudaStream {
 public:
  // On GPU `device` (-1: the default one). Throws ERR_NO_DEVICE without a GPU.
  explicit CudaStream(std::string name, int device = -1);
  ~CudaStream();
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  int id() const { return id_; }
  int device() const { return device_; }
  const std::string& name() const { return name_; }
  // Launches body's kernels between two events; a launch error throws here.
  void timed(const KernelInfo& info, const std::function<void()>& body);
  // Blocks until the stream is idle; throws the first asynchronous error.
  void synchronize();
  // Later work on this stream waits for the event's latest record; the wait
  // is timed on the device (a WaitRecord for drainWaits()).
  void wait(const CudaEventPtr& event);
  // A copy: synchronize() on a libuv worker may replace it meanwhile (refreshAnchor).
  std::shared_ptr<StreamAnchor> anchor() const {
    std::lock_guard<std::mutex> lock(anchorMutex_);
    return anchor_;
  }
  // Re-anchors the timeline of an idle stream (event times are float ms from
  // the anchor: precise to ~0.5 us only within seconds of it).
  void refreshAnchor();
  // True while this stream is being captured into a graph.
  bool capturing() const;

 private:
  cudaStream_t stream_ = nullptr;
  int id_;
  int device_ = 0;
  std::string name_;
  mutable std::mutex anchorMutex_;  // anchor_ is replaced on a worker thread, read on the JS thread
  std::shared_ptr<StreamAnchor> anchor_;
};

using CudaStreamPtr = std::shared_ptr<CudaStream>;

// timed() for one host call that launches on several streams (of different
// GPUs): each stream gets its own record, bracketing what body() enqueued
// there. Not in a graph capture (ERR_UNSUPPORTED).
void timedTogether(const std::vector<std::pair<CudaStream*, KernelInfo>>& streams, const std::function<void()>& body);

// The timing events a graph owns (destroyed with the last holder: the graph,
// or a record of one of its launches not yet drained).
struct GraphEvents {
  std::vector<cudaEvent_t> events;
  ~GraphEvents();
};

// What a capture recorded: kernel and wait records whose events are nodes of
// the graph. Opaque outside cuda_stream.cc.
struct CapturedTimeline;

// Opens the capture of the timeline (the stream capture itself is the graph's).
void beginTimelineCapture();

// Something a graph's launches must tell: beforeLaunch runs on the host right
// before each cudaGraphLaunch (it may refuse the launch by throwing: an
// aborted communicator) and afterLaunch right after it, with the launch
// stream (the NCCL watchdog times the graph's all-reduces between the two).
// Kept alive as long as the graph.
struct LaunchHook {
  virtual ~LaunchHook() = default;
  virtual void beforeLaunch(cudaStream_t /*stream*/) {}
  virtual void afterLaunch(cudaStream_t stream) = 0;
};
void hookForCapture(std::shared_ptr<LaunchHook> hook);
// Keeps `holder` alive as long as the graph of the open capture (nothing when
// none is open): what its nodes use by address (buffers, a kernel's scratch,
// a communicator; the events its nodes record are held by the capture
// itself), so a replay never touches memory
// that JS released after the capture.
void holdForCapture(std::shared_ptr<void> holder);
// Before and after a launch of the graph: runs its hooks.
void runHooksBeforeLaunch(const CapturedTimeline& captured, cudaStream_t stream);
void runLaunchHooks(const CapturedTimeline& captured, cudaStream_t stream);
// Closes it: the records since beginTimelineCapture(), owned by `events`.
std::shared_ptr<CapturedTimeline> endTimelineCapture();
// Closes it and drops what it captured (a capture abandoned: no graph).
void discardTimelineCapture() noexcept;
// A capture that ended but will never run (its end or instantiation failed):
// the events last recorded into it refuse waits until recorded again.
void forgetCaptureOf(const CapturedTimeline& captured) noexcept;
// After a launch of the graph: its records, as if enqueued now, timed from
// `anchor` (the launch stream's), as its captured events' latest records.
void replayTimeline(const std::shared_ptr<CapturedTimeline>& captured, const std::shared_ptr<StreamAnchor>& anchor);
size_t capturedKernelCount(const CapturedTimeline& captured);

// Waits for every recorded kernel and returns them in launch order.
std::vector<KernelRecord> drainTimeline();
// The same for the streams' waits for events of other streams.
std::vector<WaitRecord> drainWaits();
void clearTimeline();

}  // namespace stepscope
