// The index arithmetic of our CUDA convolution kernels, shared by the device
// code and by host_check.cc, which runs it on the host against a reference
// (so the gathers, scatters and cuBLAS operand layouts are checked on
// machines without a GPU; only the WMMA fragments and launches are not).
#pragma once

#include "core/host_device.h"

namespace stepscope {
namespace cudaconv {

struct Dims {
  int n, c, h, w, k, r, s, stride, pad, p, q;
};

// ---- direct: one output element each.

SS_HD inline float directForwardAt(const Dims& d, const float* x, const float* w, long long i) {
  const int q = int(i % d.q), p = int(i / d.q % d.p), k = int(i / ((long long)d.q * d.p) % d.k);
  const int n = int(i / ((long long)d.q * d.p * d.k));
  float acc = 0.f;
  for (int c = 0; c < d.c; ++c) {
    const float* xc = x + ((long long)n * d.c + c) * d.h * d.w;
    const float* wc = w + ((long long)k * d.c + c) * d.r * d.s;
    for (int r = 0; r < d.r; ++r) {
      const int h = p * d.stride - d.pad + r;
      if (h < 0 || h >= d.h) continue;
      for (int s = 0; s < d.s; ++s) {
        const int ww = q * d.stride - d.pad + s;
        if (ww < 0 || ww >= d.w) continue;
        acc += xc[h * d.w + ww] * wc[r * d.s + s];
      }
    }
  }
  return acc;
}

SS_HD inline float directBackwardDataAt(const Dims& d, const float* w, const float* dy, long long i) {
  const int ww = int(i % d.w), h = int(i / d.w % d.h), c = int(i / ((long long)d.w * d.h) % d.c);
  const int n = int(i / ((long long)d.w * d.h * d.c));
  float acc = 0.f;
  for (int r = 0; r < d.r; ++r) {
    const int ph = h + d.pad - r;  // = p * stride
    if (ph < 0 || ph % d.stride) continue;
    const int p = ph / d.stride;
    if (p >= d.p) continue;
    for (int s = 0; s < d.s; ++s) {
      const int qw = ww + d.pad - s;
      if (qw < 0 || qw % d.stride) continue;
      const int q = qw / d.stride;
      if (q >= d.q) continue;
      for (int k = 0; k < d.k; ++k) {
        acc += dy[(((long long)n * d.k + k) * d.p + p) * d.q + q] * w[(((long long)k * d.c + c) * d.r + r) * d.s + s];
      }
    }
  }
  return acc;
}

// Term t (over n, p, q) of the filter-gradient element e; 0 where x is padding.
SS_HD inline float directBackwardFilterTerm(const Dims& d, const float* x, const float* dy, long long e, long long t) {
  const int s = int(e % d.s), r = int(e / d.s % d.r), c = int(e / (d.s * d.r) % d.c), k = int(e / ((long long)d.s * d.r * d.c));
  const int pq = d.p * d.q;
  const int n = int(t / pq), p = int(t % pq) / d.q, q = int(t % pq) % d.q;
  const int h = p * d.stride - d.pad + r, ww = q * d.stride - d.pad + s;
  if (h < 0 || h >= d.h || ww < 0 || ww >= d.w) return 0.f;
  return dy[(((long long)n * d.k + k) * d.p + p) * d.q + q] * x[(((long long)n * d.c + c) * d.h + h) * d.w + ww];
}

// ---- im2col / col2im: col[n][c*R*S + r*S + s][p*Q + q].

SS_HD inline float im2colAt(const Dims& d, const float* x, long long i) {
  const long long pq = (long long)d.p * d.q, crs = (long long)d.c * d.r * d.s;
  const int q = int(i % d.q), p = int(i / d.q % d.p);
  const long long row = i / pq % crs;
  const int n = int(i / (pq * crs));
  const int s = int(row % d.s), r = int(row / d.s % d.r), c = int(row / (d.s * d.r));
  const int h = p * d.stride - d.pad + r, ww = q * d.stride - d.pad + s;
  return (h >= 0 && h < d.h && ww >= 0 && ww < d.w) ? x[(((long long)n * d.c + c) * d.h + h) * d.w + ww] : 0.f;
}

// Gathers (no atomics): dx element i sums the column entries that read it.
SS_HD inline float col2imAt(const Dims& d, const float* col, long long i) {
  const long long pq = (long long)d.p * d.q, crs = (long long)d.c * d.r * d.s;
  const int ww = int(i % d.w), h = int(i / d.w % d.h), c = int(i / ((long long)d.w * d.h) % d.c);
  const int n = int(i / ((long long)d.w * d.h * d.c));
  float acc = 0.f;
  for (int r = 0; r < d.r; ++r) {
    const int ph = h + d.pad - r;
    if (ph < 0 || ph % d.stride || ph / d.stride >= d.p) continue;
    for (int s = 0; s < d.s; ++s) {
      const int qw = ww + d.pad - s;
      if (qw < 0 || qw % d.stride || qw / d.stride >= d.q) continue;
      const long long row = ((long long)c * d.r + r) * d.s + s;
      acc += col[(n * crs + row) * pq + (ph / d.stride) * d.q + qw / d.stride];
    }
  }
  return acc;
}

// One column-major GEMM as cuBLAS takes it: C = alpha op(A) op(B) + beta C,
// batched with strides (batch 1 and strides 0 for a plain GEMM). Which
// operand is which tensor: a/b/c name x, w, y or the column matrix.
enum class Operand { X, W, Y, Col };
struct GemmCall {
  bool transA, transB;
  int m, n, k;
  Operand a, b, c;
  int lda, ldb, ldc;
  long long strideA, strideB, strideC;
  int batch;
  // bwd-filter runs one GEMM per image (offsets image * strideA/B), accumulating into C.
  bool perImageAccumulate;
};

// The cuBLAS calls of im2col-cublas, pass 0 = fwd, 1 = bwd-data, 2 = bwd-filter.
//   fwd:        Y_n (PQ x K, col-major)   = col_n (PQ x CRS) * W (CRS x K)
//   bwd-data:   dcol_n (PQ x CRS)         = dY_n (PQ x K) * W^T (K x CRS)
//   bwd-filter: dW (CRS x K)             += col_n^T (CRS x PQ) * dY_n (PQ x K)
inline GemmCall im2colGemm(int pass, const Dims& d) {
  const int PQ = d.p * d.q, CRS = d.c * d.r * d.s, K = d.k;
  const long long colStride = (long long)CRS * PQ, yStride = (long long)K * PQ;
  if (pass == 0) return {false, false, PQ, K, CRS, Operand::Col, Operand::W, Operand::Y, PQ, CRS, PQ, colStride, 0, yStride, d.n, false};
  if (pass == 1) return {false, true, PQ, CRS, K, Operand::Y, Operand::W, Operand::Col, PQ, CRS, PQ, yStride, 0, colStride, d.n, false};
  return {true, false, CRS, K, PQ, Operand::Col, Operand::Y, Operand::W, PQ, PQ, CRS, colStride, yStride, 0, d.n, true};
}

// ---- implicit GEMM: C[M][N] = sum_k A[m][k] B[k][n], operands gathered;
// C[m][n] is out()[outIndex(m, n)]. With split-K, each of `splits` blocks
// along z sums its chunk of k and adds it into a zeroed output.

// The k range [begin, end) of split z: chunks a multiple of `step` long.
SS_HD inline void splitRange(int K, int splits, int step, int z, int* begin, int* end) {
  int chunk = (K + splits - 1) / splits;
  chunk = (chunk + step - 1) / step * step;
  *begin = z * chunk < K ? z * chunk : K;
  *end = *begin + chunk < K ? *begin + chunk : K;
}

// The gathers are split in two, so that no division runs per element: what
// depends on the row m (or the column n) alone is decomposed once per thread
// (a thread keeps its rows and columns across the K steps: row(m), col(n)),
// what depends on kk once per K step (kA(kk), kB(kk)); aAt(row, kA) and
// bAt(kB, col) then only add and compare, and give the element's address,
// or nullptr where the operand is zero (padding, outside the problem: the
// pipelined kernel's copies zero-fill there). row() and col() say whether
// m < M (n < N); the kernel checks kk against its split's end. Offsets are
// 32-bit (fewer registers: the kernel refuses tensors of 2^31 elements or more).

// The operands' values (zeros where there is no element).
template <typename Problem>
SS_HD inline float gatherA(const Problem& prob, const typename Problem::Row& row, const typename Problem::KA& k) {
  const float* p = prob.aAt(row, k);
  return p ? *p : 0.f;
}
template <typename Problem>
SS_HD inline float gatherB(const Problem& prob, const typename Problem::KB& k, const typename Problem::Col& col) {
  const float* p = prob.bAt(k, col);
  return p ? *p : 0.f;
}

// Taps (the `implicit-gemm-tf32-along-m` kernel's A gathers, fwd and
// bwd-data): the A element (m, kk) is a + rowOff(m) + tapOff(kk) when the
// filter tap of kk is inside the tensor for row m, else zero. Which taps
// are inside depends on the row alone: a bit mask of the R*S taps per row,
// kept by the thread; what depends on kk alone (its offset and its tap's
// bit) comes from a per-layer table, one entry per kk, built on the host
// (fillTapTable). So a gather is a shift, an add and a copy: no compare
// against the tensor's edges, no division.
constexpr int kMaxTaps = 64;  // R*S bits in the mask (ResNet-50's largest filter: 7x7 = 49)
struct TapRow {
  int off;
  unsigned long long mask;  // bit r*S+s: tap (r, s) reads inside the tensor
};
struct alignas(8) Tap {  // one 8-byte load on the device
  int off;
  int bit;
};
SS_HD inline bool tapInside(const TapRow& row, const Tap& tap) { return (row.mask >> tap.bit) & 1ULL; }
// The mask of the R x S taps (r, s) with rowInside(r) and colInside(s).
template <typename RowInside, typename ColInside>
SS_HD inline unsigned long long tapMask(int R, int S, RowInside&& rowInside, ColInside&& colInside) {
  unsigned long long cols = 0;
  for (int s = 0; s < S; ++s)
    if (colInside(s)) cols |= 1ULL << s;
  unsigned long long mask = 0;
  for (int r = 0; r < R; ++r)
    if (rowInside(r)) mask |= cols << (r * S);
  return mask;
}
// A table entry: on the device one 8-byte read-only load (a warp reads one entry: a broadcast).
SS_HD inline Tap loadTap(const Tap* table, int kk) {
#ifdef __CUDA_ARCH__
  const int2 v = __ldg(reinterpret_cast<const int2*>(table) + kk);
  return {v.x, v.y};
#else
  return table[kk];
#endif
}
// The layer's table: K() entries, kk's part of each A element.
template <typename Problem>
void fillTapTable(const Problem& prob, Tap* table) {
  for (int kk = 0; kk < prob.K(); ++kk) table[kk] = prob.tap(kk);
}

struct ForwardProblem {  // M = N*P*Q, N = K, K = C*R*S
  static constexpr bool kOutAlongN = false;  // y[n][k][p][q]: contiguous along m
  static constexpr bool kHasTaps = true;     // A = x: contiguous along m (q) for stride 1
  Dims d;
  const float* x;
  const float* w;
  float* y;
  struct Row {  // output position m = (n, p, q): image n's x, the window's top-left
    int base;
    int h0, w0;
    bool valid;
  };
  struct KA {  // kk = (c, r, s): channel c's plane, the tap
    int off;
    int r, s;
  };
  struct Col {  // filter n's weights
    int base;
    bool valid;
  };
  struct KB {
    int kk;
  };
  SS_HD int M() const { return d.n * d.p * d.q; }
  SS_HD int N() const { return d.k; }
  SS_HD int K() const { return d.c * d.r * d.s; }
  SS_HD Row row(int m) const {
    if (m >= M()) return {0, 0, 0, false};
    const int q = m % d.q, p = m / d.q % d.p, n = m / (d.q * d.p);
    return {n * d.c * d.h * d.w, p * d.stride - d.pad, q * d.stride - d.pad, true};
  }
  SS_HD KA kA(int kk) const {
    const int s = kk % d.s, r = kk / d.s % d.r, c = kk / (d.s * d.r);
    return {c * d.h * d.w, r, s};
  }
  SS_HD const float* aAt(const Row& row, const KA& k) const {
    const int h = row.h0 + k.r, ww = row.w0 + k.s;
    if (!row.valid || h < 0 || h >= d.h || ww < 0 || ww >= d.w) return nullptr;
    return x + (row.base + k.off + h * d.w + ww);  // summed in 32 bits, one 64-bit add
  }
  // Taps: row m's window corner (may lie outside x: the mask keeps the gathers inside), kk = (c, r, s).
  SS_HD TapRow tapRow(int m) const {
    if (m >= M()) return {0, 0ULL};
    const Row rw = row(m);
    const unsigned long long mask = tapMask(d.r, d.s, [&](int r) { return rw.h0 + r >= 0 && rw.h0 + r < d.h; },
                                            [&](int s) { return rw.w0 + s >= 0 && rw.w0 + s < d.w; });
    return {rw.base + rw.h0 * d.w + rw.w0, mask};
  }
  SS_HD Tap tap(int kk) const {
    const KA k = kA(kk);
    return {k.off + k.r * d.w + k.s, k.r * d.s + k.s};
  }
  SS_HD const float* aTapAt(const TapRow& row, const Tap& t) const { return tapInside(row, t) ? x + (row.off + t.off) : nullptr; }
  SS_HD Col col(int n) const { return {n * K(), n < N()}; }
  SS_HD KB kB(int kk) const { return {kk}; }
  SS_HD const float* bAt(const KB& k, const Col& c) const { return c.valid ? w + (c.base + k.kk) : nullptr; }
  SS_HD float* out() const { return y; }
  SS_HD long long outIndex(int m, int col) const {
    const int pq = d.p * d.q;
    return ((long long)(m / pq) * d.k + col) * pq + m % pq;
  }
};

struct BackwardDataProblem {  // M = N*H*W, N = C, K = K*R*S
  static constexpr bool kOutAlongN = false;  // dx[n][c][h][w]: contiguous along m
  static constexpr bool kHasTaps = true;     // A = dy: contiguous along m (w) for stride 1
  Dims d;
  float* dx;
  const float* w;
  const float* dy;
  struct Row {  // input position m = (n, h, w): image n's dy
    int base;
    int h, w;
    bool valid;
  };
  struct KA {  // kk = (k, r, s): output channel k's plane, the tap
    int off;
    int r, s;
  };
  struct Col {  // input channel c
    int base;
    bool valid;
  };
  struct KB {  // w[k][c][r][s] without the channel: k*C*R*S + r*S + s
    int off;
  };
  SS_HD int M() const { return d.n * d.h * d.w; }
  SS_HD int N() const { return d.c; }
  SS_HD int K() const { return d.k * d.r * d.s; }
  SS_HD Row row(int m) const {
    if (m >= M()) return {0, 0, 0, false};
    const int ww = m % d.w, h = m / d.w % d.h, n = m / (d.w * d.h);
    return {n * d.k * d.p * d.q, h, ww, true};
  }
  SS_HD KA kA(int kk) const {
    const int s = kk % d.s, r = kk / d.s % d.r, k = kk / (d.s * d.r);
    return {k * d.p * d.q, r, s};
  }
  SS_HD const float* aAt(const Row& row, const KA& k) const {
    int ph = row.h + d.pad - k.r, qw = row.w + d.pad - k.s;  // = p * stride, q * stride
    if (!row.valid || ph < 0 || qw < 0) return nullptr;
    if (d.stride != 1) {
      if (ph % d.stride || qw % d.stride) return nullptr;
      ph /= d.stride;
      qw /= d.stride;
    }
    if (ph >= d.p || qw >= d.q) return nullptr;
    return dy + (row.base + k.off + ph * d.q + qw);
  }
  // Taps: row m = (n, h, w) reads dy at (p, q) = ((h + pad - r) / stride, (w + pad - s) / stride)
  // where that divides; there (h + pad - r) / stride = (h + pad) / stride - r / stride, so
  // the row's part is dy's position at ((h + pad) / stride, (w + pad) / stride) and kk = (k, r, s)'s
  // is k's plane less (r / stride, s / stride).
  SS_HD TapRow tapRow(int m) const {
    if (m >= M()) return {0, 0ULL};
    const Row rw = row(m);
    auto inside = [&](int at, int tap, int size) {
      const int o = at + d.pad - tap;  // = output position * stride
      return o >= 0 && o % d.stride == 0 && o / d.stride < size;
    };
    const unsigned long long mask = tapMask(d.r, d.s, [&](int r) { return inside(rw.h, r, d.p); }, [&](int s) { return inside(rw.w, s, d.q); });
    return {rw.base + (rw.h + d.pad) / d.stride * d.q + (rw.w + d.pad) / d.stride, mask};
  }
  SS_HD Tap tap(int kk) const {
    const KA k = kA(kk);
    return {k.off - k.r / d.stride * d.q - k.s / d.stride, k.r * d.s + k.s};
  }
  SS_HD const float* aTapAt(const TapRow& row, const Tap& t) const { return tapInside(row, t) ? dy + (row.off + t.off) : nullptr; }
  SS_HD Col col(int n) const { return {n * d.r * d.s, n < N()}; }
  SS_HD KB kB(int kk) const {
    const int s = kk % d.s, r = kk / d.s % d.r, k = kk / (d.s * d.r);
    return {k * d.c * d.r * d.s + r * d.s + s};
  }
  SS_HD const float* bAt(const KB& k, const Col& c) const { return c.valid ? w + (k.off + c.base) : nullptr; }
  SS_HD float* out() const { return dx; }
  SS_HD long long outIndex(int m, int col) const {
    const int hw = d.h * d.w;
    return ((long long)(m / hw) * d.c + col) * hw + m % hw;
  }
};

struct BackwardFilterProblem {  // M = K, N = C*R*S, K = N*P*Q
  static constexpr bool kOutAlongN = true;  // dw[k][c][r][s]: contiguous along n
  static constexpr bool kHasTaps = false;   // A = dy: contiguous along kk (q), gathered along kk
  Dims d;
  const float* x;
  float* dw;
  const float* dy;
  struct Row {  // output channel m's plane within an image of dy
    int base;
    bool valid;
  };
  struct KA {  // kk = (n, p, q): image n's dy, the position
    int off;
  };
  struct Col {  // n = (c, r, s): channel c's plane of x, the tap
    int base;
    int r, s;
    bool valid;
  };
  struct KB {  // image n's x, the window's top-left at (p, q)
    int off;
    int h0, w0;
  };
  SS_HD int M() const { return d.k; }
  SS_HD int N() const { return d.c * d.r * d.s; }
  SS_HD int K() const { return d.n * d.p * d.q; }
  SS_HD Row row(int m) const { return {m * d.p * d.q, m < M()}; }
  SS_HD KA kA(int kk) const {
    const int pq = d.p * d.q;
    return {kk / pq * d.k * pq + kk % pq};
  }
  SS_HD const float* aAt(const Row& row, const KA& k) const { return row.valid ? dy + (row.base + k.off) : nullptr; }
  SS_HD Col col(int n) const {
    if (n >= N()) return {0, 0, 0, false};
    const int s = n % d.s, r = n / d.s % d.r, c = n / (d.s * d.r);
    return {c * d.h * d.w, r, s, true};
  }
  SS_HD KB kB(int kk) const {
    const int q = kk % d.q, p = kk / d.q % d.p, n = kk / (d.q * d.p);
    return {n * d.c * d.h * d.w, p * d.stride - d.pad, q * d.stride - d.pad};
  }
  SS_HD const float* bAt(const KB& k, const Col& c) const {
    const int h = k.h0 + c.r, ww = k.w0 + c.s;
    if (!c.valid || h < 0 || h >= d.h || ww < 0 || ww >= d.w) return nullptr;
    return x + (k.off + c.base + h * d.w + ww);
  }
  SS_HD float* out() const { return dw; }
  SS_HD long long outIndex(int m, int col) const { return (long long)m * N() + col; }
};

}  // namespace cudaconv
}  // namespace stepscope
