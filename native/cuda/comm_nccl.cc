#include "cuda/comm_nccl.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "core/error.h"
#include "cuda/cuda_error.h"
#include "cuda/cuda_stream.h"
#include "cuda/device.h"

#ifdef STEPSCOPE_HAVE_NCCL
#include "cuda/comm_nccl_state.h"
#endif

namespace stepscope {

#ifdef STEPSCOPE_HAVE_NCCL

const char* ncclResultName(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "ncclSuccess";
    case ncclUnhandledCudaError: return "ncclUnhandledCudaError";
    case ncclSystemError: return "ncclSystemError";
    case ncclInternalError: return "ncclInternalError";
    case ncclInvalidArgument: return "ncclInvalidArgument";
    case ncclInvalidUsage: return "ncclInvalidUsage";
    case ncclRemoteError: return "ncclRemoteError";
    case ncclInProgress: return "ncclInProgress";
    default: return "ncclUnknownError";
  }
}

std::string rankText(const NcclOptions& o) { return "nccl rank " + std::to_string(o.rank) + " of " + std::to_string(o.size); }

[[noreturn]] void throwNccl(const NcclOptions& o, ncclResult_t r, ncclComm_t comm, const std::string& what, const std::string& layer) {
  const char* detail = ncclGetLastError(comm);  // read before any abort frees it
  throw CudaError("ERR_COMM",
                  rankText(o) + ": " + what + (layer.empty() ? "" : " (" + layer + ")") + " failed: " + ncclResultName(r) + " (" +
                      ncclGetErrorString(r) + ")" + (detail && *detail ? std::string(": ") + detail : ""),
                  ncclResultName(r), layer);
}

// Aborts the communicator (local, never blocks on peers); state.mutex held.
// While a CUDA graph holds one of its all-reduces, NCCL's abort waits for that
// graph to die: it then runs on a detached thread so that nothing here blocks.
static void abortLocked(NcclState& s, const std::string& why) {
  if (s.comm) {
    if (s.liveGraphs.load() > 0) std::thread([comm = s.comm] { ncclCommAbort(comm); }).detach();
    else ncclCommAbort(s.comm);
  }
  s.comm = nullptr;
  if (s.failure.empty()) s.failure = why;
}

void abortCliqueLocked(const std::vector<NcclState*>& members, const std::string& why) {
  // Room for everything first: nothing below may fail halfway (a rank left
  // unaborted keeps the clique's resources, a joinable thread dropped aborts the process).
  std::vector<ncclComm_t> comms;
  std::vector<std::thread> threads;
  try {
    comms.reserve(members.size());
    threads.reserve(members.size());
  } catch (...) {
    for (NcclState* s : members) {  // no memory for threads: abort inline, one by one
      if (s->comm) ncclCommAbort(s->comm);
      s->comm = nullptr;
    }
    return;
  }
  for (NcclState* s : members) {
    if (s->comm) comms.push_back(s->comm);
    s->comm = nullptr;
    try {
      if (s->failure.empty()) s->failure = why;
    } catch (...) {
      // the reason is lost, the abort is not
    }
  }
  // Each rank's abort on its own thread, at once: whether NCCL's abort waits
  // for the other local ranks or not, none waits for a call not yet made.
  for (ncclComm_t c : comms) {
    try {
      threads.emplace_back([c] { ncclCommAbort(c); });  // capacity reserved: only the thread's start can fail
    } catch (...) {
      ncclCommAbort(c);  // no thread to be had: inline
    }
  }
  for (std::thread& t : threads) t.join();
}

void abortClique(const NcclClique& clique, const std::string& why) {
  std::vector<std::shared_ptr<NcclState>> alive;
  for (const auto& weak : clique.members) {
    if (auto s = weak.lock()) alive.push_back(std::move(s));
  }
  std::vector<std::unique_lock<std::mutex>> locks;
  std::vector<NcclState*> members;
  for (auto& s : alive) {
    locks.emplace_back(s->mutex);
    members.push_back(s.get());
  }
  abortCliqueLocked(members, why);
}

