#include "cuda/comm_nccl.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "cuda/cuda_error.h"
#include "cuda/cuda_stream.h"
#include "cuda/device.h"

#ifdef STEPSCOPE_HAVE_NCCL
#include <nccl.h>
#endif

namespace stepscope {

#ifdef STEPSCOPE_HAVE_NCCL

namespace {

using Clock = std::chrono::steady_clock;

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

// A collective enqueued and not yet seen complete: the watchdog aborts the
// communicator when one is still running timeoutMs after its enqueue.
struct InFlight {
  cudaEvent_t done;
  Clock::time_point enqueued;
  std::string layer;
};

}  // namespace

struct NcclState {
  ncclComm_t comm = nullptr;
  std::map<float, ncclRedOp_t> scaled;  // pre-multiplied sums, one per scale
  std::mutex mutex;                     // the comm: enqueue, poll and abort never overlap
  std::vector<InFlight> inFlight;
  std::string failure;  // why the communicator was aborted; every later call throws it
  bool connected = false;
  std::atomic<int> liveGraphs{0};  // CUDA graphs holding a captured all-reduce of this communicator
  std::atomic<bool> stop{false};
  std::thread watchdog;
  int device = 0;
};

namespace {

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
void abortLocked(NcclState& s, const std::string& why) {
  if (s.comm) {
    if (s.liveGraphs.load() > 0) std::thread([comm = s.comm] { ncclCommAbort(comm); }).detach();
    else ncclCommAbort(s.comm);
  }
  s.comm = nullptr;
  if (s.failure.empty()) s.failure = why;
}

// A CUDA graph's hold on the communicator whose all-reduce it captured; after
// each launch of the graph it gives the watchdog an event to time, as an
// eager all-reduce does.
struct GraphHold : LaunchHook {
  std::shared_ptr<NcclCommunicator> comm;
  NcclState* state;
  std::string layer;
  GraphHold(std::shared_ptr<NcclCommunicator> c, NcclState* s, std::string l) : comm(std::move(c)), state(s), layer(std::move(l)) {}
  ~GraphHold() override { --state->liveGraphs; }
  void afterLaunch(cudaStream_t stream) override {
    cudaEvent_t done = nullptr;
    if (cudaEventCreateWithFlags(&done, cudaEventDisableTiming) != cudaSuccess) return;  // unwatched, not fatal
    if (cudaEventRecord(done, stream) != cudaSuccess) {
      cudaEventDestroy(done);
      return;
    }
    std::lock_guard<std::mutex> lock(state->mutex);
    state->inFlight.push_back({done, Clock::now(), layer + " (in a graph)"});
  }
};

// Polls a non-blocking communicator until its pending call is done; aborts
// and throws on an error or at the deadline. state.mutex held.
void awaitLocked(NcclState& s, const NcclOptions& o, const std::string& what, const std::string& layer) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(o.timeoutMs);
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(s.comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      const std::string message = std::string(ncclResultName(state)) + " (" + ncclGetErrorString(state) + ")";
      const char* detail = ncclGetLastError(s.comm);
      abortLocked(s, what + " failed: " + message + (detail && *detail ? std::string(": ") + detail : ""));
      throw CudaError("ERR_COMM", rankText(o) + ": " + s.failure, ncclResultName(state), layer);
    }
    if (Clock::now() > deadline) {
      abortLocked(s, what + " did not complete within " + std::to_string(o.timeoutMs) + " ms (a peer died, never started, or runs another collective)");
      throw CudaError("ERR_COMM", rankText(o) + ": " + s.failure, "ncclTimeout", layer);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
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

// The watchdog (as PyTorch's): every 50 ms, an asynchronous NCCL error (a
// peer's socket closed) or a collective running past the timeout aborts the
// communicator, so its kernels return and no stream waits forever.
void watch(NcclState* s, NcclOptions o) {
  cudaSetDevice(s->device);
  while (!s->stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard<std::mutex> lock(s->mutex);
    if (!s->comm) continue;
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(s->comm, &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress) {
      abortLocked(*s, std::string("asynchronous error: ") + ncclResultName(state) + " (" + ncclGetErrorString(state) + ")");
      continue;
    }
    const auto now = Clock::now();
    for (auto it = s->inFlight.begin(); it != s->inFlight.end();) {
      if (cudaEventQuery(it->done) != cudaErrorNotReady) {
        cudaEventDestroy(it->done);
        it = s->inFlight.erase(it);
      } else if (now - it->enqueued > std::chrono::milliseconds(o.timeoutMs)) {
        abortLocked(*s, "the all-reduce of " + it->layer + " did not complete within " + std::to_string(o.timeoutMs) + " ms (a peer died or stopped)");
        break;
      } else {
        ++it;
      }
    }
  }
}

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

// An event after the collective on `stream`, for the watchdog to time; state.mutex held.
void watchLocked(NcclState& s, cudaStream_t stream, const std::string& layer) {
  cudaEvent_t done = nullptr;
  checkCuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate", layer);
  const cudaError_t e = cudaEventRecord(done, stream);
  if (e != cudaSuccess) {
    cudaEventDestroy(done);
    checkCuda(e, "cudaEventRecord", layer);
  }
  s.inFlight.push_back({done, Clock::now(), layer});
}

}  // namespace

bool ncclBuiltIn() { return true; }

int NcclCommunicator::device() const { return state_->device; }

std::vector<NcclPtr> NcclCommunicator::local(const std::vector<int>& devices, int timeoutMs) {
  if (devices.empty()) throw Error("ERR_INVALID_ARG", "nccl local: devices must not be empty");
  if (timeoutMs < 1) throw Error("ERR_INVALID_ARG", "nccl local: timeoutMs " + std::to_string(timeoutMs) + " must be >= 1");
  for (int d : devices) {
    if (d < 0) throw Error("ERR_INVALID_ARG", "nccl local: device " + std::to_string(d) + " must be a GPU index (>= 0)");
  }
  requireDevice("NcclCommunicator.local");
  for (size_t i = 0; i < devices.size(); ++i) {
    deviceOrDefault(devices[i], "NcclCommunicator.local");  // in range
    for (size_t j = 0; j < i; ++j) {
      if (devices[j] == devices[i]) throw Error("ERR_INVALID_ARG", "nccl local: GPU " + std::to_string(devices[i]) + " is given twice (one rank per GPU)");
    }
  }
  const std::string uniqueId = newNcclUniqueId();
  ::ncclUniqueId id;
  std::copy(uniqueId.begin(), uniqueId.end(), id.internal);
  std::vector<NcclPtr> comms;
  for (size_t i = 0; i < devices.size(); ++i) {
    NcclOptions o;
    o.uniqueId = uniqueId;
    o.rank = int(i);
    o.size = int(devices.size());
    o.timeoutMs = timeoutMs;
    o.device = devices[i];
    comms.push_back(NcclPtr(new NcclCommunicator(o, Deferred{})));  // private constructor: no make_shared
    comms.back()->state_->device = devices[i];
  }
  // One thread joins several ranks: their inits must be one group.
  ncclResult_t r = ncclGroupStart();
  for (size_t i = 0; i < comms.size() && r == ncclSuccess; ++i) {
    useDevice(devices[i]);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    r = ncclCommInitRankConfig(&comms[i]->state_->comm, int(devices.size()), id, int(i), &config);
  }
  const ncclResult_t end = ncclGroupEnd();
  if (r == ncclSuccess || r == ncclInProgress) r = end;
  if (r != ncclSuccess && r != ncclInProgress) {
    for (NcclPtr& c : comms) {
      if (c->state_->comm) ncclCommAbort(c->state_->comm);
      c->state_->comm = nullptr;
    }
    throwNccl(comms[0]->options_, r, nullptr, "ncclCommInitRankConfig (local group)", "");
  }
  return comms;
}

void NcclCommunicator::allreduceGroup(const std::vector<NcclGroupCall>& calls, float scale, const std::string& layer) {
  if (calls.empty()) throw Error("ERR_INVALID_ARG", "nccl allreduceGroup: no calls");
  const int size = calls[0].comm->options_.size;
  std::vector<bool> seen(static_cast<size_t>(size), false);
  for (const NcclGroupCall& c : calls) {
    const NcclOptions& o = c.comm->options_;
    if (o.size != size || o.uniqueId != calls[0].comm->options_.uniqueId) {
      throw Error("ERR_INVALID_ARG", "nccl allreduceGroup (" + layer + "): the communicators are not of one local clique (NcclCommunicator.local())");
    }
    if (seen[size_t(o.rank)]) throw Error("ERR_INVALID_ARG", "nccl allreduceGroup (" + layer + "): rank " + std::to_string(o.rank) + " is given twice");
    seen[size_t(o.rank)] = true;
    if (c.stream->device() != c.comm->state_->device) {
      throw Error("ERR_INVALID_ARG", rankText(o) + " (" + layer + "): stream '" + c.stream->name() + "' is on GPU " + std::to_string(c.stream->device()) +
                                         ", the communicator on GPU " + std::to_string(c.comm->state_->device));
    }
    if (c.buffers.size() != calls[0].buffers.size()) {
      throw Error("ERR_INVALID_ARG", "nccl allreduceGroup (" + layer + "): rank " + std::to_string(o.rank) + " gives " + std::to_string(c.buffers.size()) +
                                         " buffers, rank " + std::to_string(calls[0].comm->options_.rank) + " " + std::to_string(calls[0].buffers.size()));
    }
    for (size_t b = 0; b < c.buffers.size(); ++b) {
      if (c.buffers[b].second != calls[0].buffers[b].second) {
        throw Error("ERR_INVALID_ARG", "nccl allreduceGroup (" + layer + "): buffer " + std::to_string(b) + " holds " + std::to_string(c.buffers[b].second) +
                                           " values on rank " + std::to_string(o.rank) + ", " + std::to_string(calls[0].buffers[b].second) + " on rank " +
                                           std::to_string(calls[0].comm->options_.rank));
      }
    }
  }
  if (int(calls.size()) != size) {
    throw Error("ERR_INVALID_ARG", "nccl allreduceGroup (" + layer + "): " + std::to_string(calls.size()) + " of " + std::to_string(size) +
                                       " ranks given; every local rank must take part (the others would wait forever)");
  }
  // Rank order: the watchdogs lock one state at a time, so no lock-order cycle.
  std::vector<const NcclGroupCall*> ordered(static_cast<size_t>(size), nullptr);
  for (const NcclGroupCall& c : calls) ordered[size_t(c.comm->options_.rank)] = &c;
  std::vector<std::unique_lock<std::mutex>> locks;
  std::vector<ncclRedOp_t> ops;
  for (const NcclGroupCall* c : ordered) {
    NcclState& s = *c->comm->state_;
    locks.emplace_back(s.mutex);
    requireUsableLocked(s, c->comm->options_, layer);
    ops.push_back(scaledSumLocked(s, c->comm->options_, scale, layer));
  }
  std::vector<std::pair<CudaStream*, KernelInfo>> streams;
  for (const NcclGroupCall* c : ordered) streams.emplace_back(c->stream, allreduceInfo(c->buffers, layer));
  timedTogether(streams, [&] {
    ncclResult_t r = ncclGroupStart();
    for (size_t i = 0; i < ordered.size() && r == ncclSuccess; ++i) {
      const NcclGroupCall& c = *ordered[i];
      useDevice(c.stream->device());
      for (const auto& b : c.buffers) {
        if (r != ncclSuccess) break;
        r = ncclAllReduce(b.first, b.first, b.second, ncclFloat32, ops[i], c.comm->state_->comm, c.stream->get());
      }
    }
    const ncclResult_t end = ncclGroupEnd();
    if (r == ncclSuccess) r = end;
    if (r == ncclInProgress) {
      for (const NcclGroupCall* c : ordered) awaitLocked(*c->comm->state_, c->comm->options_, "all-reduce", layer);
      r = ncclSuccess;
    }
    if (r != ncclSuccess) {
      // One group failed: every rank of it is unusable.
      for (size_t i = 1; i < ordered.size(); ++i) abortLocked(*ordered[i]->comm->state_, std::string("a grouped all-reduce failed: ") + ncclResultName(r));
      failLocked(*ordered[0]->comm->state_, ordered[0]->comm->options_, r, "ncclAllReduce (local group)", layer);
    }
  });
  for (const NcclGroupCall* c : ordered) {
    useDevice(c->stream->device());
    watchLocked(*c->comm->state_, c->stream->get(), layer);
  }
}

std::string newNcclUniqueId() {
  ::ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) throwNccl(NcclOptions{}, r, nullptr, "ncclGetUniqueId", "");
  return std::string(id.internal, sizeof(id.internal));
}

NcclCommunicator::NcclCommunicator(NcclOptions options, Deferred) : options_(std::move(options)), state_(std::make_unique<NcclState>()) {}

NcclCommunicator::NcclCommunicator(NcclOptions options) : options_(std::move(options)), state_(std::make_unique<NcclState>()) {
  const NcclOptions& o = options_;
  if (o.uniqueId.size() != NCCL_UNIQUE_ID_BYTES) {
    throw Error("ERR_INVALID_ARG", "nccl: the unique id has " + std::to_string(o.uniqueId.size()) + " bytes; allowed: " + std::to_string(NCCL_UNIQUE_ID_BYTES) + " (NcclCommunicator.uniqueId() of rank 0)");
  }
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) throw Error("ERR_INVALID_ARG", "nccl: rank " + std::to_string(o.rank) + " is not in 0.." + std::to_string(o.size - 1));
  if (o.timeoutMs < 1) throw Error("ERR_INVALID_ARG", "nccl: timeoutMs " + std::to_string(o.timeoutMs) + " must be >= 1");
  requireDevice("NcclCommunicator");
  state_->device = deviceOrDefault(o.device, "NcclCommunicator");
  useDevice(state_->device);
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
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.connected) return;
  if (!s.comm) throw CudaError("ERR_COMM", rankText(options_) + ": the communicator is unusable: " + s.failure, "ncclInvalidUsage", "");
  awaitLocked(s, options_, "joining the other ranks", "");
  s.connected = true;
  s.watchdog = std::thread(watch, state_.get(), options_);
}

