#include "cuda/cuda_stream.h"

#include <nvtx3/nvToolsExt.h>

#include <atomic>
#include <mutex>

#include "cuda/cuda_error.h"
#include "cuda/cuda_graph.h"
#include "cuda/device.h"
#include "cuda/device_check.h"

namespace stepscope {

namespace {

struct PendingRecord {
  KernelInfo info;
  int streamId;
  std::string streamName;
  std::shared_ptr<StreamAnchor> anchor;
  cudaEvent_t start, end;
  std::shared_ptr<GraphEvents> graph;  // set: the events are a graph's (never destroyed here)
};

std::mutex timelineMutex;
std::vector<PendingRecord>& pending() {
  static auto* records = new std::vector<PendingRecord>();  // never destroyed: streams may outlive statics
  return *records;
}

std::atomic<int> nextStreamId{1000};  // apart from the CPU addon's stream ids

// An anchor older than this is renewed at the next synchronize: start times
// are float ms from it (~0.5 us resolution up to ~4 s).
constexpr int64_t kAnchorAgeNs = 2'000'000'000LL;

// A wait, timed by two events on the waiting stream around cudaStreamWaitEvent;
// the awaited event's fire time is read at drain time if it was not recorded again.
struct PendingWait {
  int streamId;
  std::string streamName, sourceStream;
  std::shared_ptr<StreamAnchor> anchor;
  cudaEvent_t start, end;
  std::weak_ptr<CudaEvent> awaited;
  uint64_t generation;
  std::shared_ptr<GraphEvents> graph;  // as PendingRecord::graph
};

// The open capture's records (timelineMutex held).
// The open capture's id, 0 when none: read on every kernel launch, so atomic
// (no lock); changed under timelineMutex.
std::atomic<uint64_t> openCapture{0};
uint64_t lastCaptureId = 0;
std::vector<PendingRecord> capturedRecords;
std::vector<PendingWait> capturedWaits;
std::vector<std::shared_ptr<void>> capturedHolds;
std::vector<std::shared_ptr<LaunchHook>> capturedHooks;
// Timing events of a timed()/wait() that threw inside the capture: already
// nodes of it, so they go with the graph (or after it is destroyed), never before.
std::vector<cudaEvent_t> capturedOrphans;
std::vector<std::shared_ptr<CudaEvent>> capturedEvents;  // recorded in the open capture: held as long as its graph

// In a capture, an event recorded as an external node keeps its time on every launch.
cudaError_t recordTiming(cudaEvent_t e, cudaStream_t stream, bool captured) {
  return captured ? cudaEventRecordWithFlags(e, stream, cudaEventRecordExternal) : cudaEventRecord(e, stream);
}

void destroyUnlessGraphs(cudaEvent_t start, cudaEvent_t end, const std::shared_ptr<GraphEvents>& graph) {
  if (graph) return;
  cudaEventDestroy(start);
  cudaEventDestroy(end);
}

// The two timing events of one record: destroyed on the way out unless
// release()d to the record that owns them from then on.
struct TimingEvents {
  cudaEvent_t start = nullptr, end = nullptr;
  explicit TimingEvents(const std::string& context) {
    checkCuda(cudaEventCreate(&start), "cudaEventCreate", context);
    const cudaError_t status = cudaEventCreate(&end);
    if (status != cudaSuccess) {  // no destructor runs for a throwing constructor
      cudaEventDestroy(start);
      checkCuda(status, "cudaEventCreate", context);
    }
  }
  TimingEvents(TimingEvents&& o) noexcept : start(o.start), end(o.end) { o.start = o.end = nullptr; }
  TimingEvents(const TimingEvents&) = delete;
  ~TimingEvents() {
    if (start) cudaEventDestroy(start);
    if (end) cudaEventDestroy(end);
  }
  void release() { start = end = nullptr; }
};

// A timed()/wait() left by an exception while capturing: its events may be
// nodes of the open capture, so the capture keeps them (see capturedOrphans).
void keepForCapture(TimingEvents& events) noexcept {
  std::lock_guard<std::mutex> lock(timelineMutex);
  for (cudaEvent_t e : {events.start, events.end}) {
    if (e) capturedOrphans.push_back(e);
  }
  events.release();
}

// The events whose latest record went into a capture that was discarded (or
// failed to end): their graph never runs, so waiting on them would wait for
// nothing; they refuse waits until recorded again.
void forgetDiscardedCapture(const std::vector<std::shared_ptr<CudaEvent>>& events, uint64_t captureId) noexcept {
  for (const auto& e : events) e->forgetDiscardedCapture(captureId);
}

// An NVTX range open for the scope (also when the body throws).
struct NvtxScope {
  explicit NvtxScope(const std::string& name) { nvtxRangePushA(name.c_str()); }
  ~NvtxScope() { nvtxRangePop(); }
};

std::vector<PendingWait>& pendingWaits() {
  static auto* waits = new std::vector<PendingWait>();  // never destroyed, as pending()
  return *waits;
}

// ms between an anchor's event and another event, as host ns; false if unreadable.
bool hostNsOf(const StreamAnchor& anchor, cudaEvent_t e, int64_t* ns) {
  float ms = 0;
  if (cudaEventElapsedTime(&ms, anchor.event, e) != cudaSuccess) {
    cudaGetLastError();  // an unreadable time is no later launch's error
    return false;
  }
  *ns = anchor.hostNs + int64_t(double(ms) * 1e6);
  return true;
}

}  // namespace

struct CapturedTimeline {
  uint64_t id = 0;  // the capture's
  std::vector<PendingRecord> records;
  std::vector<PendingWait> waits;
  std::shared_ptr<GraphEvents> events;
  std::vector<std::shared_ptr<void>> holds;  // alive as long as the graph
  std::vector<std::shared_ptr<LaunchHook>> hooks;
  std::vector<std::shared_ptr<CudaEvent>> recordedEvents;  // their timing_ is a node of the graph; re-anchored at each launch
};

GraphEvents::~GraphEvents() {
  for (cudaEvent_t e : events) cudaEventDestroy(e);
}

void beginTimelineCapture() {
  std::lock_guard<std::mutex> lock(timelineMutex);
  if (openCapture.load() != 0) throw Error("ERR_INVALID_STATE", "a CUDA graph capture is already open: end it first (one capture at a time)");
  openCapture = ++lastCaptureId;
}

// The open capture's id (0: none).
static uint64_t openCaptureId() { return openCapture.load(); }

void holdForCapture(std::shared_ptr<void> holder) {
  std::lock_guard<std::mutex> lock(timelineMutex);
  if (openCapture.load() != 0) capturedHolds.push_back(std::move(holder));
}

void hookForCapture(std::shared_ptr<LaunchHook> hook) {
  std::lock_guard<std::mutex> lock(timelineMutex);
  if (openCapture.load() != 0) capturedHooks.push_back(std::move(hook));
}

void runHooksBeforeLaunch(const CapturedTimeline& captured, cudaStream_t stream) {
  for (const auto& hook : captured.hooks) hook->beforeLaunch(stream);
}

void runLaunchHooks(const CapturedTimeline& captured, cudaStream_t stream) {
  for (const auto& hook : captured.hooks) hook->afterLaunch(stream);
}

std::shared_ptr<CapturedTimeline> endTimelineCapture() {
  std::lock_guard<std::mutex> lock(timelineMutex);
  auto captured = std::make_shared<CapturedTimeline>();
  captured->id = openCapture.load();
  captured->events = std::make_shared<GraphEvents>();
  captured->recordedEvents.swap(capturedEvents);
  captured->records.swap(capturedRecords);
  captured->waits.swap(capturedWaits);
  captured->holds.swap(capturedHolds);
  captured->hooks.swap(capturedHooks);
  captured->events->events.swap(capturedOrphans);
  for (PendingRecord& r : captured->records) {
    captured->events->events.insert(captured->events->events.end(), {r.start, r.end});
    r.graph = captured->events;
  }
  for (PendingWait& w : captured->waits) {
    captured->events->events.insert(captured->events->events.end(), {w.start, w.end});
    w.graph = captured->events;
  }
  openCapture = 0;
  return captured;
}

void discardTimelineCapture() noexcept {
  std::vector<PendingRecord> records;
  std::vector<PendingWait> waits;
  std::vector<std::shared_ptr<void>> holds;
  std::vector<std::shared_ptr<LaunchHook>> hooks;
  std::vector<std::shared_ptr<CudaEvent>> events;
  std::vector<cudaEvent_t> orphans;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(timelineMutex);
    id = openCapture.load();
    orphans.swap(capturedOrphans);
    records.swap(capturedRecords);  // swaps: nothing here allocates or throws
    waits.swap(capturedWaits);
    holds.swap(capturedHolds);
    hooks.swap(capturedHooks);
    events.swap(capturedEvents);
    openCapture = 0;
  }
  // No graph owns their timing events: they go here (the holds and hooks with the vectors).
  for (const PendingRecord& r : records) cudaEventDestroy(r.start), cudaEventDestroy(r.end);
  for (const PendingWait& w : waits) cudaEventDestroy(w.start), cudaEventDestroy(w.end);
  for (cudaEvent_t e : orphans) cudaEventDestroy(e);
  forgetDiscardedCapture(events, id);
}

