// Internals of the nccl communicator shared by comm_nccl.cc (one rank per
// communicator) and comm_nccl_local.cc (all local GPUs in one process): the
// state behind an NcclCommunicator and the calls made with its mutex held.
// Only with NCCL built in.
#pragma once
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/timeline.h"
#include "cuda/comm_nccl.h"

namespace stepscope {

using NcclClock = std::chrono::steady_clock;

// A collective enqueued and not yet seen complete: the watchdog aborts the
// communicator when one is still running timeoutMs after the GPU reached it
// (`started` fired: the work before it on the stream is done; in a graph,
// the graph began). Timing from the enqueue instead would abort a healthy
// overlapped run whose first bucket is enqueued while the forward pass runs.
struct InFlight {
  cudaEvent_t started;
  cudaEvent_t done;
  std::optional<NcclClock::time_point> startedAt;  // when the watchdog first saw `started` fired
  std::string layer;
};
// A timing-free event recorded on `stream` now, for the watchdog; throws on failure.
cudaEvent_t recordWatchEvent(cudaStream_t stream, const std::string& layer);
// Destroys the events of every record and clears them.
void releaseInFlight(std::vector<InFlight>& inFlight);

struct NcclState;

// The communicators of one process made together by NcclCommunicator::local():
// NCCL wants every one of them aborted when one fails (from one thread a
// rank's abort cannot wait for the others'), so a failure aborts the clique.
struct NcclClique {
  std::vector<std::weak_ptr<NcclState>> members;  // rank order
};

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
  std::shared_ptr<NcclClique> clique;  // set for the communicators of local()
};

const char* ncclResultName(ncclResult_t r);
std::string rankText(const NcclOptions& o);
[[noreturn]] void throwNccl(const NcclOptions& o, ncclResult_t r, ncclComm_t comm, const std::string& what, const std::string& layer);
// Aborts every live communicator of a clique at once, their mutexes taken in
// rank order (the caller holds none of them).
void abortClique(const NcclClique& clique, const std::string& why);
// The same with every member's mutex already held by the caller (rank order).
void abortCliqueLocked(const std::vector<NcclState*>& members, const std::string& why);
// Polls until the pending call is done: "" on success, else why it failed
// (an error, or the deadline passed); *status gets NCCL's status name. state.mutex held; aborts nothing.
std::string pollLocked(NcclState& s, NcclClock::time_point deadline, int timeoutMs, const std::string& what, std::string* status);
[[noreturn]] void failLocked(NcclState& s, const NcclOptions& o, ncclResult_t r, const std::string& what, const std::string& layer);
void requireUsableLocked(const NcclState& s, const NcclOptions& o, const std::string& layer);
ncclRedOp_t scaledSumLocked(NcclState& s, const NcclOptions& o, float scale, const std::string& layer);
KernelInfo allreduceInfo(const std::vector<std::pair<float*, size_t>>& buffers, const std::string& layer);
// Stops the watchdog and waits for it to end; state.mutex NOT held (the
// watchdog takes it). The thread is taken out under the mutex: connect() may
// be starting it on a worker thread while destroy() runs on the JS thread.
void stopWatchdog(NcclState& s);
// After the collective on `stream`: its record for the watchdog, `started`
// (recorded before it) and an event after it; takes `started` (destroyed if
// this throws). state.mutex held.
void watchLocked(NcclState& s, cudaStream_t stream, cudaEvent_t started, const std::string& layer);
// A communicator that was connected and then aborted by a failure (the
// watchdog: a dead peer, a timeout): its collectives since then returned
// without reducing, and a graph's replays make no NCCL call that would say
// so. ERR_COMM naming the failure; nothing when it was not. state.mutex held.
void throwIfAbortedLocked(const NcclState& s, const NcclOptions& o, const std::string& when);

}  // namespace stepscope
