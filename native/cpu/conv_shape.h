// The shape of one 2-D convolution (NCHW activations, KCRS weights, square
// stride and symmetric padding, no dilation or groups: what ResNet-50 uses).
//
// Which tensors are read and written depends on the pass:
//   fwd:        y[n,k,p,q]  = sum_{c,r,s} x[n,c,h,w] * w[k,c,r,s]
//   bwd-data:   dx[n,c,h,w] = sum_{k,r,s} dy[n,k,p,q] * w[k,c,r,s]
//   bwd-filter: dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n,c,h,w]
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

namespace stepscope {

enum class ConvPass { Forward, BackwardData, BackwardFilter };

ConvPass parseConvPass(const std::string& name);  // throws ERR_INVALID_ARG
const char* convPassName(ConvPass pass);

struct ConvShape {
  int n = 0, c = 0, h = 0, w = 0;  // input
  int k = 0, r = 0, s = 0;         // filters
  int stride = 1, pad = 0;

  int p() const { return (h + 2 * pad - r) / stride + 1; }
  int q() const { return (w + 2 * pad - s) / stride + 1; }
  int64_t xSize() const { return int64_t(n) * c * h * w; }
  int64_t wSize() const { return int64_t(k) * c * r * s; }
  int64_t ySize() const { return int64_t(n) * k * p() * q(); }
  // Multiply-adds count twice; the same for every pass.
  double flops() const { return 2.0 * n * k * p() * q() * double(c) * r * s; }
  // Compulsory traffic: each tensor read or written once.
  double bytes() const { return 4.0 * double(xSize() + wSize() + ySize()); }
  // Throws ERR_BAD_SHAPE naming the bad field and what is allowed.
  void validate() const;
  std::string describe() const;
};

// Output columns q whose input column q*stride - pad + s lies inside the
// image: [*q0, *q1). Outside that range the filter tap s reads padding.
inline void validOutputColumns(const ConvShape& sh, int s, int* q0, int* q1) {
  const int Q = sh.q();
  const int lo = sh.pad - s;  // need q*stride >= lo
  *q0 = lo <= 0 ? 0 : std::min(Q, (lo + sh.stride - 1) / sh.stride);
  const int hi = sh.w + sh.pad - s;  // need q*stride < hi
  *q1 = hi <= 0 ? *q0 : std::max(*q0, std::min(Q, (hi + sh.stride - 1) / sh.stride));
}

}  // namespace stepscope