namespace {

// A CUDA graph's hold on the communicator whose all-reduce it captured; after
// each launch of the graph it gives the watchdog an event to time, as an
// eager all-reduce does.
// Before a launch, a graph whose communicator was aborted is refused (its
// all-reduce would return without reducing).
// The graph is counted (liveGraphs) from the hold's making to its end.
struct GraphHold : LaunchHook {
  std::shared_ptr<NcclCommunicator> comm;
  NcclState* state;
  std::string layer;
  cudaEvent_t started = nullptr;  // recorded before the launch, for the record made after it
  GraphHold(std::shared_ptr<NcclCommunicator> c, NcclState* s, std::string l) : comm(std::move(c)), state(s), layer(std::move(l)) {
    ++state->liveGraphs;
  }
  ~GraphHold() override {
    if (started) cudaEventDestroy(started);
    --state->liveGraphs;
  }
  void beforeLaunch(cudaStream_t stream) override {
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      throwIfAbortedLocked(*state, comm->options(), "a replay of a graph that captured its all-reduce (" + layer + ")");
    }
    if (started) cudaEventDestroy(started), started = nullptr;  // the last launch failed after it was recorded
    try {
      started = recordWatchEvent(stream, layer);
    } catch (...) {
      // unwatched, not fatal
    }
  }
  void afterLaunch(cudaStream_t stream) override {
    if (!started) return;
    std::lock_guard<std::mutex> lock(state->mutex);
    try {
      watchLocked(*state, stream, std::exchange(started, nullptr), layer + " (in a graph)");
    } catch (...) {
      // unwatched, not fatal (watchLocked released the start event)
    }
  }
};

}  // namespace

