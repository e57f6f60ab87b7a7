// Elementwise ops over `size` floats.
//   relu-fwd: x -> y = max(x, 0)
//   relu-bwd: y, dy -> dx = dy where y > 0 (y is the forward output)
//   add:      a, b -> y = a + b (relu=1: max(a + b, 0)); the residual add,
//             and the sum of two gradients where a tensor feeds two ops
#include <cmath>
#include <cstdint>

#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

class Eltwise : public OpKernel {
 public:
  Eltwise(const std::string& op, bool fast, int64_t size, bool relu, const std::string& layer)
      : OpKernel(op == "add" ? "add" : "relu", fast ? "fast" : "reference", op == "relu-bwd" ? "bwd" : "fwd", layer),
        kind_(op), fast_(fast), size_(size), relu_(relu) {
    if (op == "relu-fwd") buffers_ = {{"x", size}, {"y", size}};
    if (op == "relu-bwd") buffers_ = {{"y", size}, {"dy", size}, {"dx", size}};
    if (op == "add") buffers_ = {{"a", size}, {"b", size}, {"y", size}};
    flops_ = double(size);
  }

  void run(const std::vector<float*>& b) override {
    const int64_t n = size_;
    if (kind_ == "relu-fwd") {
      const float* x = b[0];
      float* y = b[1];
#pragma omp parallel for simd schedule(static) if (fast_)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];  // NaN passes, as in PyTorch
    } else if (kind_ == "relu-bwd") {
      const float *y = b[0], *dy = b[1];
      float* dx = b[2];
#pragma omp parallel for simd schedule(static) if (fast_)
      for (int64_t i = 0; i < n; ++i) {
        const float g = dy[i];  // loaded unconditionally, so the loop vectorizes (a blend, no branch)
        dx[i] = y[i] > 0.0f ? g : 0.0f;
      }
    } else {
      const float *a = b[0], *c = b[1];
      float* y = b[2];
      if (relu_) {
#pragma omp parallel for simd schedule(static) if (fast_)
        for (int64_t i = 0; i < n; ++i) {
          const float v = a[i] + c[i];
          y[i] = v < 0.0f ? 0.0f : v;  // NaN passes (fmax would hide it)
        }
      } else {
#pragma omp parallel for simd schedule(static) if (fast_)
        for (int64_t i = 0; i < n; ++i) y[i] = a[i] + c[i];
      }
    }
  }

 private:
  std::string kind_;
  bool fast_;
  int64_t size_;
  bool relu_;
};

}  // namespace

std::unique_ptr<OpKernel> makeEltwise(const std::string& op, bool fast, const OpParams& p, const std::string& layer) {
  const int64_t size = p.integer("size", 1, 2147483647);
  return std::make_unique<Eltwise>(op, fast, size, op == "add" && p.flag("relu"), layer);
}

}  // namespace stepscope