void NcclCommunicator::allreduce(CudaStream& stream, const std::vector<std::pair<float*, size_t>>& buffers, float scale, const std::string& layer) {
  NcclState& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  requireUsableLocked(s, options_, layer);
  if (stream.device() != s.device) {
    throw Error("ERR_INVALID_ARG", rankText(options_) + " (" + layer + "): stream '" + stream.name() + "' is on GPU " + std::to_string(stream.device()) +
                                       ", the communicator on GPU " + std::to_string(s.device));
  }
  const ncclRedOp_t op = scaledSumLocked(s, options_, scale, layer);
  const KernelInfo info = allreduceInfo(buffers, layer);
  // In a graph capture the watchdog cannot time a launch: only eager calls are tracked.
  const bool captured = stream.capturing();
  stream.timed(info, [&] {
    // One group: NCCL fuses the bucket's tensors into one launch.
    ncclResult_t r = ncclGroupStart();
    for (const auto& b : buffers) {
      if (r != ncclSuccess) break;
      r = ncclAllReduce(b.first, b.first, b.second, ncclFloat32, op, s.comm, stream.get());
    }
    const ncclResult_t end = ncclGroupEnd();
    if (r == ncclSuccess) r = end;
    if (r == ncclInProgress) awaitLocked(s, options_, "all-reduce", layer), r = ncclSuccess;
    if (r != ncclSuccess) failLocked(s, options_, r, "ncclAllReduce", layer);
  });
  if (captured) {
    ++s.liveGraphs;
    hookForCapture(std::make_shared<GraphHold>(shared_from_this(), &s, layer));
  } else {
    watchLocked(s, stream.get(), layer);
  }
}