std::string pollLocked(NcclState& s, NcclClock::time_point deadline, int timeoutMs, const std::string& what, std::string* status) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(s.comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return "";
    if (state != ncclInProgress) {
      *status = ncclResultName(state);
      const char* detail = ncclGetLastError(s.comm);
      return what + " failed: " + ncclResultName(state) + " (" + ncclGetErrorString(state) + ")" + (detail && *detail ? std::string(": ") + detail : "");
    }
    if (NcclClock::now() > deadline) {
      *status = "ncclTimeout";
      return what + " did not complete within " + std::to_string(timeoutMs) + " ms (a peer died, never started, or runs another collective)";
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// pollLocked, then on failure abortLocked and ERR_COMM. state.mutex held.
static void awaitLocked(NcclState& s, const NcclOptions& o, const std::string& what, const std::string& layer) {
  std::string status;
  const std::string why = pollLocked(s, NcclClock::now() + std::chrono::milliseconds(o.timeoutMs), o.timeoutMs, what, &status);
  if (why.empty()) return;
  abortLocked(s, why);
  throw CudaError("ERR_COMM", rankText(o) + ": " + s.failure, status, layer);
}

// A failed call: NCCL's error table asks for an abort after every error but
// a bad argument (the communicator is then unusable); state.mutex held.
[[noreturn]] void failLocked(NcclState& s, const NcclOptions& o, ncclResult_t r, const std::string& what, const std::string& layer) {
  const std::string detail = ncclGetLastError(s.comm) ? ncclGetLastError(s.comm) : "";
  const std::string message = rankText(o) + ": " + what + (layer.empty() ? "" : " (" + layer + ")") + " failed: " + ncclResultName(r) + " (" +
                              ncclGetErrorString(r) + ")" + (detail.empty() ? "" : ": " + detail);
  if (r != ncclInvalidArgument) abortLocked(s, what + " failed: " + ncclResultName(r));
  throw CudaError("ERR_COMM", message, ncclResultName(r), layer);
}

namespace {
// Why the watchdog must abort the communicator now, or "" (healthy). state.mutex held.
std::string watchFailureLocked(NcclState& s, const NcclOptions& o) {
  ncclResult_t state = ncclSuccess;
  if (ncclCommGetAsyncError(s.comm, &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress) {
    return std::string("asynchronous error: ") + ncclResultName(state) + " (" + ncclGetErrorString(state) + ")";
  }
  const auto now = NcclClock::now();
  for (auto it = s.inFlight.begin(); it != s.inFlight.end();) {
    if (cudaEventQuery(it->done) != cudaErrorNotReady) {
      cudaEventDestroy(it->started);
      cudaEventDestroy(it->done);
      it = s.inFlight.erase(it);
      continue;
    }
    if (!it->startedAt) {
      if (cudaEventQuery(it->started) == cudaErrorNotReady) {  // the GPU has not reached it: no clock yet
        ++it;
        continue;
      }
      it->startedAt = now;  // within a tick (50 ms) of the start
    }
    if (now - *it->startedAt > std::chrono::milliseconds(o.timeoutMs)) {
      return "the all-reduce of " + it->layer + " did not complete within " + std::to_string(o.timeoutMs) + " ms of starting (a peer died or stopped)";
    }
    ++it;
  }
  return "";
}
}  // namespace

namespace {
void watchOnce(NcclState* s, const NcclOptions& o);
}  // namespace

// The watchdog (as PyTorch's): every 50 ms, an asynchronous NCCL error (a
// peer's socket closed) or a collective running past the timeout aborts the
// communicator (with every other rank of its clique in this process), so its
// kernels return and no stream waits forever.
static void watch(NcclState* s, NcclOptions o) {
  trySetDevice(s->device);
  while (!s->stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    try {
      watchOnce(s, o);
    } catch (...) {
      // Out of memory building a message: try again at the next tick (a
      // thread's exception would end the process).
    }
  }
}

void stopWatchdog(NcclState& s) {
  std::thread watchdog;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stop = true;  // under the mutex: a connect() after this sees it and starts none
    watchdog = std::move(s.watchdog);
  }
  if (watchdog.joinable()) watchdog.join();
}

namespace {
// One look of the watchdog: a failure aborts the communicator, or its whole clique.
void watchOnce(NcclState* s, const NcclOptions& o) {
  std::string why;
  std::shared_ptr<NcclClique> clique;
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    if (!s->comm) return;
    why = watchFailureLocked(*s, o);
    if (why.empty()) return;
    clique = s->clique;
    if (!clique) {
      abortLocked(*s, why);
      return;
    }
  }
  abortClique(*clique, why);  // takes every member's mutex, this one's too: not held here
}
}  // namespace

// ERR_COMM when the communicator was aborted, destroyed or not connected; state.mutex held.
void requireUsableLocked(const NcclState& s, const NcclOptions& o, const std::string& layer) {
  if (!s.comm) throw CudaError("ERR_COMM", rankText(o) + ": the communicator is unusable: " + (s.failure.empty() ? "destroyed" : s.failure), "ncclInvalidUsage", layer);
  if (!s.connected) throw CudaError("ERR_COMM", rankText(o) + ": all-reduce before connect()", "ncclInvalidUsage", layer);
}

// The sum pre-multiplied by `scale` (made once per scale), or ncclSum for 1; state.mutex held.
ncclRedOp_t scaledSumLocked(NcclState& s, const NcclOptions& o, float scale, const std::string& layer) {
  if (scale == 1.0f) return ncclSum;
  auto found = s.scaled.find(scale);
  if (found == s.scaled.end()) {
    ncclRedOp_t created;
    ncclResult_t r = ncclRedOpCreatePreMulSum(&created, &scale, ncclFloat32, ncclScalarHostImmediate, s.comm);
    if (r == ncclInProgress) awaitLocked(s, o, "ncclRedOpCreatePreMulSum", layer), r = ncclSuccess;
    if (r != ncclSuccess) failLocked(s, o, r, "ncclRedOpCreatePreMulSum", layer);
    found = s.scaled.emplace(scale, created).first;
  }
  return found->second;
}

KernelInfo allreduceInfo(const std::vector<std::pair<float*, size_t>>& buffers, const std::string& layer) {
  KernelInfo info;
  info.op = "allreduce";
  info.pass = "comm";
  info.variant = "nccl";
  info.layer = layer;
  for (const auto& b : buffers) info.bytes += double(b.second) * sizeof(float);
  return info;
}

cudaEvent_t recordWatchEvent(cudaStream_t stream, const std::string& layer) {
  cudaEvent_t event = nullptr;
  checkCuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate", layer);
  const cudaError_t e = cudaEventRecord(event, stream);
  if (e != cudaSuccess) {
    cudaEventDestroy(event);
    checkCuda(e, "cudaEventRecord", layer);
  }
  return event;
}

void releaseInFlight(std::vector<InFlight>& inFlight) {
  for (InFlight& f : inFlight) cudaEventDestroy(f.started), cudaEventDestroy(f.done);
  inFlight.clear();
}

void watchLocked(NcclState& s, cudaStream_t stream, cudaEvent_t started, const std::string& layer) {
  cudaEvent_t done = nullptr;
  try {
    done = recordWatchEvent(stream, layer);
    s.inFlight.push_back({started, done, std::nullopt, layer});
  } catch (...) {
    if (done) cudaEventDestroy(done);
    cudaEventDestroy(started);
    throw;
  }
}

void throwIfAbortedLocked(const NcclState& s, const NcclOptions& o, const std::string& when) {
  if (s.comm || !s.connected || s.failure.empty() || s.failure == "destroyed") return;
  throw CudaError("ERR_COMM", rankText(o) + ": " + when + ": the communicator was aborted during the run (" + s.failure +
                                  "): the all-reduces since then returned without reducing",
                  "ncclInvalidUsage", "");
}

int NcclCommunicator::device() const { return state_->device; }

std::string newNcclUniqueId() {
  ::ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) throwNccl(NcclOptions{}, r, nullptr, "ncclGetUniqueId", "");
  return std::string(id.internal, sizeof(id.internal));
}

