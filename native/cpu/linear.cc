// The fully connected layer: x [n, in], w [out, in] (PyTorch's layout), b [out].
//   fc-fwd: x, w, b -> y [n, out] = x w^T + b
//   fc-bwd: x, w, dy -> dx = dy w, dw = dy^T x, db = sum over n of dy
// `fast` uses our GEMM (gemm.cc); `reference` plain loops in double.
#include <cstdint>

#include "cpu/gemm.h"
#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

class Linear : public OpKernel {
 public:
  Linear(bool forward, bool fast, int n, int in, int out, const std::string& layer)
      : OpKernel("fc", fast ? "fast" : "reference", forward ? "fwd" : "bwd", layer), forward_(forward), fast_(fast), n_(n),
        in_(in), out_(out) {
    const int64_t X = int64_t(n) * in, W = int64_t(out) * in, Y = int64_t(n) * out;
    if (forward) buffers_ = {{"x", X}, {"w", W}, {"b", out}, {"y", Y}};
    else buffers_ = {{"x", X}, {"w", W}, {"dy", Y}, {"dx", X}, {"dw", W}, {"db", out}};
    flops_ = (forward ? 2.0 : 4.0) * double(n) * in * out;
  }

  void run(const std::vector<float*>& b) override { forward_ ? runForward(b) : runBackward(b); }

 private:
  void runForward(const std::vector<float*>& b) {
    const float *x = b[0], *w = b[1], *bias = b[2];
    float* y = b[3];
    if (fast_) {
      sgemm(n_, out_, in_, x, in_, 1, w, 1, in_, 0.0f, y, out_);
      for (int i = 0; i < n_; ++i)
        for (int j = 0; j < out_; ++j) y[int64_t(i) * out_ + j] += bias[j];
      return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n_; ++i)
      for (int j = 0; j < out_; ++j) {
        double acc = bias[j];
        for (int k = 0; k < in_; ++k) acc += double(x[int64_t(i) * in_ + k]) * w[int64_t(j) * in_ + k];
        y[int64_t(i) * out_ + j] = float(acc);
      }
  }

  void runBackward(const std::vector<float*>& b) {
    const float *x = b[0], *w = b[1], *dy = b[2];
    float *dx = b[3], *dw = b[4], *db = b[5];
    if (fast_) {
      sgemm(n_, in_, out_, dy, out_, 1, w, in_, 1, 0.0f, dx, in_);   // dx = dy w
      sgemm(out_, in_, n_, dy, 1, out_, x, in_, 1, 0.0f, dw, in_);   // dw = dy^T x
    } else {
#pragma omp parallel for schedule(static)
      for (int i = 0; i < n_; ++i)
        for (int k = 0; k < in_; ++k) {
          double acc = 0;
          for (int j = 0; j < out_; ++j) acc += double(dy[int64_t(i) * out_ + j]) * w[int64_t(j) * in_ + k];
          dx[int64_t(i) * in_ + k] = float(acc);
        }
#pragma omp parallel for schedule(static)
      for (int j = 0; j < out_; ++j)
        for (int k = 0; k < in_; ++k) {
          double acc = 0;
          for (int i = 0; i < n_; ++i) acc += double(dy[int64_t(i) * out_ + j]) * x[int64_t(i) * in_ + k];
          dw[int64_t(j) * in_ + k] = float(acc);
        }
    }
    for (int j = 0; j < out_; ++j) {
      double acc = 0;
      for (int i = 0; i < n_; ++i) acc += dy[int64_t(i) * out_ + j];
      db[j] = float(acc);
    }
  }

  bool forward_, fast_;
  int n_, in_, out_;
};

}  // namespace

std::unique_ptr<OpKernel> makeLinear(const std::string& op, bool fast, const OpParams& p, const std::string& layer) {
  return std::make_unique<Linear>(op == "fc-fwd", fast, p.integer("n", 1, 1 << 20), p.integer("in", 1, 1 << 24),
                                  p.integer("out", 1, 1 << 24), layer);
}

}  // namespace stepscope
