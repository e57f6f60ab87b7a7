// Batch normalization in training mode over NCHW activations, per channel c
// over the n*hw values, as PyTorch's BatchNorm2d: y = gamma * xhat + beta with
// xhat = (x - mean) * invstd, invstd = 1 / sqrt(var + eps), var biased; the
// running statistics take momentum * (mean, unbiased var). relu=1 fuses the
// ReLU: forward writes max(y, 0); backward masks dy where that output is 0.
//
//   batchnorm-fwd: x, gamma, beta, running_mean, running_var -> y, save_mean, save_invstd
//   batchnorm-bwd: x, gamma, save_mean, save_invstd, dy [, y if relu] -> dx, dgamma, dbeta
//
// blocked=1: activations in oneDNN's nChw16c layout (channel c of image n at
// ((n * C/16 + c/16) * HW + hw) * 16 + c % 16), so a step that keeps convs in
// that layout needs no reorders; the fast kernels then work on 16 channels at
// once, one vector lane each.
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"

#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

struct BnShape {
  int n, c;
  int64_t hw;
  double eps, momentum;
  bool relu;
  bool blocked;
  int64_t size() const { return int64_t(n) * c * hw; }
  int64_t count() const { return int64_t(n) * hw; }  // values per channel
  // Channel c of image n: its first value and the distance between values.
  int64_t rowStart(int img, int ch) const {
    return blocked ? ((int64_t(img) * (c / 16) + ch / 16) * hw) * 16 + ch % 16 : (int64_t(img) * c + ch) * hw;
  }
  int64_t stride() const { return blocked ? 16 : 1; }
};

constexpr int kLanes = 16;

// Per-channel statistics of a blocked tensor: sums over n and hw for the 16
// channels of block cb, accumulated per image in float lanes, across images in double.
void blockSums(const BnShape& s, int cb, const float* x, const float* mean, double* sum, double* sq) {
  for (int l = 0; l < kLanes; ++l) sum[l] = sq[l] = 0;
  for (int n = 0; n < s.n; ++n) {
    const float* p = x + s.rowStart(n, cb * kLanes);
    float a[kLanes] = {}, b[kLanes] = {};
    for (int64_t i = 0; i < s.hw; ++i) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const float v = p[i * kLanes + l];
        a[l] += v;
        const float d = mean ? v - mean[l] : 0.0f;
        b[l] += d * d;
      }
    }
    for (int l = 0; l < kLanes; ++l) sum[l] += a[l], sq[l] += b[l];
  }
}