void NcclCommunicator::destroy() {
  NcclState& s = *state_;
  if (s.liveGraphs.load() > 0) {
    throw Error("ERR_INVALID_STATE", rankText(options_) + ": " + std::to_string(s.liveGraphs.load()) +
                                         " CUDA graph(s) that captured this communicator's all-reduce still exist: release them first (graph.release())");
  }
  s.stop = true;
  if (s.watchdog.joinable()) s.watchdog.join();
  std::lock_guard<std::mutex> lock(s.mutex);
  for (InFlight& f : s.inFlight) cudaEventDestroy(f.done);
  s.inFlight.clear();
  if (!s.comm) return;
  if (!s.connected) {  // finalize needs a ready communicator: a join still under way is aborted
    abortLocked(s, "destroyed before it connected");
    return;
  }
  for (auto& [scale, op] : s.scaled) ncclRedOpDestroy(op, s.comm);
  s.scaled.clear();
  // Finalize waits for the issued collectives (polled: a dead peer aborts).
  const ncclResult_t r = ncclCommFinalize(s.comm);
  if (r != ncclSuccess && r != ncclInProgress) {
    abortLocked(s, std::string("ncclCommFinalize failed: ") + ncclResultName(r));
    return;
  }
  try {
    awaitLocked(s, options_, "ncclCommFinalize", "");
  } catch (const Error&) {
    return;  // aborted: nothing left to release
  }
  ncclCommDestroy(s.comm);
  s.comm = nullptr;
  if (s.failure.empty()) s.failure = "destroyed";
}

