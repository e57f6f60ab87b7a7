// All local GPUs in one process (comm_nccl.h: local, allreduceGroup,
// destroyGroup). One thread drives every rank of the clique, so each NCCL
// call that waits for the other ranks (init, each all-reduce, finalize) is
// issued for all of them inside one ncclGroupStart/End, and a failure of one
// rank aborts them all (abortClique).
#include <cuda_runtime_api.h>

#include <utility>

#include "core/error.h"
#include "cuda/comm_nccl.h"
#include "cuda/cuda_error.h"
#include "cuda/cuda_stream.h"
#include "cuda/device.h"

#ifdef STEPSCOPE_HAVE_NCCL
#include "cuda/comm_nccl_state.h"
#endif

namespace stepscope {

#ifdef STEPSCOPE_HAVE_NCCL

namespace {

// Inside a group nothing may throw before ncclGroupEnd (an open group would
// swallow every later NCCL call of this thread): a failed cudaSetDevice is
// remembered and thrown after the group is closed.
struct GroupDeviceError {
  cudaError_t error = cudaSuccess;
  int device = -1;
  bool set(int d) {
    const cudaError_t e = trySetDevice(d);
    if (e == cudaSuccess) return true;
    if (error == cudaSuccess) error = e, device = d;
    return false;
  }
  void throwIfAny() const {
    if (error != cudaSuccess) checkCuda(error, "cudaSetDevice", "GPU " + std::to_string(device));
  }
};

// One NCCL call per rank, all in one group (one thread drives every rank):
// call(i) after making GPU deviceOf(i) current, until one fails. `result`
// is that call's status, else ncclGroupEnd's, or ncclInProgress when
// either of them or any call said so (the nonblocking communicators are
// still working: poll them).
struct GroupResult {
  ncclResult_t result = ncclSuccess;
  GroupDeviceError device;
  bool failed() const { return device.error != cudaSuccess || (result != ncclSuccess && result != ncclInProgress); }
};
template <typename DeviceOf, typename Call>
GroupResult groupCall(size_t ranks, DeviceOf&& deviceOf, Call&& call) {
  GroupResult g;
  bool pending = false;
  auto going = [&] {
    pending = pending || g.result == ncclInProgress;
    return g.result == ncclSuccess || g.result == ncclInProgress;
  };
  g.result = ncclGroupStart();
  for (size_t i = 0; i < ranks && going(); ++i) {
    if (!g.device.set(deviceOf(i))) break;
    g.result = call(i);
  }
  const ncclResult_t end = ncclGroupEnd();  // always: an open group would swallow this thread's later NCCL calls
  if (going()) g.result = end == ncclSuccess && pending ? ncclInProgress : end;
  return g;
}

// Waits for every member's pending work under one deadline: "" when all are
// done, else the first failure's reason (*status: NCCL's status name).
std::string pollAllLocked(const std::vector<NcclState*>& members, int timeoutMs, const std::string& what, std::string* status) {
  const auto deadline = NcclClock::now() + std::chrono::milliseconds(timeoutMs);
  for (NcclState* s : members) {
    const std::string why = pollLocked(*s, deadline, timeoutMs, what, status);
    if (!why.empty()) return why;
  }
  return "";
}

}  // namespace

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
  auto clique = std::make_shared<NcclClique>();
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
    comms.back()->state_->clique = clique;
    clique->members.push_back(comms.back()->state_);
  }
  // One thread joins several ranks: their inits must be one group.
  const GroupResult g = groupCall(comms.size(), [&](size_t i) { return devices[i]; }, [&](size_t i) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    return ncclCommInitRankConfig(&comms[i]->state_->comm, int(devices.size()), id, int(i), &config);
  });
  if (g.failed()) {
    std::vector<NcclState*> members;
    for (NcclPtr& c : comms) members.push_back(c->state_.get());
    abortCliqueLocked(members, "the group's init failed");  // nothing else can hold these yet
    g.device.throwIfAny();
    throwNccl(comms[0]->options_, g.result, nullptr, "ncclCommInitRankConfig (local group)", "");
  }
  return comms;
}

