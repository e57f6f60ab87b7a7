// im2col and col2im for NCHW activations, and the row-segment gather that
// lets the GEMM pack im2col data straight from the activations (implicit
// im2col: the column matrix is never written out).
#include "cpu/im2col.h"

#include <algorithm>
#include <cstring>

namespace stepscope {

// Branch-free inner loops: zero the padded ends, copy (stride 1) or gather
// (stride 2) the valid middle of each row.
void im2col(const ConvShape& sh, const float* xImg, float* col, int64_t ldcol) {
  const int P = sh.p(), Q = sh.q(), st = sh.stride;
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < sh.c; ++c)
    for (int r = 0; r < sh.r; ++r)
      for (int s = 0; s < sh.s; ++s) {
        float* row = col + (int64_t(c * sh.r + r) * sh.s + s) * ldcol;
        const float* plane = xImg + int64_t(c) * sh.h * sh.w;
        int q0, q1;
        validOutputColumns(sh, s, &q0, &q1);
        for (int p = 0; p < P; ++p) {
          const int h = p * st - sh.pad + r;
          float* out = row + p * Q;
          if (h < 0 || h >= sh.h) {
            std::memset(out, 0, sizeof(float) * Q);
            continue;
          }
          std::memset(out, 0, sizeof(float) * q0);
          std::memset(out + q1, 0, sizeof(float) * (Q - q1));
          const float* in = plane + h * sh.w - sh.pad + s;
          if (st == 1) {
            std::memcpy(out + q0, in + q0, sizeof(float) * (q1 - q0));
          } else {
            for (int q = q0; q < q1; ++q) out[q] = in[q * st];
          }
        }
      }
}

// Adds col's contributions into dxImg (which the caller has zeroed).
void col2im(const ConvShape& sh, const float* col, int64_t ldcol, float* dxImg) {
  const int P = sh.p(), Q = sh.q(), st = sh.stride;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < sh.c; ++c) {  // each thread owns whole planes: no races
    float* plane = dxImg + int64_t(c) * sh.h * sh.w;
    for (int r = 0; r < sh.r; ++r)
      for (int s = 0; s < sh.s; ++s) {
        const float* row = col + (int64_t(c * sh.r + r) * sh.s + s) * ldcol;
        int q0, q1;
        validOutputColumns(sh, s, &q0, &q1);
        for (int p = 0; p < P; ++p) {
          const int h = p * st - sh.pad + r;
          if (h < 0 || h >= sh.h) continue;
          float* out = plane + h * sh.w - sh.pad + s;
          const float* in = row + p * Q;
#pragma omp simd
          for (int q = q0; q < q1; ++q) out[q * st] += in[q];
        }
      }
  }
}

void im2colSegment(const Im2colView& v, int row, int64_t j0, int len, float* out, int64_t outStride) {
  const ConvShape& sh = *v.shape;
  const int P = sh.p(), Q = sh.q(), st = sh.stride;
  const int64_t PQ = int64_t(P) * Q, xImage = int64_t(sh.c) * sh.h * sh.w;
  const int s = row % sh.s, r = (row / sh.s) % sh.r, c = row / (sh.s * sh.r);
  int q0, q1;
  validOutputColumns(sh, s, &q0, &q1);
  // Divide once, then walk output rows and images incrementally.
  const int64_t img = j0 / PQ;
  int p = int((j0 % PQ) / Q), q = int(j0 % Q);
  const float* plane = v.x + img * xImage + int64_t(c) * sh.h * sh.w;
  for (int remaining = len; remaining > 0;) {
    const int run = std::min(remaining, Q - q);  // stay within one output row
    const int h = p * st - sh.pad + r;
    if (h < 0 || h >= sh.h) {
      for (int t = 0; t < run; ++t) out[t * outStride] = 0.0f;
    } else {
      const float* in = plane + h * sh.w - sh.pad + s;
      const int lo = std::max(q, std::min(q0, q + run)), hi = std::max(lo, std::min(q1, q + run));
      int t = 0;
      for (; q + t < lo; ++t) out[t * outStride] = 0.0f;
      if (st == 1 && outStride == 1) {
        std::memcpy(out + t, in + q + t, sizeof(float) * (hi - lo));
        t = hi - q;
      } else {
        for (; q + t < hi; ++t) out[t * outStride] = in[(q + t) * st];
      }
      for (; t < run; ++t) out[t * outStride] = 0.0f;
    }
    out += run * outStride;
    remaining -= run;
    q = 0;
    if (++p == P) {
      p = 0;
      plane += xImage;
    }
  }
}

}  // namespace stepscope
