// bwd-filter without packing the column matrix (see bwd_filter_unpacked.h).
//
// Why: in the packed GEMM (dW^T = col * dY^T, col gathered into MR-row
// panels) each gathered value takes part in only K multiply-adds; at K = 64
// the gather and interleave cost about as much as the FMAs (perf-notes v5).
// The micro-kernel's broadcasts read one scalar per tap per position anyway,
// so they can read it where it lies: tap (c, r, s) at output position
// (n, p, q) is xpad[n][c][p*stride + r][q*stride + s], i.e. a per-tap base
// pointer plus an offset shared by all taps. The zero-padded copy of x makes
// taps over the border read zeros. dY is transposed once into 32-wide
// k-panels (K x NPQ values, small next to CRS x NPQ).
//
// Work split: each thread owns a contiguous range of tap groups (rows of
// dW^T), over all images: no partial dW to sum, results are deterministic.
// Positions are taken in blocks of whole output rows so that a block's dY
// panels stay in L2 while all tap groups pass over them.
#include "cpu/bwd_filter_unpacked.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "cpu/padded_planes.h"
#include "cpu/panel_transpose.h"
#include "cpu/workspace.h"

namespace stepscope {
namespace {

constexpr int kTaps = 8;    // dW^T rows (filter taps) per tile
constexpr int kLanes = 32;  // dW^T columns (output channels) per tile: 2 zmm

// Accumulates, over `rows` output rows of Q positions, the 8 x 32 tile
// out[i][k] = sum_pos tap[i][rowOff[row] + q*stride] * dy[pos][k], where dy
// holds 32 values per position, positions in order. kStride 0: runtime stride.
template <int kStride>
__attribute__((target("avx512f,fma"))) void tileAvx512(const float* const* tap, const int64_t* rowOff, int rows, int Q,
                                                        int stride, const float* dy, float* out) {
  const int st = kStride > 0 ? kStride : stride;
  __m512 c[kTaps][2];
#pragma GCC unroll 8
  for (int i = 0; i < kTaps; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int row = 0; row < rows; ++row) {
    const float* a[kTaps];
#pragma GCC unroll 8
    for (int i = 0; i < kTaps; ++i) a[i] = tap[i] + rowOff[row];
    for (int q = 0; q < Q; ++q, dy += kLanes) {
      const __m512 b0 = _mm512_loadu_ps(dy);
      const __m512 b1 = _mm512_loadu_ps(dy + 16);
#pragma GCC unroll 8
      for (int i = 0; i < kTaps; ++i) {
        const __m512 x = _mm512_set1_ps(a[i][q * st]);
        c[i][0] = _mm512_fmadd_ps(x, b0, c[i][0]);
        c[i][1] = _mm512_fmadd_ps(x, b1, c[i][1]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kTaps; ++i) {
    _mm512_storeu_ps(out + i * kLanes, c[i][0]);
    _mm512_storeu_ps(out + i * kLanes + 16, c[i][1]);
  }
}

using TileFn = void (*)(const float* const*, const int64_t*, int, int, int, const float*, float*);

WorkspaceBuffer allocate(size_t count, size_t* total) {
  *total += count;
  return allocateWorkspace(count);
}

class UnpackedBackwardFilter : public ConvKernel {
 public:
  UnpackedBackwardFilter(const ConvShape& shape, const std::string& layer, TileFn tile)
      : ConvKernel(shape, ConvPass::BackwardFilter, "im2col-gemm", layer), tile_(tile) {
    const int P = shape.p(), Q = shape.q(), st = shape.stride;
    // Only the input rows and columns that some tap reads.
    xpad_ = {int64_t(shape.n) * shape.c, shape.h, shape.w, shape.pad, shape.pad, (P - 1) * st + shape.r,
             (Q - 1) * st + shape.s};
    const int64_t plane = xpad_.plane(), wn = xpad_.wn;
    xImage_ = plane * shape.c;
    crs_ = int64_t(shape.c) * shape.r * shape.s;
    groups_ = int((crs_ + kTaps - 1) / kTaps);
    kPanels_ = (shape.k + kLanes - 1) / kLanes;
    positions_ = int64_t(shape.n) * P * Q;

    xpadData_ = allocate(size_t(xpad_.size()), &workspace_);
    xpad_.zero(xpadData_.get());
    dyPanels_ = allocate(size_t(kPanels_) * positions_ * kLanes, &workspace_);

    // Tap t reads from xpad + tapOffset_[t] + rowOff_[row] + q * stride;
    // taps past CRS (the last group's padding) read tap 0 and are dropped.
    tapOffset_.assign(size_t(groups_) * kTaps, 0);
    for (int64_t t = 0; t < crs_; ++t) {
      const int64_t s = t % shape.s, r = (t / shape.s) % shape.r, c = t / (int64_t(shape.s) * shape.r);
      tapOffset_[t] = c * plane + r * wn + s;
    }
    for (int n = 0; n < shape.n; ++n)
      for (int p = 0; p < P; ++p) rowOff_.push_back(n * xImage_ + int64_t(p) * st * wn);

    // Position blocks: whole output rows, about kBlockFloats of dY per block
    // (L2), at least 512 positions so that short rows are not split finely.
    constexpr int64_t kBlockFloats = 128 * 1024;
    const int64_t target = std::clamp<int64_t>(kBlockFloats / (int64_t(kPanels_) * kLanes), 512, 4096);
    const int totalRows = shape.n * P;
    const int blocks = int(std::max<int64_t>(1, (positions_ + target - 1) / target));
    rowsPerBlock_ = (totalRows + blocks - 1) / blocks;
    if (blocks > 1) partial_ = allocate(size_t(groups_) * kTaps * kPanels_ * kLanes, &workspace_);
  }

  size_t workspaceBytes() const override { return workspace_ * sizeof(float); }
  std::string implementation() const override {
    return "own AVX-512 8x32 micro-kernel reading the column operand in place (zero-padded x, no packing), " +
           std::to_string(rowsPerBlock_ * shape_.q()) + " positions per block";
  }

  void execute(const ConvTensors& t, KernelRecorder& recorder) override {
    recorder.run(info(), [&] { run(t.x, t.w, t.y); });
  }

 private:
  void run(const float* x, float* dw, const float* dy) {
    const int P = shape_.p(), Q = shape_.q(), totalRows = shape_.n * P;
#pragma omp parallel
    {
      xpad_.copyData(x, xpadData_.get());  // each is an omp for: threads share the copies
      packOutputGradient(dy);
      const int threads = omp_get_num_threads(), me = omp_get_thread_num();
      const int gBegin = groups_ * me / threads, gEnd = groups_ * (me + 1) / threads;
      alignas(64) float acc[kTaps * kLanes];
      const float* tap[kTaps];
      for (int row0 = 0; row0 < totalRows; row0 += rowsPerBlock_) {
        const int rows = std::min(rowsPerBlock_, totalRows - row0);
        const bool first = row0 == 0, last = row0 + rows == totalRows;
        for (int g = gBegin; g < gEnd; ++g) {
          for (int i = 0; i < kTaps; ++i) tap[i] = xpadData_.get() + tapOffset_[size_t(g) * kTaps + i];
          for (int j = 0; j < kPanels_; ++j) {
            const float* dyBlock = dyPanels_.get() + (int64_t(j) * positions_ + int64_t(row0) * Q) * kLanes;
            if (last) prefetchDestination(g, j, dw);
            tile_(tap, rowOff_.data() + row0, rows, Q, shape_.stride, dyBlock, acc);
            float* saved = partial_ ? partial_.get() + (size_t(g) * kPanels_ + j) * kTaps * kLanes : nullptr;
            if (!first)
              for (int e = 0; e < kTaps * kLanes; ++e) acc[e] += saved[e];
            if (last)
              storeTransposed(acc, g, j, dw);
            else
              std::memcpy(saved, acc, sizeof(acc));
          }
        }
      }
    }
  }

  // dyPanels[j][pos][kk] = dy[n][j*32 + kk][p][q] (0 past K), pos = (n*P + p)*Q + q.
  void packOutputGradient(const float* dy) {
    const int K = shape_.k;
    const int64_t PQ = int64_t(shape_.p()) * shape_.q();
#pragma omp for collapse(2) schedule(static)
    for (int j = 0; j < kPanels_; ++j)
      for (int n = 0; n < shape_.n; ++n) {
        const float* in = dy + (int64_t(n) * K + j * kLanes) * PQ;
        float* out = dyPanels_.get() + (int64_t(j) * positions_ + n * PQ) * kLanes;
        const int lanes = std::min(kLanes, K - j * kLanes);
        for (int64_t p0 = 0; p0 < PQ; p0 += 16)
          transposeToPanel(in + p0, PQ, lanes, int(std::min<int64_t>(16, PQ - p0)), out + p0 * kLanes);
      }
  }

  // The tile's 32 rows of dw are written after its reduction: ask for their
  // lines now, so that the write does not wait for them (dw is 9 MB on res5).
  void prefetchDestination(int g, int j, float* dw) const {
    const int lanes = std::min(kLanes, shape_.k - j * kLanes);
    const float* base = dw + int64_t(j) * kLanes * crs_ + int64_t(g) * kTaps;
    for (int kk = 0; kk < lanes; ++kk) __builtin_prefetch(base + kk * crs_, 1);
  }

  // dw[k][t] = acc[t - 8g][k - 32j] for the taps and channels that exist.
  void storeTransposed(const float* acc, int g, int j, float* dw) const {
    const int taps = int(std::min<int64_t>(kTaps, crs_ - int64_t(g) * kTaps));
    const int lanes = std::min(kLanes, shape_.k - j * kLanes);
    float* base = dw + int64_t(j) * kLanes * crs_ + int64_t(g) * kTaps;
    for (int kk = 0; kk < lanes; ++kk)
      for (int i = 0; i < taps; ++i) base[kk * crs_ + i] = acc[i * kLanes + kk];
  }

  TileFn tile_;
  PaddedPlanes xpad_;  // x with its zero margins (only the rows and columns some tap reads)
  int64_t xImage_ = 0, crs_ = 0, positions_ = 0;
  int groups_ = 0, kPanels_ = 0, rowsPerBlock_ = 1;
  std::vector<int64_t> tapOffset_, rowOff_;
  size_t workspace_ = 0;
  WorkspaceBuffer xpadData_, dyPanels_, partial_;
};

}  // namespace

std::unique_ptr<ConvKernel> makeUnpackedBackwardFilter(const ConvShape& shape, const std::string& layer) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) return nullptr;
  const TileFn tile = shape.stride == 1 ? tileAvx512<1> : shape.stride == 2 ? tileAvx512<2> : tileAvx512<0>;
  return std::make_unique<UnpackedBackwardFilter>(shape, layer, tile);
}

}  // namespace stepscope