void NcclCommunicator::allreduceGroup(const std::vector<NcclGroupCall>& calls, float scale, const std::string& layer) {
  if (calls.empty()) throw Error("ERR_INVALID_ARG", "nccl allreduceGroup: no calls");
  const NcclOptions& first = calls[0].comm->options_;
  const int size = first.size;
  std::vector<bool> seen(static_cast<size_t>(size), false);
  for (const NcclGroupCall& c : calls) {
    const NcclOptions& o = c.comm->options_;
    if (!c.comm->state_->clique || c.comm->state_->clique != calls[0].comm->state_->clique) {
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
                                         " buffers, rank " + std::to_string(first.rank) + " " + std::to_string(calls[0].buffers.size()));
    }
    for (size_t b = 0; b < c.buffers.size(); ++b) {
      if (c.buffers[b].second != calls[0].buffers[b].second) {
        throw Error("ERR_INVALID_ARG", "nccl allreduceGroup (" + layer + "): buffer " + std::to_string(b) + " holds " + std::to_string(c.buffers[b].second) +
                                           " values on rank " + std::to_string(o.rank) + ", " + std::to_string(calls[0].buffers[b].second) + " on rank " +
                                           std::to_string(first.rank));
      }
    }
  }
  if (int(calls.size()) != size) {
    throw Error("ERR_INVALID_ARG", "nccl allreduceGroup (" + layer + "): " + std::to_string(calls.size()) + " of " + std::to_string(size) +
                                       " ranks given; every local rank must take part (the others would wait forever)");
  }
  // Rank order: the watchdogs and abortClique lock in that order too.
  std::vector<const NcclGroupCall*> ordered(static_cast<size_t>(size), nullptr);
  for (const NcclGroupCall& c : calls) ordered[size_t(c.comm->options_.rank)] = &c;
  std::vector<std::unique_lock<std::mutex>> locks;
  std::vector<NcclState*> members;
  std::vector<ncclRedOp_t> ops;
  for (const NcclGroupCall* c : ordered) {
    NcclState& s = *c->comm->state_;
    locks.emplace_back(s.mutex);
    members.push_back(&s);
  }
  try {
    for (const NcclGroupCall* c : ordered) {
      NcclState& s = *c->comm->state_;
      requireUsableLocked(s, c->comm->options_, layer);
      ops.push_back(scaledSumLocked(s, c->comm->options_, scale, layer));
    }
  } catch (const CudaError& e) {
    if (e.code() == std::string("ERR_COMM")) abortCliqueLocked(members, e.what());  // one rank unusable: the clique is
    throw;
  }
  std::vector<std::pair<CudaStream*, KernelInfo>> streams;
  for (const NcclGroupCall* c : ordered) streams.emplace_back(c->stream, allreduceInfo(c->buffers, layer));
  // Any failure from here aborts every rank: a half-issued group leaves the others' kernels waiting.
  auto failAll = [&](const std::string& why, const std::string& status) {
    abortCliqueLocked(members, why);
    throw CudaError("ERR_COMM", "nccl local group of " + std::to_string(size) + " (" + layer + "): " + why, status, layer);
  };
  // The watchdog's clock for each rank starts when its stream reaches the group (watchLocked):
  // the start events, destroyed here unless handed to watchLocked.
  struct StartEvents {
    std::vector<cudaEvent_t> events;
    ~StartEvents() {
      for (cudaEvent_t e : events)
        if (e) cudaEventDestroy(e);
    }
  } started{std::vector<cudaEvent_t>(ordered.size(), nullptr)};
  for (size_t i = 0; i < ordered.size(); ++i) {
    useDevice(ordered[i]->stream->device());
    started.events[i] = recordWatchEvent(ordered[i]->stream->get(), layer);  // a failure here: nothing issued yet
  }
  timedTogether(streams, [&] {
    const GroupResult g = groupCall(ordered.size(), [&](size_t i) { return ordered[i]->stream->device(); }, [&](size_t i) {
      const NcclGroupCall& c = *ordered[i];
      bool pending = false;
      for (const auto& b : c.buffers) {
        const ncclResult_t r = ncclAllReduce(b.first, b.first, b.second, ncclFloat32, ops[i], c.comm->state_->comm, c.stream->get());
        if (r != ncclSuccess && r != ncclInProgress) return r;
        pending = pending || r == ncclInProgress;
      }
      return pending ? ncclInProgress : ncclSuccess;
    });
    const GroupDeviceError& deviceError = g.device;
    if (deviceError.error != cudaSuccess) failAll(std::string("cudaSetDevice failed on GPU ") + std::to_string(deviceError.device) + ": " + cudaGetErrorName(deviceError.error), cudaGetErrorName(deviceError.error));
    if (g.failed()) failAll(std::string("ncclAllReduce failed: ") + ncclResultName(g.result) + " (" + ncclGetErrorString(g.result) + ")", ncclResultName(g.result));
    if (g.result == ncclInProgress) {
      std::string status;
      const std::string why = pollAllLocked(members, first.timeoutMs, "all-reduce", &status);  // one deadline for the whole group
      if (!why.empty()) failAll(why, status);
    }
  });
  try {
    for (size_t i = 0; i < ordered.size(); ++i) {
      useDevice(ordered[i]->stream->device());
      watchLocked(*members[i], ordered[i]->stream->get(), std::exchange(started.events[i], nullptr), layer);  // owns it, also when it throws
    }
  } catch (const std::exception& e) {
    failAll(std::string("watching the all-reduce failed: ") + e.what(), "cudaError");
  } catch (...) {
    failAll("watching the all-reduce failed", "cudaError");
  }
}

