// The `local` communicator's work, as kernels on a (communication) stream.
//   allreduce-local: grad, replicas -> grad. The other W-1 workers' gradients
//     are stood in by copies of this worker's (written into `replicas` as a
//     transfer would deliver them), then all W are summed and averaged: the
//     arithmetic of training is unchanged, the memory traffic and the
//     contention with compute are real. It runs on the stream's own thread
//     only, as a communication engine's proxy thread does (Gloo, NCCL's
//     proxy): a second OpenMP team beside the compute stream's would make the
//     two fight over every core, and the slowdown erratic from run to run.
//   link-hold: holds the stream for the modeled ring all-reduce transfer time
//     of `bytes` among `workers`: 2(W-1)*latency + 2(W-1)/W * bytes/bandwidth,
//     as a NIC or DMA engine would, without using a core.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <algorithm>

#include "core/error.h"
#include "cpu/link_model.h"
#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

class AllreduceLocal : public OpKernel {
 public:
  AllreduceLocal(int64_t size, int workers, const std::string& layer)
      : OpKernel("allreduce", "local", "comm", layer), size_(size), workers_(workers) {
    buffers_ = {{"grad", size}, {"replicas", size * std::max(1, workers - 1)}};
    flops_ = double(size) * workers;
  }

  void run(const std::vector<float*>& b) override {
    float* grad = b[0];
    float* replicas = b[1];
    const int64_t n = size_;
    const int others = workers_ - 1;
    for (int r = 0; r < others; ++r) std::memcpy(replicas + r * n, grad, sizeof(float) * n);  // "received"
    const float scale = 1.0f / float(workers_);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      float sum = grad[i];
      for (int r = 0; r < others; ++r) sum += replicas[r * n + i];
      grad[i] = sum * scale;
    }
  }

 private:
  int64_t size_;
  int workers_;
};

class LinkHold : public OpKernel {
 public:
  LinkHold(double seconds, const std::string& layer) : OpKernel("link", "modeled", "comm", layer), seconds_(seconds) {}

  void run(const std::vector<float*>&) override {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds_));
  }

 private:
  double seconds_ = 0;
};

}  // namespace

std::unique_ptr<OpKernel> makeComm(const std::string& op, bool, const OpParams& p, const std::string& layer) {
  const int workers = p.integer("workers", 1, 1 << 20);
  if (op == "allreduce-local") return std::make_unique<AllreduceLocal>(p.integer("size", 1, 2147483647), workers, layer);
  return std::make_unique<LinkHold>(linkHoldSeconds(p, workers), layer);
}

}  // namespace stepscope