static bool timelineCapturing() { return openCapture.load() != 0; }

void replayTimeline(const std::shared_ptr<CapturedTimeline>& captured, const std::shared_ptr<StreamAnchor>& anchor) {
  {
    std::lock_guard<std::mutex> lock(timelineMutex);
    // Only records of the launch stream's GPU (a stream of another GPU that joined the capture keeps its own).
    for (PendingRecord r : captured->records) {
      if (r.anchor->device == anchor->device) r.anchor = anchor;
      pending().push_back(std::move(r));
    }
    for (PendingWait w : captured->waits) {
      if (w.anchor->device == anchor->device) w.anchor = anchor;
      pendingWaits().push_back(std::move(w));
    }
  }
  for (const auto& event : captured->recordedEvents) event->reanchor(anchor, captured->id);
}

size_t capturedKernelCount(const CapturedTimeline& captured) { return captured.records.size(); }

void forgetCaptureOf(const CapturedTimeline& captured) noexcept { forgetDiscardedCapture(captured.recordedEvents, captured.id); }

StreamAnchor::~StreamAnchor() {
  if (event) cudaEventDestroy(event);
}

CudaStream::CudaStream(std::string name, int device) : id_(nextStreamId++), name_(std::move(name)) {
  device_ = bindDevice(device, "Stream");
  checkCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  anchor_ = std::make_shared<StreamAnchor>();
  anchor_->device = device_;
  checkCuda(cudaEventCreate(&anchor_->event), "cudaEventCreate");
  checkCuda(cudaEventRecord(anchor_->event, stream_), "cudaEventRecord");
  checkCuda(cudaEventSynchronize(anchor_->event), "cudaEventSynchronize");
  anchor_->hostNs = nowNs();
}

