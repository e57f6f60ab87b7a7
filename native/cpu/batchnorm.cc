// Batch normalization in training mode over NCHW activations, per channel c
// over the n*hw values, as PyTorch's BatchNorm2d: y = gamma * xhat + beta with
// xhat = (x - mean) * invstd, invstd = 1 / sqrt(var + eps), var biased; the
// running statistics take momentum * (mean, unbiased var). relu=1 fuses the
// ReLU: forward writes max(y, 0); backward masks dy where that output is 0.
//
//   batchnorm-fwd: x, gamma, beta, running_mean, running_var -> y, save_mean, save_invstd
//   batchnorm-bwd: x, gamma, save_mean, save_invstd, dy [, y if relu] -> dx, dgamma, dbeta
#include <cmath>
#include <cstdint>

#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

struct BnShape {
  int n, c;
  int64_t hw;
  double eps, momentum;
  bool relu;
  int64_t size() const { return int64_t(n) * c * hw; }
  int64_t count() const { return int64_t(n) * hw; }  // values per channel
};

BnShape parse(const OpParams& p) {
  BnShape s;
  s.n = p.integer("n", 1, 1 << 20);
  s.c = p.integer("c", 1, 1 << 20);
  s.hw = p.integer("hw", 1, 1 << 28);
  s.eps = p.number("eps", 1e-5);
  s.momentum = p.number("momentum", 0.1);
  s.relu = p.flag("relu");
  return s;
}

class BatchNormForward : public OpKernel {
 public:
  BatchNormForward(const BnShape& s, bool fast, const std::string& layer)
      : OpKernel("batchnorm", fast ? "fast" : "reference", "fwd", layer), s_(s), fast_(fast) {
    const int64_t N = s.size();
    buffers_ = {{"x", N},    {"gamma", s.c}, {"beta", s.c},      {"running_mean", s.c}, {"running_var", s.c},
                {"y", N},    {"save_mean", s.c}, {"save_invstd", s.c}};
    flops_ = 8.0 * double(N);
  }

  void run(const std::vector<float*>& b) override {
    const float *x = b[0], *gamma = b[1], *beta = b[2];
    float *runMean = b[3], *runVar = b[4], *y = b[5], *saveMean = b[6], *saveInvStd = b[7];
    const int64_t M = s_.count();
#pragma omp parallel for schedule(static) if (fast_)
    for (int c = 0; c < s_.c; ++c) {
      double mean, var;
      if (fast_) {  // float partial sums per row, double across rows
        double sum = 0, sq = 0;
        for (int n = 0; n < s_.n; ++n) {
          const float* row = x + (int64_t(n) * s_.c + c) * s_.hw;
          float rs = 0;
#pragma omp simd reduction(+ : rs)
          for (int64_t i = 0; i < s_.hw; ++i) rs += row[i];
          sum += rs;
        }
        mean = sum / double(M);
        const float fm = float(mean);
        for (int n = 0; n < s_.n; ++n) {
          const float* row = x + (int64_t(n) * s_.c + c) * s_.hw;
          float rq = 0;
#pragma omp simd reduction(+ : rq)
          for (int64_t i = 0; i < s_.hw; ++i) rq += (row[i] - fm) * (row[i] - fm);
          sq += rq;
        }
        var = sq / double(M);
      } else {
        double sum = 0, sq = 0;
        for (int n = 0; n < s_.n; ++n)
          for (int64_t i = 0; i < s_.hw; ++i) sum += x[(int64_t(n) * s_.c + c) * s_.hw + i];
        mean = sum / double(M);
        for (int n = 0; n < s_.n; ++n)
          for (int64_t i = 0; i < s_.hw; ++i) {
            double d = x[(int64_t(n) * s_.c + c) * s_.hw + i] - mean;
            sq += d * d;
          }
        var = sq / double(M);
      }
      const double invstd = 1.0 / std::sqrt(var + s_.eps);
      saveMean[c] = float(mean);
      saveInvStd[c] = float(invstd);
      const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
      runMean[c] = float((1 - s_.momentum) * runMean[c] + s_.momentum * mean);
      runVar[c] = float((1 - s_.momentum) * runVar[c] + s_.momentum * unbiased);
      const float scale = float(gamma[c] * invstd), shift = float(beta[c] - gamma[c] * mean * invstd);
      for (int n = 0; n < s_.n; ++n) {
        const float* in = x + (int64_t(n) * s_.c + c) * s_.hw;
        float* out = y + (int64_t(n) * s_.c + c) * s_.hw;
        if (s_.relu) {
#pragma omp simd
          for (int64_t i = 0; i < s_.hw; ++i) {
            const float v = in[i] * scale + shift;
            out[i] = v < 0.0f ? 0.0f : v;  // NaN passes, as in PyTorch
          }
        } else {
#pragma omp simd
          for (int64_t i = 0; i < s_.hw; ++i) out[i] = in[i] * scale + shift;
        }
      }
    }
  }