void NcclCommunicator::destroyGroup(const std::vector<NcclPtr>& comms) {
  if (comms.empty()) return;
  const std::shared_ptr<NcclClique> clique = comms[0]->state_->clique;
  if (!clique) throw Error("ERR_INVALID_ARG", "nccl destroyGroup: the communicators are not of NcclCommunicator.local()");
  std::vector<NcclState*> members(clique->members.size(), nullptr);
  for (const NcclPtr& c : comms) {
    if (c->state_->clique != clique) throw Error("ERR_INVALID_ARG", "nccl destroyGroup: the communicators are not of one local clique");
    members[size_t(c->options_.rank)] = c->state_.get();
  }
  for (NcclState* s : members) {
    if (!s) throw Error("ERR_INVALID_ARG", "nccl destroyGroup: " + std::to_string(comms.size()) + " of " + std::to_string(members.size()) + " ranks given; the whole clique is released together");
    if (s->liveGraphs.load() > 0) throw Error("ERR_INVALID_STATE", "nccl destroyGroup: a CUDA graph that captured an all-reduce still exists: release it first");
  }
  for (NcclState* s : members) stopWatchdog(*s);  // before holding any lock: a watchdog may be waiting for one
  std::vector<std::unique_lock<std::mutex>> locks;
  for (NcclState* s : members) locks.emplace_back(s->mutex);
  bool usable = true;
  for (NcclState* s : members) {
    releaseInFlight(s->inFlight);
    usable = usable && s->comm && s->connected;
  }
  const NcclOptions& first = comms[0]->options_;
  // A clique aborted during the run (the watchdog): released, then ERR_COMM,
  // so the run does not end as if its gradients were reduced.
  auto throwIfAborted = [&] {
    for (NcclState* s : members) throwIfAbortedLocked(*s, first, "destroyGroup");
  };
  if (!usable) {  // finalize needs every rank ready: a failed or unfinished join is aborted
    abortCliqueLocked(members, "destroyed");
    throwIfAborted();
    return;
  }
  for (NcclState* s : members) {
    for (auto& [scale, op] : s->scaled) ncclRedOpDestroy(op, s->comm);
    s->scaled.clear();
  }
  // Finalize waits for the issued collectives; from one thread the ranks' finalizes are one group.
  const GroupResult g = groupCall(members.size(), [&](size_t i) { return members[i]->device; }, [&](size_t i) { return ncclCommFinalize(members[i]->comm); });
  // A failure there means issued collectives did not complete.
  if (g.failed()) {
    abortCliqueLocked(members, std::string("ncclCommFinalize failed: ") + ncclResultName(g.result));
    throwIfAborted();
  }
  std::string status;
  const std::string why = pollAllLocked(members, first.timeoutMs, "ncclCommFinalize", &status);
  if (!why.empty()) {
    abortCliqueLocked(members, why);
    throwIfAborted();
  }
  // Finalized: destroying is local to each rank.
  for (NcclState* s : members) {
    trySetDevice(s->device);
    ncclCommDestroy(s->comm);
    s->comm = nullptr;
    if (s->failure.empty()) s->failure = "destroyed";
  }
}

#endif  // STEPSCOPE_HAVE_NCCL (the stubs without NCCL are in comm_nccl.cc)

}  // namespace stepscope
