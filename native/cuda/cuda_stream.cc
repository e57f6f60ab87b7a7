#include "cuda/cuda_stream.h"

#include <nvtx3/nvToolsExt.h>

#include <atomic>
#include <mutex>

#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

namespace {

struct PendingRecord {
  KernelInfo info;
  int streamId;
  std::string streamName;
  std::shared_ptr<StreamAnchor> anchor;
  cudaEvent_t start, end;
};

std::mutex timelineMutex;
std::vector<PendingRecord>& pending() {
  static auto* records = new std::vector<PendingRecord>();  // never destroyed: streams may outlive statics
  return *records;
}

std::atomic<int> nextStreamId{1000};  // apart from the CPU addon's stream ids

}  // namespace

StreamAnchor::~StreamAnchor() {
  if (event) cudaEventDestroy(event);
}

CudaStream::CudaStream(std::string name) : id_(nextStreamId++), name_(std::move(name)) {
  requireDevice("CudaStream");
  checkCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  anchor_ = std::make_shared<StreamAnchor>();
  checkCuda(cudaEventCreate(&anchor_->event), "cudaEventCreate");
  checkCuda(cudaEventRecord(anchor_->event, stream_), "cudaEventRecord");
  checkCuda(cudaEventSynchronize(anchor_->event), "cudaEventSynchronize");
  anchor_->hostNs = nowNs();
}

CudaStream::~CudaStream() {
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

void CudaStream::timed(const KernelInfo& info, const std::function<void()>& body) {
  const std::string context = info.layer + " " + info.pass + " " + info.variant;
  cudaEvent_t start = nullptr, end = nullptr;
  checkCuda(cudaEventCreate(&start), "cudaEventCreate", context);
  checkCuda(cudaEventCreate(&end), "cudaEventCreate", context);
  nvtxRangePushA((info.layer.empty() ? info.op + " " + info.pass + " " + info.variant : context).c_str());
  try {
    checkCuda(cudaEventRecord(start, stream_), "cudaEventRecord", context);
    body();
    checkCuda(cudaGetLastError(), "kernel launch", context);
    checkCuda(cudaEventRecord(end, stream_), "cudaEventRecord", context);
  } catch (...) {
    nvtxRangePop();
    cudaEventDestroy(start);
    cudaEventDestroy(end);
    throw;
  }
  nvtxRangePop();
  std::lock_guard<std::mutex> lock(timelineMutex);
  pending().push_back({info, id_, name_, anchor_, start, end});
}

void CudaStream::synchronize() { checkCuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize", name_); }

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
    float startMs = 0, endMs = 0;
    cudaError_t e = cudaEventSynchronize(r.end);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&startMs, r.anchor->event, r.start);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&endMs, r.anchor->event, r.end);
    cudaEventDestroy(r.start);
    cudaEventDestroy(r.end);
    if (e != cudaSuccess) {
      if (firstError.empty()) firstError = cudaGetErrorName(e);
      continue;
    }
    KernelRecord k;
    k.info = r.info;
    k.streamId = r.streamId;
    k.streamName = r.streamName;
    k.startNs = r.anchor->hostNs + int64_t(double(startMs) * 1e6);
    k.endNs = r.anchor->hostNs + int64_t(double(endMs) * 1e6);
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
  for (PendingRecord& r : pending()) {
    cudaEventDestroy(r.start);
    cudaEventDestroy(r.end);
  }
  pending().clear();
}

}  // namespace stepscope