NcclCommunicator::~NcclCommunicator() {
  NcclState& s = *state_;
  s.stop = true;
  if (s.watchdog.joinable()) s.watchdog.join();
  for (InFlight& f : s.inFlight) cudaEventDestroy(f.done);
  if (s.comm) ncclCommAbort(s.comm);  // never blocks: a destructor must not wait for peers
}

#else  // built without NCCL

struct NcclState {};

bool ncclBuiltIn() { return false; }

[[noreturn]] static void unavailable() {
  throw Error("ERR_UNAVAILABLE", std::string("the nccl communicator is unavailable: the CUDA addon was built without NCCL (") + STEPSCOPE_NCCL_BUILD_STATUS + ")");
}

std::string newNcclUniqueId() { unavailable(); }
NcclCommunicator::NcclCommunicator(NcclOptions options) : options_(std::move(options)) { unavailable(); }
NcclCommunicator::NcclCommunicator(NcclOptions options, Deferred) : options_(std::move(options)) { unavailable(); }
std::vector<NcclPtr> NcclCommunicator::local(const std::vector<int>&, int) { unavailable(); }
int NcclCommunicator::device() const { return options_.device; }
void NcclCommunicator::allreduceGroup(const std::vector<NcclGroupCall>&, float, const std::string&) { unavailable(); }
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::allreduce(CudaStream&, const std::vector<std::pair<float*, size_t>>&, float, const std::string&) { unavailable(); }
void NcclCommunicator::connect() { unavailable(); }
void NcclCommunicator::destroy() {}

#endif

}  // namespace stepscope
