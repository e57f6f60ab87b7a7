#include "cuda/cuda_graph.h"

#include <mutex>
#include <string>

#include <nvtx3/nvToolsExt.h>

#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

namespace {
// The stream whose beginCapture opened the capture (one at a time): only it
// may end it. endCapture on another stream would end our bookkeeping while
// CUDA's capture stayed open on the origin.
std::mutex originMutex;
int originId = -1;
std::string originName;
}  // namespace

void CudaGraph::beginCapture(CudaStream& origin) {
  useDevice(origin.device());
  beginTimelineCapture();
  const cudaError_t e = cudaStreamBeginCapture(origin.get(), cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    discardTimelineCapture();  // nothing was captured
    checkCuda(e, "cudaStreamBeginCapture", origin.name());
  }
  std::lock_guard<std::mutex> lock(originMutex);
  originId = origin.id();
  originName = origin.name();
}

CudaGraphPtr CudaGraph::endCapture(CudaStream& origin) {
  {
    std::lock_guard<std::mutex> lock(originMutex);
    if (originId != origin.id()) {
      throw Error("ERR_INVALID_STATE", origin.name() + ": endCapture: " +
                                           (originId < 0 ? std::string("no capture is open (beginCapture first)")
                                                         : "the capture was begun on stream '" + originName + "': end it there"));
    }
  }
  std::shared_ptr<CudaGraph> g(new CudaGraph());
  useDevice(origin.device());
  g->device_ = origin.device();
  const cudaError_t e = cudaStreamEndCapture(origin.get(), &g->graph_);
  g->timeline_ = endTimelineCapture();  // always: the capture is over either way
  {
    std::lock_guard<std::mutex> lock(originMutex);
    originId = -1;
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    forgetCaptureOf(*g->timeline_);  // the graph never runs: its events never fire
    const std::string name = cudaGetErrorName(e);
    throw CudaError("ERR_CUDA",
                    origin.name() + ": cudaStreamEndCapture failed: " + name + " (" + cudaGetErrorString(e) +
                        "): a stream that joined the capture did not rejoin '" + origin.name() +
                        "', or a call that cannot be captured (a synchronize, a copy to the host) was made",
                    name, origin.name());
  }
  const cudaError_t instantiated = cudaGraphInstantiate(&g->exec_, g->graph_, 0);
  if (instantiated != cudaSuccess) forgetCaptureOf(*g->timeline_);
  checkCuda(instantiated, "cudaGraphInstantiate", origin.name());
  return g;
}

void CudaGraph::abandonCaptureOf(CudaStream& origin) noexcept {
  {
    std::lock_guard<std::mutex> lock(originMutex);
    if (originId != origin.id()) return;
    originId = -1;
  }
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(origin.get(), &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // an invalidated capture's error is not the next call's
  discardTimelineCapture();
}

CudaGraph::~CudaGraph() {
  if (exec_) cudaGraphExecDestroy(exec_);
  if (graph_) cudaGraphDestroy(graph_);
}

void CudaGraph::launch(CudaStream& stream) {
  if (stream.device() != device_) {
    throw Error("ERR_INVALID_ARG", "graph launch: the graph was captured on GPU " + std::to_string(device_) + "; stream '" + stream.name() + "' is on GPU " +
                                       std::to_string(stream.device()));
  }
  useDevice(device_);
  runHooksBeforeLaunch(*timeline_, stream.get());
  nvtxRangePushA("graph launch");
  const cudaError_t e = cudaGraphLaunch(exec_, stream.get());
  nvtxRangePop();
  checkCuda(e, "cudaGraphLaunch", stream.name());
  replayTimeline(timeline_, stream.anchor());
  runLaunchHooks(*timeline_, stream.get());
}

size_t CudaGraph::nodes() const {
  size_t count = 0;
  checkCuda(cudaGraphGetNodes(graph_, nullptr, &count), "cudaGraphGetNodes");
  return count;
}

}  // namespace stepscope
