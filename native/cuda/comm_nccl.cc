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

}  // namespace

bool ncclBuiltIn() { return true; }

std::string newNcclUniqueId() {
  ::ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) throwNccl(NcclOptions{}, r, nullptr, "ncclGetUniqueId", "");
  return std::string(id.internal, sizeof(id.internal));
}

NcclCommunicator::NcclCommunicator(NcclOptions options) : options_(std::move(options)), state_(std::make_unique<NcclState>()) {
  const NcclOptions& o = options_;
  if (o.uniqueId.size() != NCCL_UNIQUE_ID_BYTES) {
    throw Error("ERR_INVALID_ARG", "nccl: the unique id has " + std::to_string(o.uniqueId.size()) + " bytes; allowed: " + std::to_string(NCCL_UNIQUE_ID_BYTES) + " (NcclCommunicator.uniqueId() of rank 0)");
  }
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) throw Error("ERR_INVALID_ARG", "nccl: rank " + std::to_string(o.rank) + " is not in 0.." + std::to_string(o.size - 1));
  if (o.timeoutMs < 1) throw Error("ERR_INVALID_ARG", "nccl: timeoutMs " + std::to_string(o.timeoutMs) + " must be >= 1");
  requireDevice("NcclCommunicator");
  state_->device = selectedDevice();
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
  if (!s.comm) throw CudaError("ERR_COMM", rankText(options_) + ": the communicator is unusable: " + (s.failure.empty() ? "destroyed" : s.failure), "ncclInvalidUsage", layer);
  if (!s.connected) throw CudaError("ERR_COMM", rankText(options_) + ": all-reduce before connect()", "ncclInvalidUsage", layer);
  ncclRedOp_t op = ncclSum;
  if (scale != 1.0f) {
    auto found = s.scaled.find(scale);
    if (found == s.scaled.end()) {
      ncclRedOp_t created;
      ncclResult_t r = ncclRedOpCreatePreMulSum(&created, &scale, ncclFloat32, ncclScalarHostImmediate, s.comm);
      if (r == ncclInProgress) awaitLocked(s, options_, "ncclRedOpCreatePreMulSum", layer), r = ncclSuccess;
      if (r != ncclSuccess) failLocked(s, options_, r, "ncclRedOpCreatePreMulSum", layer);
      found = s.scaled.emplace(scale, created).first;
    }
    op = found->second;
  }
  KernelInfo info;
  info.op = "allreduce";
  info.pass = "comm";
  info.variant = "nccl";
  info.layer = layer;
  for (const auto& b : buffers) info.bytes += double(b.second) * sizeof(float);
  // In a graph capture the watchdog cannot time a launch: only eager calls are tracked.
  const bool captured = stream.capturing();
  cudaEvent_t done = nullptr;
  if (!captured) checkCuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate", layer);
  try {
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
    }
    if (done) checkCuda(cudaEventRecord(done, stream.get()), "cudaEventRecord", layer);
  } catch (...) {
    if (done) cudaEventDestroy(done);
    throw;
  }
  if (done) s.inFlight.push_back({done, Clock::now(), layer});
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
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::allreduce(CudaStream&, const std::vector<std::pair<float*, size_t>>&, float, const std::string&) { unavailable(); }
void NcclCommunicator::connect() { unavailable(); }
void NcclCommunicator::destroy() {}

#endif

}  // namespace stepscope