BnShape parse(const OpParams& p) {
  BnShape s;
  s.n = p.integer("n", 1, 1 << 20);
  s.c = p.integer("c", 1, 1 << 20);
  s.hw = p.integer("hw", 1, 1 << 28);
  s.eps = p.number("eps", 1e-5);
  s.momentum = p.number("momentum", 0.1);
  s.relu = p.flag("relu");
  s.blocked = p.flag("blocked");
  if (s.blocked && s.c % 16 != 0) {
    throw Error("ERR_INVALID_ARG", "batchnorm: blocked (nChw16c) layout needs channels divisible by 16, got c=" + std::to_string(s.c));
  }
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
    if (s_.blocked) return runBlocked(b);
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
  // nChw16c: the reference walks each channel with stride 16 in double; the
  // fast kernel handles a block of 16 channels per vector step.
  void runBlocked(const std::vector<float*>& b) {
    const float *x = b[0], *gamma = b[1], *beta = b[2];
    float *runMean = b[3], *runVar = b[4], *y = b[5], *saveMean = b[6], *saveInvStd = b[7];
    const double M = double(s_.count());
    const int blocks = s_.c / kLanes;
#pragma omp parallel for schedule(static) if (fast_)
    for (int cb = 0; cb < blocks; ++cb) {
      double sum[kLanes], sq[kLanes];
      float mean[kLanes], scale[kLanes], shift[kLanes];
      if (fast_) {
        blockSums(s_, cb, x, nullptr, sum, sq);
        for (int l = 0; l < kLanes; ++l) mean[l] = float(sum[l] / M);
        blockSums(s_, cb, x, mean, sum, sq);
      } else {
        for (int l = 0; l < kLanes; ++l) {
          double total = 0, m2 = 0;
          for (int n = 0; n < s_.n; ++n)
            for (int64_t i = 0; i < s_.hw; ++i) total += x[s_.rowStart(n, cb * kLanes + l) + i * kLanes];
          const double m = total / M;
          for (int n = 0; n < s_.n; ++n)
            for (int64_t i = 0; i < s_.hw; ++i) {
              const double d = x[s_.rowStart(n, cb * kLanes + l) + i * kLanes] - m;
              m2 += d * d;
            }
          sum[l] = total;
          sq[l] = m2;
          mean[l] = float(m);
        }
      }
      for (int l = 0; l < kLanes; ++l) {
        const int c = cb * kLanes + l;
        const double m = sum[l] / M, var = sq[l] / M;
        const double invstd = 1.0 / std::sqrt(var + s_.eps);
        saveMean[c] = float(m);
        saveInvStd[c] = float(invstd);
        const double unbiased = M > 1 ? var * M / (M - 1) : var;
        runMean[c] = float((1 - s_.momentum) * runMean[c] + s_.momentum * m);
        runVar[c] = float((1 - s_.momentum) * runVar[c] + s_.momentum * unbiased);
        scale[l] = float(gamma[c] * invstd);
        shift[l] = float(beta[c] - gamma[c] * m * invstd);
      }
      const float floor = s_.relu ? 0.0f : -INFINITY;
      for (int n = 0; n < s_.n; ++n) {
        const int64_t start = s_.rowStart(n, cb * kLanes);
        for (int64_t i = 0; i < s_.hw; ++i) {
#pragma omp simd
          for (int l = 0; l < kLanes; ++l) {
            const float v = x[start + i * kLanes + l] * scale[l] + shift[l];
            y[start + i * kLanes + l] = v < floor ? floor : v;  // NaN passes
          }
        }
      }
    }
  }

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
    if (s_.blocked) return runBlocked(b);
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
  void runBlocked(const std::vector<float*>& b) {
    const float *x = b[0], *gamma = b[1], *saveMean = b[2], *saveInvStd = b[3], *dy = b[4];
    float *dx = b[5], *dgamma = b[6], *dbeta = b[7];
    const float* y = s_.relu ? b[8] : dy;  // without the ReLU nothing is masked (floor -inf)
    const float floor = s_.relu ? 0.0f : -INFINITY;
    const double M = double(s_.count());
    const int blocks = s_.c / kLanes;
#pragma omp parallel for schedule(static) if (fast_)
    for (int cb = 0; cb < blocks; ++cb) {
      float mean[kLanes], invstd[kLanes], a[kLanes], bias[kLanes], slope[kLanes];
      double sumDy[kLanes] = {}, sumDyXhat[kLanes] = {};
      for (int l = 0; l < kLanes; ++l) mean[l] = saveMean[cb * kLanes + l], invstd[l] = saveInvStd[cb * kLanes + l];
      for (int n = 0; n < s_.n; ++n) {
        const int64_t start = s_.rowStart(n, cb * kLanes);
        float ra[kLanes] = {}, rb[kLanes] = {};
        for (int64_t i = 0; i < s_.hw; ++i) {
#pragma omp simd
          for (int l = 0; l < kLanes; ++l) {
            const int64_t k = start + i * kLanes + l;
            const float d = dy[k];
            const float g = y[k] > floor ? d : 0.0f;
            ra[l] += g;
            rb[l] += g * (x[k] - mean[l]);
          }
        }
        for (int l = 0; l < kLanes; ++l) sumDy[l] += ra[l], sumDyXhat[l] += double(rb[l]) * invstd[l];
      }
      for (int l = 0; l < kLanes; ++l) {
        const int c = cb * kLanes + l;
        dbeta[c] = float(sumDy[l]);
        dgamma[c] = float(sumDyXhat[l]);
        const double k = double(gamma[c]) * invstd[l] / M;
        a[l] = float(k * M);
        bias[l] = float(-k * sumDy[l]);
        slope[l] = float(-k * sumDyXhat[l] * invstd[l]);
      }
      for (int n = 0; n < s_.n; ++n) {
        const int64_t start = s_.rowStart(n, cb * kLanes);
        for (int64_t i = 0; i < s_.hw; ++i) {
#pragma omp simd
          for (int l = 0; l < kLanes; ++l) {
            const int64_t k = start + i * kLanes + l;
            const float d = dy[k];
            const float g = y[k] > floor ? d : 0.0f;
            dx[k] = a[l] * g + bias[l] + slope[l] * (x[k] - mean[l]);
          }
        }
      }
    }
  }

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
