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
#include <cstdint>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "cpu/link_model.h"
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

// The host function gets the seconds themselves in its argument (a double's
// bits): nothing it reads can be freed before it runs, however late (the
// kernel may be collected first, or a captured graph replayed long after).
void* asHostArgument(double seconds) {
  static_assert(sizeof(void*) == sizeof(double), "a 64-bit host");
  uintptr_t bits = 0;
  std::memcpy(&bits, &seconds, sizeof seconds);
  return reinterpret_cast<void*>(bits);
}

void CUDART_CB sleepFor(void* argument) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(argument);
  double seconds = 0;
  std::memcpy(&seconds, &bits, sizeof seconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

class CudaLinkHold : public CudaOpKernel {
 public:
  CudaLinkHold(double seconds, const std::string& layer) : CudaOpKernel("link", "comm", layer), seconds_(seconds) { variant_ = "modeled"; }

  void launch(const std::vector<float*>&, cudaStream_t stream) override {
    checkCuda(cudaLaunchHostFunc(stream, sleepFor, asHostArgument(seconds_)), "cudaLaunchHostFunc (link-hold)", context());
  }

 private:
  double seconds_ = 0;  // at most kMaxLinkHoldSeconds (cpu/link_model.h)
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaComm(const std::string& op, const OpParams& p, const std::string& layer) {
  const int workers = p.integer("workers", 1, 1 << 20);
  if (op == "allreduce-local") return std::make_unique<CudaAllreduceLocal>(p.integer("size", 1, 2147483647), workers, layer);
  return std::make_unique<CudaLinkHold>(linkHoldSeconds(p, workers), layer);
}

}  // namespace stepscope