NcclCommunicator::NcclCommunicator(NcclOptions options, Deferred) : options_(std::move(options)), state_(std::make_shared<NcclState>()) {}

NcclCommunicator::NcclCommunicator(NcclOptions options) : options_(std::move(options)), state_(std::make_shared<NcclState>()) {
  const NcclOptions& o = options_;
  if (o.uniqueId.size() != NCCL_UNIQUE_ID_BYTES) {
    throw Error("ERR_INVALID_ARG", "nccl: the unique id has " + std::to_string(o.uniqueId.size()) + " bytes; allowed: " + std::to_string(NCCL_UNIQUE_ID_BYTES) + " (NcclCommunicator.uniqueId() of rank 0)");
  }
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) throw Error("ERR_INVALID_ARG", "nccl: rank " + std::to_string(o.rank) + " is not in 0.." + std::to_string(o.size - 1));
  if (o.timeoutMs < 1) throw Error("ERR_INVALID_ARG", "nccl: timeoutMs " + std::to_string(o.timeoutMs) + " must be >= 1");
  state_->device = bindDevice(o.device, "NcclCommunicator");
  ::ncclUniqueId id;
  std::copy(o.uniqueId.begin(), o.uniqueId.end(), id.internal);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  std::lock_guard<std::mutex> lock(state_->mutex);
  const ncclResult_t r = ncclCommInitRankConfig(&state_->comm, o.size, id, o.rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    if (state_->comm) ncclCommAbort(state_->comm);
    state_->comm = nullptr;
    throwNccl(o, r, nullptr, "ncclCommInitRankConfig", "");
  }
}

void NcclCommunicator::connect() {
  NcclState& s = *state_;
  std::string why, status;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.connected) return;
    if (s.stop) throw CudaError("ERR_COMM", rankText(options_) + ": the communicator is unusable: destroyed", "ncclInvalidUsage", "");
    if (!s.comm) throw CudaError("ERR_COMM", rankText(options_) + ": the communicator is unusable: " + s.failure, "ncclInvalidUsage", "");
    if (!s.clique) {
      awaitLocked(s, options_, "joining the other ranks", "");
    } else {
      why = pollLocked(s, NcclClock::now() + std::chrono::milliseconds(options_.timeoutMs), options_.timeoutMs, "joining the other ranks", &status);
    }
    if (why.empty()) {
      s.watchdog = std::thread(watch, state_.get(), options_);  // first: connected means watched
      s.connected = true;
      return;
    }
  }
  // A rank of a local clique: all of them are aborted together (lock order: the clique's).
  abortClique(*s.clique, why);
  throw CudaError("ERR_COMM", rankText(options_) + ": " + why, status, "");
}

