// The `local` communicator on the CUDA backend, as cpu/comm_local.cc, so one
// GPU runs both reduction schedules with W workers stood in:
//   allreduce-local: grad, replicas -> grad. The W-1 other workers' gradients
//     are copies of this one's (device-to-device copies into `replicas`, as a
//     transfer would deliver them), then all W are summed and averaged.
//   link-hold: holds the stream for the modeled ring all-reduce time of
//     `bytes` among `workers` (a host function that sleeps, as a NIC would
//     keep the stream busy without the GPU's cores).
#include <cuda_runtime.h>

#include <chrono>
#include <thread>

#include "core/error.h"
#include "cuda/cuda_error.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"

namespace stepscope {
namespace {

using namespace cudaops;

__global__ void averageKernel(float* grad, const float* __restrict__ replicas, long long n, int workers) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    grad[i] = allreduceLocalAt(grad, replicas, n, workers, i);
}

class CudaAllreduceLocal : public CudaOpKernel {
 public:
  CudaAllreduceLocal(long long size, int workers, const std::string& layer)
      : CudaOpKernel("allreduce", "comm", layer), size_(size), workers_(workers) {
    variant_ = "local";  // the CPU's record names: the what-if model keys on them
    buffers_ = {{"grad", size}, {"replicas", size * (workers > 1 ? workers - 1 : 1)}};
    flops_ = double(size) * workers;
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    for (int r = 0; r < workers_ - 1; ++r) {
      checkCuda(cudaMemcpyAsync(b[1] + r * size_, b[0], size_ * sizeof(float), cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync (replica)", context());
    }
    averageKernel<<<opGridFor(size_), 256, 0, stream>>>(b[0], b[1], size_, workers_);
    checkLaunch("allreduce-local launch", context());
  }

 private:
  long long size_;
  int workers_;
};

void CUDART_CB sleepFor(void* seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(*static_cast<double*>(seconds)));
}

class CudaLinkHold : public CudaOpKernel {
 public:
  CudaLinkHold(double bytes, int workers, double gbps, double latencyUs, const std::string& layer)
      : CudaOpKernel("link", "comm", layer) {
    variant_ = "modeled";
    const double w = workers;
    seconds_ = workers > 1 ? 2 * (w - 1) * latencyUs * 1e-6 + 2 * (w - 1) / w * bytes / (gbps * 1e9) : 0.0;
  }

  void launch(const std::vector<float*>&, cudaStream_t stream) override {
    checkCuda(cudaLaunchHostFunc(stream, sleepFor, &seconds_), "cudaLaunchHostFunc (link-hold)", context());
  }

 private:
  double seconds_ = 0;  // read by the host function: the kernel outlives its launches
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaComm(const std::string& op, const OpParams& p, const std::string& layer) {
  const int workers = p.integer("workers", 1, 1 << 20);
  if (op == "allreduce-local") return std::make_unique<CudaAllreduceLocal>(p.integer("size", 1, 2147483647), workers, layer);
  const double gbps = p.number("gbps");
  if (gbps <= 0) throw Error("ERR_INVALID_ARG", "link-hold: parameter 'gbps' must be positive");
  const double latency = p.number("latencyUs", 0.0);
  if (latency < 0) throw Error("ERR_INVALID_ARG", "link-hold: parameter 'latencyUs' must be >= 0");
  return std::make_unique<CudaLinkHold>(p.number("bytes"), workers, gbps, latency, layer);
}

}  // namespace stepscope
