// The per-element arithmetic of the CUDA kernels for the step's other ops
// (ops_*.cu), shared with check/op_host_check.cc, which runs it on the host
// against the CPU reference kernels: the formulas, the max-pool's gather of
// gradients and the FC layer's cuBLAS operand layouts are checked on machines
// without a GPU; only the launches and the block reductions are not.
// Tensors are NCHW fp32 with the buffers of cpu/op_kernel.h, or NHWC where
// an op takes nhwc=1 (the activations of step --layout nhwc).
#pragma once

#include <cmath>

#include "core/bf16.h"
#include "core/host_device.h"
#include "cuda/label_check.h"

namespace stepscope {
namespace cudaops {

// ---- layouts: element (n, c, s) of an [N, C, S] activation (S = H * W).

SS_HD inline long long actIndex(bool nhwc, long long n, long long c, long long s, long long C, long long S) {
  return nhwc ? (n * S + s) * C + c : (n * C + c) * S + s;
}

struct ActPos {
  long long n, c, s;
};
// The position of memory index i (the inverse of actIndex).
SS_HD inline ActPos actPos(bool nhwc, long long i, long long C, long long S) {
  if (nhwc) return {i / C / S, i % C, i / C % S};
  return {i / S / C, i / S % C, i % S};
}

// Weights stay KCRS (as loaded, as SGD updates them); cuDNN's NHWC
// convolutions take them as KRSC: element (k, c, r) of [K, C, RS] there.
SS_HD inline long long krscIndex(long long k, long long c, long long rs, long long C, long long RS) { return (k * RS + rs) * C + c; }

// ---- batch norm: per channel, scale = gamma * invstd, shift = beta - gamma * mean * invstd.

SS_HD inline float bnForwardValue(float x, float scale, float shift, bool relu) {
  const float v = x * scale + shift;
  return relu && v < 0.0f ? 0.0f : v;  // NaN passes, as in PyTorch
}

// The batch statistics of a channel from its sums over m values (one pass,
// in double: the NHWC kernel sums x and x^2 together), and the running
// statistics' update (PyTorch's: the unbiased variance).
struct BnStats {
  double mean, var, invstd;
};
SS_HD inline BnStats bnStatsFromSums(double sum, double sumSq, double m, double eps) {
  const double mean = sum / m;
  double var = sumSq / m - mean * mean;
  if (var < 0) var = 0;  // rounding, when every value is the same
  return {mean, var, 1.0 / sqrt(var + eps)};
}
SS_HD inline void bnRunningUpdate(float* runMean, float* runVar, const BnStats& s, double m, double momentum) {
  const double unbiased = m > 1 ? s.var * m / (m - 1) : s.var;
  *runMean = float((1 - momentum) * *runMean + momentum * s.mean);
  *runVar = float((1 - momentum) * *runVar + momentum * unbiased);
}

// The gradient that reaches the batch norm: dy, masked where the fused ReLU's output was not positive.
SS_HD inline float bnGrad(float dy, float y, bool relu) { return !relu || y > 0.0f ? dy : 0.0f; }

// dx = gamma * invstd / M * (M * g - sum g - xhat * sum g*xhat), as a * g + bias + slope * (x - mean).
struct BnBackwardCoefficients {
  float a, bias, slope;
};
SS_HD inline BnBackwardCoefficients bnBackwardCoefficients(double gamma, double invstd, double m, double sumG, double sumGXhat) {
  const double k = gamma * invstd / m;
  return {float(k * m), float(-k * sumG), float(-k * sumGXhat * invstd)};
}

// ---- max-pool over planes (a plane: one channel of one image). A plane's
// element j is at plane[j * step]: step 1 in NCHW, C in NHWC. The argmax is
// the index in the plane (h * W + w) in both layouts.

struct PoolDims {
  int h, w, k, stride, pad, p, q;
  int step;
};

// Output o of a plane: the max of its window (padding never wins, a NaN wins
// and stays) and its index h * W + w, as a float.
template <typename T>  // float or Bf16 activations
SS_HD inline void maxpoolForwardAt(const PoolDims& d, const T* plane, int o, float* best, float* arg) {
  const int p = o / d.q, q = o % d.q;
  float b = 0.0f;
  int bi = -1;
  for (int r = 0; r < d.k; ++r) {
    const int h = p * d.stride - d.pad + r;
    if (h < 0 || h >= d.h) continue;
    for (int t = 0; t < d.k; ++t) {
      const int w = q * d.stride - d.pad + t;
      if (w < 0 || w >= d.w) continue;
      const float v = loadf(plane[(long long)(h * d.w + w) * d.step]);
      if (bi < 0 || v > b || (v != v && b == b)) b = v, bi = h * d.w + w;
    }
  }
  *best = b;
  *arg = float(bi);
}

// Input i of a plane: the sum of dy over the windows that contain it and
// chose it (a gather: no atomics, the same sum on every run). dy and argmax
// planes have the same step.
template <typename T>
SS_HD inline float maxpoolBackwardAt(const PoolDims& d, const T* dyPlane, const float* argPlane, int i) {
  const int h = i / d.w, w = i % d.w;
  // Windows p cover rows p*stride - pad .. p*stride - pad + k - 1.
  const int pLo = h + d.pad - d.k + 1 > 0 ? (h + d.pad - d.k + 1 + d.stride - 1) / d.stride : 0;
  const int pHi = (h + d.pad) / d.stride < d.p - 1 ? (h + d.pad) / d.stride : d.p - 1;
  const int qLo = w + d.pad - d.k + 1 > 0 ? (w + d.pad - d.k + 1 + d.stride - 1) / d.stride : 0;
  const int qHi = (w + d.pad) / d.stride < d.q - 1 ? (w + d.pad) / d.stride : d.q - 1;
  float sum = 0.0f;
  for (int p = pLo; p <= pHi; ++p)
    for (int q = qLo; q <= qHi; ++q)
      if (argPlane[(long long)(p * d.q + q) * d.step] == float(i)) sum += loadf(dyPlane[(long long)(p * d.q + q) * d.step]);
  return sum;
}

// ---- softmax cross-entropy, one row: its loss term (-log softmax[label]) and
// its gradient (softmax - onehot) / n. A label that is not a class index
// gives NaN for both (device code cannot throw: the loss kernel leaves the
// row for the host to report, label_check.h). A row is split over kLossLanes
// lanes (a warp per row on the device, a loop over lanes on the host): lane l
// takes classes l, l + kLossLanes, ...; the lanes' parts are then combined
// (max, then the sum of exponentials) and each lane writes its classes' gradient.
constexpr int kLossLanes = 32;
SS_HD inline float rowMaxPart(const float* row, int classes, int lane) {
  float mx = -INFINITY;
  for (int j = lane; j < classes; j += kLossLanes) mx = row[j] > mx ? row[j] : mx;
  return mx;
}
SS_HD inline double rowExpSumPart(const float* row, int classes, int lane, float mx) {
  double sum = 0;
  for (int j = lane; j < classes; j += kLossLanes) sum += exp(double(row[j]) - mx);
  return sum;
}
// With logSum = log(sum of exponentials) + max: the lane's classes' gradient.
SS_HD inline void rowGradPart(const float* row, int classes, int lane, double logSum, float label, int n, float* grad) {
  const bool ok = isClassIndex(label, classes);
  const int l = ok ? int(label) : -1;
  for (int j = lane; j < classes; j += kLossLanes) grad[j] = ok ? float((exp(double(row[j]) - logSum) - (j == l ? 1.0 : 0.0)) / n) : NAN;
}
SS_HD inline double rowLossTerm(const float* row, int classes, double logSum, float label) {
  return isClassIndex(label, classes) ? logSum - row[int(label)] : NAN;
}

// ---- SGD with momentum and weight decay (PyTorch semantics), one element.
SS_HD inline void sgdValues(float& param, float grad, float& buf, float lr, float momentum, float weightDecay) {
  const float d = grad + weightDecay * param;
  buf = momentum * buf + d;
  param -= lr * buf;
}
SS_HD inline void sgdAt(float* param, const float* grad, float* buf, long long i, float lr, float momentum, float weightDecay) {
  sgdValues(param[i], grad[i], buf[i], lr, momentum, weightDecay);
}

// ---- the local communicator: element i of the average of the gradient and its W-1 replicas.
SS_HD inline float allreduceLocalAt(const float* grad, const float* replicas, long long n, int workers, long long i) {
  float sum = grad[i];
  for (int r = 0; r < workers - 1; ++r) sum += replicas[r * n + i];
  return sum * (1.0f / float(workers));
}

// ---- the FC layer's GEMMs in cuBLAS's column-major terms. Row-major x [n, in]
// is column-major in x n (ld in); w [out, in] is in x out (ld in); y and dy
// [n, out] are out x n (ld out).
enum class FcOperand { X, W, Y, DY, DX, DW };
struct FcGemm {
  bool transA, transB;
  int m, n, k;
  FcOperand a, b, c;
  int lda, ldb, ldc;
};
// fwd: y = W'^T X'.  bwd: dX' = W' dY'; dW' = X' dY'^T.
inline FcGemm fcForwardGemm(int n, int in, int out) { return {true, false, out, n, in, FcOperand::W, FcOperand::X, FcOperand::Y, in, in, out}; }
inline FcGemm fcBackwardDataGemm(int n, int in, int out) { return {false, false, in, n, out, FcOperand::W, FcOperand::DY, FcOperand::DX, in, out, in}; }
inline FcGemm fcBackwardFilterGemm(int n, int in, int out) { return {false, true, in, out, n, FcOperand::X, FcOperand::DY, FcOperand::DW, in, out, in}; }

}  // namespace cudaops
}  // namespace stepscope