 private:
  BnShape s_;
  bool fast_;
};

class BatchNormBackward : public OpKernel {
 public:
  BatchNormBackward(const BnShape& s, bool fast, const std::string& layer)
      : OpKernel("batchnorm", fast ? "fast" : "reference", "bwd", layer), s_(s), fast_(fast) {
    const int64_t N = s.size();
    buffers_ = {{"x", N}, {"gamma", s.c}, {"save_mean", s.c}, {"save_invstd", s.c}, {"dy", N},
                {"dx", N}, {"dgamma", s.c}, {"dbeta", s.c}};
    if (s.relu) buffers_.push_back({"y", N});
    flops_ = 10.0 * double(N);
  }

  void run(const std::vector<float*>& b) override {
    const float *x = b[0], *gamma = b[1], *saveMean = b[2], *saveInvStd = b[3], *dy = b[4];
    float *dx = b[5], *dgamma = b[6], *dbeta = b[7];
    const float* y = s_.relu ? b[8] : nullptr;
    const double M = double(s_.count());
#pragma omp parallel for schedule(static) if (fast_)
    for (int c = 0; c < s_.c; ++c) {
      const float mean = saveMean[c], invstd = saveInvStd[c];
      double sumDy = 0, sumDyXhat = 0;
      for (int n = 0; n < s_.n; ++n) {
        const int64_t base = (int64_t(n) * s_.c + c) * s_.hw;
        if (fast_) {
          // Unconditional loads and a select keep these loops vectorized.
          const float *xr = x + base, *dyr = dy + base, *yr = y ? y + base : dy + base;
          const float floor = y ? 0.0f : -INFINITY;  // without the ReLU nothing is masked
          float a = 0, bsum = 0;
#pragma omp simd reduction(+ : a, bsum)
          for (int64_t i = 0; i < s_.hw; ++i) {
            const float d = dyr[i];
            const float g = yr[i] > floor ? d : 0.0f;
            a += g;
            bsum += g * (xr[i] - mean);
          }
          sumDy += a;
          sumDyXhat += double(bsum) * invstd;
        } else {
          for (int64_t i = 0; i < s_.hw; ++i) {
            const double g = y && y[base + i] <= 0.0f ? 0.0 : double(dy[base + i]);
            sumDy += g;
            sumDyXhat += g * (double(x[base + i]) - mean) * invstd;
          }
        }
      }
      dbeta[c] = float(sumDy);
      dgamma[c] = float(sumDyXhat);
      // dx = gamma * invstd / M * (M * dy - sum dy - xhat * sum dy*xhat)
      const double k = double(gamma[c]) * invstd / M;
      const float a = float(k * M), bias = float(-k * sumDy), slope = float(-k * sumDyXhat * invstd);
      for (int n = 0; n < s_.n; ++n) {
        const int64_t base = (int64_t(n) * s_.c + c) * s_.hw;
        const float *xr = x + base, *dyr = dy + base, *yr = y ? y + base : dy + base;
        const float floor = y ? 0.0f : -INFINITY;
        float* dxr = dx + base;
#pragma omp simd
        for (int64_t i = 0; i < s_.hw; ++i) {
          const float d = dyr[i];
          const float g = yr[i] > floor ? d : 0.0f;
          dxr[i] = a * g + bias + slope * (xr[i] - mean);
        }
      }
    }
  }

 private:
  BnShape s_;
  bool fast_;
};

}  // namespace

std::unique_ptr<OpKernel> makeBatchNorm(const std::string& op, bool fast, const OpParams& p, const std::string& layer) {
  BnShape s = parse(p);
  if (op == "batchnorm-fwd") return std::make_unique<BatchNormForward>(s, fast, layer);
  return std::make_unique<BatchNormBackward>(s, fast, layer);
}

}  // namespace stepscope
