// sgd: param, grad, momentum_buffer, all `size` floats, updated in place with
// PyTorch's SGD semantics (no dampening, no Nesterov):
//   d = grad + weight_decay * param;  buf = momentum * buf + d;  param -= lr * buf
// buf starts at zero, so the first step gives buf = d, as PyTorch's clone does.
#include <cstdint>

#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

class Sgd : public OpKernel {
 public:
  Sgd(bool fast, int64_t size, float lr, float momentum, float weightDecay, const std::string& layer)
      : OpKernel("sgd", fast ? "fast" : "reference", "update", layer), fast_(fast), size_(size), lr_(lr),
        momentum_(momentum), weightDecay_(weightDecay) {
    buffers_ = {{"param", size}, {"grad", size}, {"momentum_buffer", size}};
    flops_ = 5.0 * double(size);
  }

  void run(const std::vector<float*>& b) override {
    float *param = b[0], *buf = b[2];
    const float* grad = b[1];
    const int64_t n = size_;
#pragma omp parallel for simd schedule(static) if (fast_ && n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      const float d = grad[i] + weightDecay_ * param[i];
      buf[i] = momentum_ * buf[i] + d;
      param[i] -= lr_ * buf[i];
    }
  }

 private:
  bool fast_;
  int64_t size_;
  float lr_, momentum_, weightDecay_;
};

}  // namespace

std::unique_ptr<OpKernel> makeSgd(const std::string&, bool fast, const OpParams& p, const std::string& layer) {
  return std::make_unique<Sgd>(fast, p.integer("size", 1, 2147483647), float(p.number("lr")),
                               float(p.number("momentum", 0.0)), float(p.number("weightDecay", 0.0)), layer);
}

}  // namespace stepscope
