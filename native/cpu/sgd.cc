// sgd: param, grad, momentum_buffer, all `size` floats, updated in place with
// PyTorch's SGD semantics (no dampening, no Nesterov):
//   d = grad + weight_decay * param;  buf = momentum * buf + d;  param -= lr * buf
// buf starts at zero, so the first step gives buf = d, as PyTorch's clone does.
// With tensors=k, k such triples at once (sgd_params.h).
#include <cstdint>

#include "cpu/op_kernel.h"
#include "cpu/sgd_params.h"

namespace stepscope {
namespace {

class Sgd : public OpKernel {
 public:
  Sgd(bool fast, SgdParams params, const std::string& layer)
      : OpKernel("sgd", fast ? "fast" : "reference", "update", layer), fast_(fast), p_(std::move(params)) {
    buffers_ = sgdBuffers(p_);
    flops_ = 5.0 * sgdElements(p_);
  }

  void run(const std::vector<float*>& b) override {
    for (size_t t = 0; t < p_.sizes.size(); ++t) update(b[3 * t], b[3 * t + 1], b[3 * t + 2], p_.sizes[t]);
  }

 private:
  void update(float* param, const float* grad, float* buf, int64_t n) const {
    const float lr = p_.lr, momentum = p_.momentum, weightDecay = p_.weightDecay;
#pragma omp parallel for simd schedule(static) if (fast_ && n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      const float d = grad[i] + weightDecay * param[i];
      buf[i] = momentum * buf[i] + d;
      param[i] -= lr * buf[i];
    }
  }

  bool fast_;
  SgdParams p_;
};

}  // namespace

std::unique_ptr<OpKernel> makeSgd(const std::string&, bool fast, const OpParams& p, const std::string& layer) {
  return std::make_unique<Sgd>(fast, sgdParams(p), layer);
}

}  // namespace stepscope