void NcclCommunicator::allreduce(CudaStream& stream, const std::vector<std::pair<float*, size_t>>& buffers, float scale, const std::string& layer) {
  NcclState& s = *state_;
  if (s.clique) {
    throw Error("ERR_INVALID_STATE", rankText(options_) + " (" + layer + "): a communicator of NcclCommunicator.local() reduces with all of its clique at once (NcclCommunicator.allreduceGroup); alone it would wait for the others forever");
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  requireUsableLocked(s, options_, layer);
  if (stream.device() != s.device) {
    throw Error("ERR_INVALID_ARG", rankText(options_) + " (" + layer + "): stream '" + stream.name() + "' is on GPU " + std::to_string(stream.device()) +
                                       ", the communicator on GPU " + std::to_string(s.device));
  }
  const ncclRedOp_t op = scaledSumLocked(s, options_, scale, layer);
  const KernelInfo info = allreduceInfo(buffers, layer);
  // In a graph capture the graph's launches are watched (GraphHold); eager calls from here.
  const bool captured = stream.capturing();
  // Hooked (and counted) before the launch: NCCL's launch takes the
  // capture's reference on the communicator before ncclGroupEnd returns, so
  // an abort from a failure in the body must already take the detached path
  // (abortLocked); and a failed all-reduce left in the graph keeps refusing
  // its replays (dropped with a discarded capture).
  if (captured) hookForCapture(std::make_shared<GraphHold>(shared_from_this(), &s, layer));
  useDevice(s.device);  // the event is made on the communicator's GPU (timed() sets it only later)
  cudaEvent_t started = captured ? nullptr : recordWatchEvent(stream.get(), layer);
  try {
    stream.timed(info, [&] {
      // One group: NCCL fuses the bucket's tensors into one launch.
      ncclResult_t r = ncclGroupStart();
      for (const auto& b : buffers) {
        if (r != ncclSuccess && r != ncclInProgress) break;  // in progress (a non-blocking communicator): go on
        r = ncclAllReduce(b.first, b.first, b.second, ncclFloat32, op, s.comm, stream.get());
      }
      const ncclResult_t end = ncclGroupEnd();
      if (r == ncclSuccess || r == ncclInProgress) r = end;
      if (r == ncclInProgress) awaitLocked(s, options_, "all-reduce", layer), r = ncclSuccess;
      if (r != ncclSuccess) failLocked(s, options_, r, "ncclAllReduce", layer);
    });
  } catch (...) {
    if (started) cudaEventDestroy(started);
    throw;
  }
  if (!captured) watchLocked(s, stream.get(), started, layer);
}

void NcclCommunicator::destroy() {
  NcclState& s = *state_;
  if (s.clique) {
    throw Error("ERR_INVALID_STATE", rankText(options_) + ": a communicator of NcclCommunicator.local() is released with all of its clique (NcclCommunicator.destroyGroup)");
  }
  if (s.liveGraphs.load() > 0) {
    throw Error("ERR_INVALID_STATE", rankText(options_) + ": " + std::to_string(s.liveGraphs.load()) +
                                         " CUDA graph(s) that captured this communicator's all-reduce still exist: release them first (graph.release())");
  }
  stopWatchdog(s);
  std::lock_guard<std::mutex> lock(s.mutex);
  releaseInFlight(s.inFlight);
  if (!s.comm) {
    throwIfAbortedLocked(s, options_, "destroy");  // the run must not end as if its gradients were reduced
    return;
  }
  if (!s.connected) {  // finalize needs a ready communicator: a join still under way is aborted
    abortLocked(s, "destroyed before it connected");
    return;
  }
  for (auto& [scale, op] : s.scaled) ncclRedOpDestroy(op, s.comm);
  s.scaled.clear();
  // Finalize waits for the issued collectives (polled: a dead peer aborts).
  // A failure there means issued collectives did not complete: ERR_COMM, after the abort.
  const ncclResult_t r = ncclCommFinalize(s.comm);
  if (r != ncclSuccess && r != ncclInProgress) {
    abortLocked(s, std::string("ncclCommFinalize failed: ") + ncclResultName(r));
    throwIfAbortedLocked(s, options_, "destroy");
  }
  awaitLocked(s, options_, "ncclCommFinalize", "");  // aborts and throws ERR_COMM on failure
  ncclCommDestroy(s.comm);
  s.comm = nullptr;
  if (s.failure.empty()) s.failure = "destroyed";
}

NcclCommunicator::~NcclCommunicator() {
  NcclState& s = *state_;
  stopWatchdog(s);
  bool live = false;
  {
    std::lock_guard<std::mutex> lock(s.mutex);  // another rank's watchdog may abort this one meanwhile
    releaseInFlight(s.inFlight);
    live = s.comm != nullptr;
    if (live && !s.clique) {
      ncclCommAbort(s.comm);  // never waits for peers
      s.comm = nullptr;
      live = false;
    }
  }
  if (!live) return;
  // A clique's ranks are aborted together (one alone could wait for the others).
  try {
    abortClique(*s.clique, "destroyed without destroyGroup");
  } catch (...) {
    // a destructor never throws; abortClique only allocates
  }
}

#else  // built without NCCL

struct NcclState {};

[[noreturn]] static void unavailable() {
  throw Error("ERR_UNAVAILABLE", std::string("the nccl communicator is unavailable: the CUDA addon was built without NCCL (") + STEPSCOPE_NCCL_BUILD_STATUS + ")");
}

std::string newNcclUniqueId() { unavailable(); }
NcclCommunicator::NcclCommunicator(NcclOptions options) : options_(std::move(options)) { unavailable(); }
NcclCommunicator::NcclCommunicator(NcclOptions options, Deferred) : options_(std::move(options)) { unavailable(); }
std::vector<NcclPtr> NcclCommunicator::local(const std::vector<int>&, int) { unavailable(); }
void NcclCommunicator::destroyGroup(const std::vector<NcclPtr>&) { unavailable(); }
int NcclCommunicator::device() const { return options_.device; }
void NcclCommunicator::allreduceGroup(const std::vector<NcclGroupCall>&, float, const std::string&) { unavailable(); }
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::allreduce(CudaStream&, const std::vector<std::pair<float*, size_t>>&, float, const std::string&) { unavailable(); }
void NcclCommunicator::connect() { unavailable(); }
void NcclCommunicator::destroy() {}

#endif

}  // namespace stepscope
