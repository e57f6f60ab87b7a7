// Pooling over NCHW planes.
//   maxpool-fwd: x -> y, argmax (index h*W + w within the plane, stored as a
//                float: exact below 2^24); padding never wins
//   maxpool-bwd: dy, argmax -> dx (zeroed, then dy added at each argmax)
//   avgpool-fwd: x [n, c, hw] -> y [n, c] (global average)
//   avgpool-bwd: dy [n, c] -> dx [n, c, hw] = dy / hw
// blocked=1: x and dx in nChw16c (see batchnorm.cc); y, dy and argmax of the
// max-pool follow the same layout, the avg-pool's y and dy stay [n, c].
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

struct PoolShape {
  int n, c, h, w, k, stride, pad;
  bool blocked;
  int p() const { return (h + 2 * pad - k) / stride + 1; }
  int q() const { return (w + 2 * pad - k) / stride + 1; }
};

class MaxPool : public OpKernel {
 public:
  MaxPool(bool forward, bool fast, const PoolShape& s, const std::string& layer)
      : OpKernel("maxpool", fast ? "fast" : "reference", forward ? "fwd" : "bwd", layer), forward_(forward), fast_(fast),
        s_(s) {
    const int64_t in = int64_t(s.n) * s.c * s.h * s.w, out = int64_t(s.n) * s.c * s.p() * s.q();
    if (forward) buffers_ = {{"x", in}, {"y", out}, {"argmax", out}};
    else buffers_ = {{"dy", out}, {"argmax", out}, {"dx", in}};
    flops_ = forward ? double(out) * s.k * s.k : double(out);
  }

  void run(const std::vector<float*>& b) override {
    const int P = s_.p(), Q = s_.q();
    const int64_t planes = int64_t(s_.n) * s_.c, inPlane = int64_t(s_.h) * s_.w, outPlane = int64_t(P) * Q;
    // A plane is one channel of one image (NCHW) or 16 channels of one image
    // (nChw16c), whose values interleave with stride `lanes`.
    const int lanes = s_.blocked ? 16 : 1;
    const int64_t groups = planes / lanes, inGroup = inPlane * lanes, outGroup = outPlane * lanes;
    if (forward_) {
      const float* x = b[0];
      float *y = b[1], *arg = b[2];
#pragma omp parallel for schedule(static) if (fast_)
      for (int64_t g = 0; g < groups; ++g)
        for (int p = 0; p < P; ++p)
          for (int q = 0; q < Q; ++q)
            for (int l = 0; l < lanes; ++l) {
              float best = -std::numeric_limits<float>::infinity();
              int bestIndex = -1;
              for (int r = 0; r < s_.k; ++r) {
                const int h = p * s_.stride - s_.pad + r;
                if (h < 0 || h >= s_.h) continue;
                for (int t = 0; t < s_.k; ++t) {
                  const int w = q * s_.stride - s_.pad + t;
                  if (w < 0 || w >= s_.w) continue;
                  const float v = x[g * inGroup + (int64_t(h) * s_.w + w) * lanes + l];
                  // A NaN wins and stays, as in PyTorch: bad values must not vanish.
                  if (bestIndex < 0 || v > best || (v != v && best == best)) best = v, bestIndex = h * s_.w + w;
                }
              }
              y[g * outGroup + (int64_t(p) * Q + q) * lanes + l] = best;
              arg[g * outGroup + (int64_t(p) * Q + q) * lanes + l] = float(bestIndex);
            }
    } else {
      const float *dy = b[0], *arg = b[1];
      float* dx = b[2];
      bool bad = false;  // never throw inside an OpenMP region: that would terminate the process
#pragma omp parallel for schedule(static) if (fast_)
      for (int64_t g = 0; g < groups; ++g) {
        float* plane = dx + g * inGroup;
        std::memset(plane, 0, sizeof(float) * inGroup);
        for (int64_t o = 0; o < outPlane; ++o)
          for (int l = 0; l < lanes; ++l) {
            const float idx = arg[g * outGroup + o * lanes + l];
            if (!(idx >= 0 && idx < float(inPlane))) {
#pragma omp atomic write
              bad = true;
              continue;
            }
            plane[int64_t(idx) * lanes + l] += dy[g * outGroup + o * lanes + l];
          }
      }
      if (bad) throw Error("ERR_INVALID_ARG", "maxpool-bwd: an argmax lies outside its plane (not from maxpool-fwd?)");
    }
  }

 private:
  bool forward_, fast_;
  PoolShape s_;
};

class AvgPool : public OpKernel {
 public:
  AvgPool(bool forward, bool fast, int64_t planes, int64_t hw, bool blocked, const std::string& layer)
      : OpKernel("avgpool", fast ? "fast" : "reference", forward ? "fwd" : "bwd", layer), forward_(forward), fast_(fast),
        planes_(planes), hw_(hw), lanes_(blocked ? 16 : 1) {
    if (forward) buffers_ = {{"x", planes * hw}, {"y", planes}};
    else buffers_ = {{"dy", planes}, {"dx", planes * hw}};
    flops_ = double(planes * hw);
  }

  // Plane pl (image n, channel c) starts at `first(pl)`; its values are `lanes_` apart.
  int64_t first(int64_t pl) const { return (pl / lanes_) * hw_ * lanes_ + pl % lanes_; }

  void run(const std::vector<float*>& b) override {
    if (forward_) {
      const float* x = b[0];
      float* y = b[1];
#pragma omp parallel for schedule(static) if (fast_)
      for (int64_t pl = 0; pl < planes_; ++pl) {
        double sum = 0;
        for (int64_t i = 0; i < hw_; ++i) sum += x[first(pl) + i * lanes_];
        y[pl] = float(sum / double(hw_));
      }
    } else {
      const float* dy = b[0];
      float* dx = b[1];
#pragma omp parallel for schedule(static) if (fast_)
      for (int64_t pl = 0; pl < planes_; ++pl) {
        const float g = float(double(dy[pl]) / double(hw_));
        for (int64_t i = 0; i < hw_; ++i) dx[first(pl) + i * lanes_] = g;
      }
    }
  }

 private:
  bool forward_, fast_;
  int64_t planes_, hw_;
  int lanes_;
};

}  // namespace

std::unique_ptr<OpKernel> makePool(const std::string& op, bool fast, const OpParams& p, const std::string& layer) {
  const int n = p.integer("n", 1, 1 << 20), c = p.integer("c", 1, 1 << 20);
  const bool blocked = p.flag("blocked");
  if (blocked && c % 16 != 0) {
    throw Error("ERR_INVALID_ARG", op + ": blocked (nChw16c) layout needs channels divisible by 16, got c=" + std::to_string(c));
  }
  if (op == "avgpool-fwd" || op == "avgpool-bwd") {
    return std::make_unique<AvgPool>(op == "avgpool-fwd", fast, int64_t(n) * c, p.integer("hw", 1, 1 << 28), blocked, layer);
  }
  PoolShape s{n, c, p.integer("h", 1, 1 << 16), p.integer("w", 1, 1 << 16), p.integer("k", 1, 64, 3),
              p.integer("stride", 1, 64, 2), p.integer("pad", 0, 63, 1), blocked};
  if (s.pad >= s.k || s.p() < 1 || s.q() < 1) {
    throw Error("ERR_BAD_SHAPE", "maxpool: input " + std::to_string(s.h) + "x" + std::to_string(s.w) + " with kernel " +
                                     std::to_string(s.k) + " and pad " + std::to_string(s.pad) + " gives no output");
  }
  return std::make_unique<MaxPool>(op == "maxpool-fwd", fast, s, layer);
}

}  // namespace stepscope
