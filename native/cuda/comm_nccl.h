// The `nccl` communicator: gradient all-reduce across GPUs with NCCL, one
// rank per process (stepscope launch starts them, one GPU each), or all local
// GPUs in one process (local(): one communicator per GPU, their all-reduces
// issued together by allreduceGroup). Across processes the ranks meet through
// a unique id that rank 0 makes and the others receive (the JS side passes it
// through the launch's store: src/comm/rendezvous.ts).
//
// The communicator is non-blocking (ncclConfig_t.blocking = 0), so every wait
// for the peers (init, each collective's launch) is polled against a
// deadline: a dead or missing peer becomes ERR_COMM after timeoutMs, and the
// communicator is aborted, never a hang. (Limit: an abort while a CUDA graph
// holding one of its all-reduces lives runs on a detached thread, since NCCL
// waits for the graph to die; each launch of such a graph is watched from
// the end of the launch.)
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/timeline.h"

namespace stepscope {

class CudaStream;

struct NcclOptions {
  std::string uniqueId;  // NCCL_UNIQUE_ID_BYTES bytes from newNcclUniqueId()
  int rank = 0;
  int size = 1;
  int timeoutMs = 30000;
  int device = -1;  // this rank's GPU; -1: the default one
};

// A fresh unique id (rank 0 makes it). Throws ERR_UNAVAILABLE without NCCL.
std::string newNcclUniqueId();

struct NcclState;

class NcclCommunicator;
using NcclPtr = std::shared_ptr<NcclCommunicator>;

// One local rank's part of a grouped all-reduce: its buffers, on its stream.
struct NcclGroupCall {
  NcclPtr comm;
  CudaStream* stream;
  std::vector<std::pair<float*, size_t>> buffers;
};

class NcclCommunicator : public std::enable_shared_from_this<NcclCommunicator> {
 public:
  // Starts joining the other ranks on GPU options.device; returns at once
  // (NCCL joins on its own thread).
  explicit NcclCommunicator(NcclOptions options);
  // Ranks 0..n-1 of one clique on these GPUs of this process, joined in one
  // NCCL group (as ncclCommInitAll); connect() each. ERR_INVALID_ARG for a
  // GPU out of range or given twice.
  static std::vector<NcclPtr> local(const std::vector<int>& devices, int timeoutMs);
  // The all-reduces of one bucket on every local rank of a clique made by
  // local(), in one NCCL group: a single thread must issue them together
  // (one rank's call alone would wait for the others forever). One kernel
  // record per stream. Throws ERR_COMM; ERR_INVALID_ARG unless the calls
  // cover each rank once with matching buffer sizes; ERR_UNSUPPORTED in a
  // graph capture.
  static void allreduceGroup(const std::vector<NcclGroupCall>& calls, float scale, const std::string& layer);
  // Releases every communicator of a clique made by local(): their watchdogs
  // stop, then one grouped ncclCommFinalize (from one thread a rank's finalize
  // waits for the others'), polled to a deadline, then ncclCommDestroy; an
  // abort of all on any failure. ERR_INVALID_ARG unless `comms` is the whole
  // clique; ERR_INVALID_STATE while a graph holds one of them.
  static void destroyGroup(const std::vector<NcclPtr>& comms);
  // Blocks until every rank has joined (ERR_COMM after timeoutMs); any thread.
  void connect();
  ~NcclCommunicator();
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  // Enqueues on `stream`, in place, one grouped launch: each buffer =
  // scale * sum over ranks of that buffer. Timed as one kernel record
  // (op "allreduce", pass "comm", variant "nccl"). Throws ERR_COMM.
  void allreduce(CudaStream& stream, const std::vector<std::pair<float*, size_t>>& buffers, float scale, const std::string& layer);
  // Releases the communicator (ncclCommFinalize + destroy; an abort when it
  // never connected or finalize fails); later calls throw. ERR_INVALID_STATE
  // while a CUDA graph that captured its all-reduce lives (NCCL waits for such
  // graphs to die: release them first), and for a member of a local clique
  // (destroyGroup releases those together).
  void destroy();
  const NcclOptions& options() const { return options_; }
  int device() const;  // the GPU its rank runs on

 private:
  struct Deferred {};  // local(): the group initializes the communicator
  NcclCommunicator(NcclOptions options, Deferred);
  NcclOptions options_;
  std::shared_ptr<NcclState> state_;  // shared: a clique (comm_nccl_state.h) refers to its members' states
};

}  // namespace stepscope