CudaStream::~CudaStream() {
  if (stream_) {
    trySetDevice(device_);  // not useDevice: a destructor never throws
    CudaGraph::abandonCaptureOf(*this);
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

bool CudaStream::capturing() const {
  if (!timelineCapturing()) return false;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  return cudaStreamIsCapturing(stream_, &status) == cudaSuccess && status == cudaStreamCaptureStatusActive;
}

void CudaStream::timed(const KernelInfo& info, const std::function<void()>& body) {
  useDevice(device_);  // the events below, the body's launches and library handles are this GPU's
  const std::string context = info.layer + " " + info.pass + " " + info.variant;
  const bool captured = capturing();
  TimingEvents events(context);
  try {
    NvtxScope range(info.layer.empty() ? info.op + " " + info.pass + " " + info.variant : context);
    checkCuda(recordTiming(events.start, stream_, captured), "cudaEventRecord", context);
    body();
    checkCuda(cudaGetLastError(), "kernel launch", context);
    checkCuda(recordTiming(events.end, stream_, captured), "cudaEventRecord", context);
  } catch (...) {
    if (captured) keepForCapture(events);
    throw;
  }
  std::lock_guard<std::mutex> lock(timelineMutex);
  (captured ? capturedRecords : pending()).push_back({info, id_, name_, anchor(), events.start, events.end, nullptr});
  events.release();
}

void timedTogether(const std::vector<std::pair<CudaStream*, KernelInfo>>& streams, const std::function<void()>& body) {
  std::vector<TimingEvents> brackets;  // one per stream, in order
  brackets.reserve(streams.size());
  for (const auto& [stream, info] : streams) {
    if (stream->capturing()) throw Error("ERR_UNSUPPORTED", stream->name() + ": a launch across several streams at once cannot be captured into a graph");
    const std::string context = info.layer + " " + info.pass + " " + info.variant + " (" + stream->name() + ")";
    useDevice(stream->device());  // an event belongs to its stream's GPU
    brackets.emplace_back(context);
    checkCuda(cudaEventRecord(brackets.back().start, stream->get()), "cudaEventRecord", context);
  }
  {
    NvtxScope range(streams.empty() ? std::string("group") : streams[0].second.layer + " " + streams[0].second.pass + " " + streams[0].second.variant);
    body();
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    CudaStream* stream = streams[i].first;
    useDevice(stream->device());
    checkCuda(cudaEventRecord(brackets[i].end, stream->get()), "cudaEventRecord", stream->name());
  }
  std::lock_guard<std::mutex> lock(timelineMutex);
  for (size_t i = 0; i < streams.size(); ++i) {
    const auto& [stream, info] = streams[i];
    pending().push_back({info, stream->id(), stream->name(), stream->anchor(), brackets[i].start, brackets[i].end, nullptr});
    brackets[i].release();
  }
}

void CudaStream::synchronize() {
  useDevice(device_);  // also on libuv's workers
  checkCuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", name_);
  if (nowNs() - anchor()->hostNs > kAnchorAgeNs) refreshAnchor();
  throwFailedDeviceChecks(device_, "stream", name_);
}

// A new anchor for later records; earlier ones keep theirs (no negative spans).
void CudaStream::refreshAnchor() {
  if (capturing()) return;
  useDevice(device_);
  auto fresh = std::make_shared<StreamAnchor>();
  fresh->device = device_;
  checkCuda(cudaEventCreate(&fresh->event), "cudaEventCreate (anchor)", name_);
  checkCuda(cudaEventRecord(fresh->event, stream_), "cudaEventRecord (anchor)", name_);
  checkCuda(cudaEventSynchronize(fresh->event), "cudaEventSynchronize (anchor)", name_);
  fresh->hostNs = nowNs();
  std::lock_guard<std::mutex> lock(anchorMutex_);
  anchor_ = fresh;
}

void CudaStream::wait(const CudaEventPtr& event) {
  if (!event->get()) return;  // never recorded: nothing to wait for (as CUDA's wait on a fresh event)
  if (event->inDiscardedCapture()) {
    throw Error("ERR_INVALID_STATE", name_ + ": the event (of '" + event->streamName() +
                                         "') was last recorded into a graph capture that failed or was discarded, so it will never fire: record it again before waiting on it");
  }
  const bool captured = capturing();
  if (captured && !event->inOpenCapture()) {
    throw Error("ERR_INVALID_STATE", name_ + ": a stream in a graph capture can only wait on events recorded in that capture (event of '" +
                                         event->streamName() + "')");
  }
  if (!captured && event->inOpenCapture()) {
    // Joins this stream to the open capture (a fork): structural, not timed
    // (a timing event before the join would not be part of the graph).
    checkCuda(cudaStreamWaitEvent(stream_, event->get(), 0), "cudaStreamWaitEvent", name_);
    return;
  }
  // In the capture: the internal event (a dependency). Eager: after a
  // capture, the timing event the graph records (the internal one is the graph's).
  useDevice(device_);
  const cudaEvent_t awaited = captured ? event->get() : event->eagerHandle();
  TimingEvents events(name_);
  try {
    checkCuda(recordTiming(events.start, stream_, captured), "cudaEventRecord", name_);
    checkCuda(cudaStreamWaitEvent(stream_, awaited, 0), "cudaStreamWaitEvent", name_);
    checkCuda(recordTiming(events.end, stream_, captured), "cudaEventRecord", name_);
  } catch (...) {
    if (captured) keepForCapture(events);
    throw;
  }
  std::lock_guard<std::mutex> lock(timelineMutex);
  (captured ? capturedWaits : pendingWaits()).push_back({id_, name_, event->streamName(), anchor(), events.start, events.end, event, event->generation(), nullptr});
  events.release();
}

CudaEvent::CudaEvent() { requireDevice("Event"); }

CudaEvent::~CudaEvent() {
  if (event_) cudaEventDestroy(event_);
  if (timing_) cudaEventDestroy(timing_);
}

void CudaEvent::record(CudaStream& stream) {
  const bool captured = stream.capturing();
  useDevice(stream.device());
  if (device_ != stream.device()) {
    // A graph may still record timing_ (an external node): such an event stays on its GPU.
    if (event_ && (captured || timing_)) {  // timing_ exists once any record was captured
      throw Error("ERR_INVALID_STATE", stream.name() + ": an event recorded on GPU " + std::to_string(device_) + " in a graph capture (or now into one) cannot move to GPU " +
                                           std::to_string(stream.device()) + "; use one event per GPU");
    }
    // Another GPU: the old events are only waited on through records that have fired or been replaced.
    if (event_) cudaEventDestroy(event_);
    if (timing_) cudaEventDestroy(timing_);
    event_ = timing_ = nullptr;
    checkCuda(cudaEventCreate(&event_), "cudaEventCreate", stream.name());
    device_ = stream.device();
  }
  captured_ = captured;
  discarded_ = false;
  if (captured_) {
    // timing_'s record is a node of the graph: made before event_'s record, so
    // that a wait on event_ depends on it too. After it, the node would be a
    // loose end on this stream, and a side stream's last record (the comm
    // stream's, joined back by a wait) would leave the capture unjoined.
    if (!timing_) checkCuda(cudaEventCreate(&timing_), "cudaEventCreate", stream.name());
    checkCuda(cudaEventRecordWithFlags(timing_, stream.get(), cudaEventRecordExternal), "cudaEventRecordWithFlags", stream.name());
    // The node records timing_: from now on the event must outlive the graph (and is re-anchored at its
    // launches, or refuses waits if the capture is discarded), even if the record below fails.
    captureId_ = openCaptureId();
    std::lock_guard<std::mutex> lock(timelineMutex);
    if (openCapture.load() != 0) capturedEvents.push_back(shared_from_this());
  }
  checkCuda(cudaEventRecord(event_, stream.get()), "cudaEventRecord", stream.name());
  anchor_ = stream.anchor();
  streamName_ = stream.name();
  ++generation_;
}

void CudaEvent::reanchor(const std::shared_ptr<StreamAnchor>& anchor, uint64_t captureId) {
  if (captured_ && captureId_ == captureId && device_ == anchor->device) anchor_ = anchor;
}

void CudaEvent::forgetDiscardedCapture(uint64_t captureId) noexcept {
  if (captured_ && captureId_ == captureId) discarded_ = true;
}

bool CudaEvent::inOpenCapture() const { return captured_ && captureId_ != 0 && captureId_ == openCaptureId(); }

bool CudaEvent::complete() const {
  if (generation_ == 0) return true;
  const cudaError_t e = cudaEventQuery(timeSource());
  if (e == cudaErrorNotReady) return false;
  checkCuda(e, "cudaEventQuery", streamName_);
  return true;
}

int64_t CudaEvent::timestampNs() const {
  int64_t ns = -1;
  if (generation_ == 0 || !complete() || !hostNsOf(*anchor_, timeSource(), &ns)) return -1;
  return ns;
}

void CudaEvent::synchronize() const {
  if (device_ >= 0) useDevice(device_);  // also on libuv's workers
  if (generation_ > 0) checkCuda(cudaEventSynchronize(timeSource()), "cudaEventSynchronize", streamName_);
  if (device_ >= 0) throwFailedDeviceChecks(device_, "event of stream", streamName_);
}

std::vector<WaitRecord> drainWaits() {
  std::vector<PendingWait> waits;
  {
    std::lock_guard<std::mutex> lock(timelineMutex);
    waits.swap(pendingWaits());
  }
  std::vector<WaitRecord> out;
  std::string firstError;
  for (PendingWait& w : waits) {
    WaitRecord r;
    r.streamId = w.streamId;
    r.streamName = w.streamName;
    r.sourceStream = w.sourceStream;
    cudaError_t e = cudaEventSynchronize(w.end);
    if (e == cudaSuccess && hostNsOf(*w.anchor, w.start, &r.startNs) && hostNsOf(*w.anchor, w.end, &r.endNs)) {
      // The awaited event: known while it has not been recorded again (as the CPU backend).
      std::shared_ptr<CudaEvent> awaited = w.awaited.lock();
      if (awaited && awaited->generation() == w.generation) r.firedNs = awaited->timestampNs();
      out.push_back(r);
    } else if (firstError.empty()) {
      firstError = cudaGetErrorName(e == cudaSuccess ? cudaGetLastError() : e);
    }
    destroyUnlessGraphs(w.start, w.end, w.graph);
  }
  if (!firstError.empty()) {
    cudaGetLastError();
    throw CudaError("ERR_CUDA", "waits: a wait's events could not be read: " + firstError, firstError, "");
  }
  return out;
}

std::vector<KernelRecord> drainTimeline() {
  std::vector<PendingRecord> records;
  {
    std::lock_guard<std::mutex> lock(timelineMutex);
    records.swap(pending());
  }
  std::vector<KernelRecord> out;
  out.reserve(records.size());
  std::string firstError;
  for (PendingRecord& r : records) {
    float startMs = 0, durationMs = 0;
    cudaError_t e = cudaEventSynchronize(r.end);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&startMs, r.anchor->event, r.start);
    // The duration from its own two events: float ms stay precise for short spans.
    if (e == cudaSuccess) e = cudaEventElapsedTime(&durationMs, r.start, r.end);
    destroyUnlessGraphs(r.start, r.end, r.graph);
    if (e != cudaSuccess) {
      if (firstError.empty()) firstError = cudaGetErrorName(e);
      continue;
    }
    KernelRecord k;
    k.info = r.info;
    k.streamId = r.streamId;
    k.streamName = r.streamName;
    k.startNs = r.anchor->hostNs + int64_t(double(startMs) * 1e6);
    k.endNs = k.startNs + int64_t(double(durationMs) * 1e6);
    out.push_back(std::move(k));
  }
  if (!firstError.empty()) {
    cudaGetLastError();
    throw CudaError("ERR_CUDA", "timeline: a kernel's events could not be read: " + firstError, firstError, "");
  }
  return out;
}

void clearTimeline() {
  std::lock_guard<std::mutex> lock(timelineMutex);
  for (PendingRecord& r : pending()) destroyUnlessGraphs(r.start, r.end, r.graph);
  pending().clear();
  for (PendingWait& w : pendingWaits()) destroyUnlessGraphs(w.start, w.end, w.graph);
  pendingWaits().clear();
}

}  // namespace stepscope
