// fwd and bwd-data without packing (see conv_unpacked.h).
//
// Both passes are products out^T[positions x lanes] = col^T * W', where each
// output position's column of col is a fixed pattern of offsets into a
// zero-padded source tensor:
//   fwd:      out = y  (lanes k), source x,  steps (c, r, s):
//             y[n][k][p][q] += xpad[n][c][p*st + r][q*st + s] * w[k][c][r][s]
//   bwd-data: out = dx (lanes c), source dy, steps (k, r, s) over the taps
//             that reach dx[h][w] (for stride 2 that depends on the parity
//             of h and w: one "phase" per class, sub-pixel style):
//             dx[n][c][h][w] += dypad[n][k][(h + pad - r)/st][(w + pad - s)/st] * w[k][c][r][s]
// A tile is 8 positions of one phase x 32 lanes: per step, 8 broadcasts
// read in place (one pointer per position, one offset per step shared by
// all 8) and 2 loads of a 32-wide weight panel. The weights, small next to
// the column matrix, are the only packed operand; each dx/y element is
// written once, by one tile (no zeroing, no col2im).
#include "cpu/conv_unpacked.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "cpu/padded_planes.h"
#include "cpu/panel_transpose.h"
#include "cpu/workspace.h"

namespace stepscope {
namespace {

constexpr int kRows = 8;    // output positions per tile
constexpr int kLanes = 32;  // output channels per tile: 2 zmm

// out[i][l] = sum_t base[i][off[t]] * b[t][l] for i < 8, l < 32.
__attribute__((target("avx512f,fma"))) void tileAvx512(const float* const* base, const int64_t* off, int steps,
                                                        const float* b, float* out) {
  __m512 c[kRows][2];
  const float* a[kRows];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i) {
    c[i][0] = c[i][1] = _mm512_setzero_ps();
    a[i] = base[i];
  }
  for (int t = 0; t < steps; ++t, b += kLanes) {
    const int64_t o = off[t];
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const __m512 x = _mm512_set1_ps(a[i][o]);
      c[i][0] = _mm512_fmadd_ps(x, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(x, b1, c[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i) {
    _mm512_storeu_ps(out + i * kLanes, c[i][0]);
    _mm512_storeu_ps(out + i * kLanes + 16, c[i][1]);
  }
}

// Output positions sharing one reduction: per step, the offset into the
// padded source and the weight index of lane 0 (lane l adds l * laneWeightStride).
struct Phase {
  std::vector<int64_t> off;
  std::vector<int64_t> weight;
  int64_t firstPosition = 0, positions = 0;
  int64_t panels = 0;  // offset of its packed weight panels (kPanels x steps x 32)
};

class UnpackedConv : public ConvKernel {
 public:
  UnpackedConv(const ConvShape& shape, ConvPass pass, const std::string& layer)
      : ConvKernel(shape, pass, "im2col-gemm", layer) {
    if (pass == ConvPass::Forward)
      planForward();
    else
      planBackwardData();
    kPanels_ = (lanes_ + kLanes - 1) / kLanes;
    int64_t panelFloats = 0;
    for (Phase& ph : phases_) {
      ph.panels = panelFloats;
      panelFloats += int64_t(kPanels_) * int64_t(ph.off.size()) * kLanes;
    }
    for (int64_t ip = 0; ip < int64_t(phases_.size()); ++ip) {
      const Phase& ph = phases_[ip];
      for (int64_t first = 0; first < ph.positions; first += kRows)
        tiles_.push_back({int(ip), ph.firstPosition + first, int(std::min<int64_t>(kRows, ph.positions - first))});
    }
    // Strided bwd-data: the phases interleave in dx (every other element),
    // so tiles are taken in dx order: the phases of one region then fill the
    // same cache lines together, instead of each phase re-reading all of dx.
    auto region = [&](const Tile& t) { return posDst_[t.first] / rowSpan_; };
    std::stable_sort(tiles_.begin(), tiles_.end(), [&](const Tile& a, const Tile& b) { return region(a) < region(b); });
    // Weight panels that do not fit in L2 are swept one at a time over all
    // tiles (the tiles' source rows are re-read instead, which is less).
    panelOuter_ = panelFloats * sizeof(float) > 512 * 1024;
    source_ = allocate(size_t(src_.size()));
    src_.zero(source_.get());
    panels_ = allocate(size_t(std::max<int64_t>(panelFloats, 1)));
  }

  size_t workspaceBytes() const override { return workspace_ * sizeof(float); }
  std::string implementation() const override {
    return "own AVX-512 8x32 micro-kernel reading the column operand in place (zero-padded " +
           std::string(pass_ == ConvPass::Forward ? "x" : "dy") + ", no packing), " + std::to_string(phases_.size()) +
           " phase(s)";
  }

  void execute(const ConvTensors& t, KernelRecorder& recorder) override {
    recorder.run(info(), [&] {
      if (pass_ == ConvPass::Forward)
        run(t.x, t.w, t.y);
      else
        run(t.y, t.w, t.x);
    });
  }

 private:
  struct Tile {
    int phase;
    int64_t first;  // index into posSrc_/posDst_
    int count;
  };

  WorkspaceBuffer allocate(size_t count) {
    workspace_ += count;
    return allocateWorkspace(count);
  }

  void planForward() {
    const ConvShape& sh = shape_;
    const int P = sh.p(), Q = sh.q(), st = sh.stride;
    src_ = {int64_t(sh.n) * sh.c, sh.h, sh.w, sh.pad, sh.pad, (P - 1) * st + sh.r, (Q - 1) * st + sh.s};
    const int64_t image = sh.c * src_.plane(), crs = int64_t(sh.c) * sh.r * sh.s, PQ = int64_t(P) * Q;
    lanes_ = sh.k;
    laneOutStride_ = PQ;
    laneWeightStride_ = crs;
    Phase ph;
    for (int c = 0; c < sh.c; ++c)
      for (int r = 0; r < sh.r; ++r)
        for (int s = 0; s < sh.s; ++s) {
          ph.off.push_back(c * src_.plane() + int64_t(r) * src_.wn + s);
          ph.weight.push_back((int64_t(c) * sh.r + r) * sh.s + s);
        }
    for (int n = 0; n < sh.n; ++n)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          posSrc_.push_back(n * image + int64_t(p) * st * src_.wn + int64_t(q) * st);
          posDst_.push_back(n * sh.k * PQ + int64_t(p) * Q + q);
        }
    ph.positions = int64_t(posSrc_.size());
    phases_.push_back(std::move(ph));
  }

  // dx[h][w] with h = i*st + ph, w = j*st + pw gets tap (r, s) where
  // (ph + pad - r) and (pw + pad - s) are multiples of st, from dy row
  // i + (ph + pad - r)/st and column j + (pw + pad - s)/st.
  void planBackwardData() {
    const ConvShape& sh = shape_;
    const int P = sh.p(), Q = sh.q(), st = sh.stride, H = sh.h, W = sh.w;
    auto taps = [&](int phase, int extent) {  // (tap, shift) pairs of one phase along one axis
      std::vector<std::pair<int, int>> out;
      for (int r = 0; r < extent; ++r) {
        const int d = phase + sh.pad - r;
        if (((d % st) + st) % st == 0) out.push_back({r, d / st});
      }
      return out;
    };
    // Margins: the most negative shift before the data, enough rows after it.
    int mt = 0, ml = 0, hn = P, wn = Q;
    for (int ph = 0; ph < st; ++ph) {
      for (auto [r, d] : taps(ph, sh.r)) mt = std::max(mt, -d);
      for (auto [s, d] : taps(ph, sh.s)) ml = std::max(ml, -d);
    }
    for (int ph = 0; ph < st; ++ph) {
      const int rows = (H - ph + st - 1) / st, cols = (W - ph + st - 1) / st;
      for (auto [r, d] : taps(ph, sh.r)) hn = std::max(hn, rows - 1 + d + mt + 1);
      for (auto [s, d] : taps(ph, sh.s)) wn = std::max(wn, cols - 1 + d + ml + 1);
    }
    src_ = {int64_t(sh.n) * sh.k, P, Q, mt, ml, std::max(hn, mt + P), std::max(wn, ml + Q)};
    const int64_t image = sh.k * src_.plane(), crs = int64_t(sh.c) * sh.r * sh.s, HW = int64_t(H) * W;
    lanes_ = sh.c;
    laneOutStride_ = HW;
    rowSpan_ = int64_t(st) * W;
    laneWeightStride_ = int64_t(sh.r) * sh.s;
    for (int ph = 0; ph < st && ph < H; ++ph)
      for (int pw = 0; pw < st && pw < W; ++pw) {
        Phase phase;
        const auto rTaps = taps(ph, sh.r), sTaps = taps(pw, sh.s);
        for (int k = 0; k < sh.k; ++k)
          for (auto [r, dr] : rTaps)
            for (auto [s, ds] : sTaps) {
              phase.off.push_back(k * src_.plane() + int64_t(dr + mt) * src_.wn + (ds + ml));
              phase.weight.push_back(k * crs + int64_t(r) * sh.s + s);
            }
        phase.firstPosition = int64_t(posSrc_.size());
        const int rows = (H - ph + st - 1) / st, cols = (W - pw + st - 1) / st;
        for (int n = 0; n < sh.n; ++n)
          for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j) {
              posSrc_.push_back(n * image + int64_t(i) * src_.wn + j);
              posDst_.push_back(n * sh.c * HW + int64_t(i * st + ph) * W + (j * st + pw));
            }
        phase.positions = int64_t(posSrc_.size()) - phase.firstPosition;
        phases_.push_back(std::move(phase));
      }
  }

  void run(const float* src, const float* w, float* out) {
#pragma omp parallel
    {
      src_.copyData(src, source_.get());  // each is an omp for: threads share the copies
      packWeights(w);
      alignas(64) float acc[kRows * kLanes];
      const int64_t tiles = int64_t(tiles_.size());
      // Static halves, not dynamic chunks: each thread then keeps its own
      // positions' source rows (and output lines) from panel to panel in its
      // own L2; with dynamic chunks they moved between the cores and the
      // chunk borders shared output lines (res5a fwd 13.3 -> 9.7 ms).
      if (panelOuter_) {
        for (int j = 0; j < kPanels_; ++j) {
#pragma omp for schedule(static) nowait
          for (int64_t i = 0; i < tiles; ++i) computeTile(tiles_[i], j, out, acc);
        }
      } else {
#pragma omp for schedule(static)
        for (int64_t i = 0; i < tiles; ++i)
          for (int j = 0; j < kPanels_; ++j) computeTile(tiles_[i], j, out, acc);
      }
    }
  }

  void computeTile(const Tile& tile, int j, float* out, float* acc) const {
    const Phase& ph = phases_[tile.phase];
    const float* base[kRows];
    for (int i = 0; i < kRows; ++i) base[i] = source_.get() + posSrc_[tile.first + std::min(i, tile.count - 1)];
    const int64_t steps = int64_t(ph.off.size());
    const int lanes = std::min(kLanes, lanes_ - j * kLanes);
    tileAvx512(base, ph.off.data(), int(steps), panels_.get() + ph.panels + j * steps * kLanes, acc);
    for (int i = 0; i < tile.count; ++i) {
      float* o = out + posDst_[tile.first + i] + int64_t(j) * kLanes * laneOutStride_;
      for (int l = 0; l < lanes; ++l) o[l * laneOutStride_] = acc[i * kLanes + l];
    }
  }

  // panels[phase][j][t][l] = w[weight[t] + (j*32 + l) * laneWeightStride] (0 past the last lane).
  void packWeights(const float* w) {
    // Jobs ordered panel-major: the phases of one panel read the same lanes
    // of w one after the other, while they are in cache.
    const int64_t phases = int64_t(phases_.size()), jobs = phases * kPanels_;
#pragma omp for schedule(static)
    for (int64_t job = 0; job < jobs; ++job) {
      const Phase& ph = phases_[job % phases];
      const int j = int(job / phases);
      const int64_t steps = int64_t(ph.off.size());
      float* panel = panels_.get() + ph.panels + int64_t(j) * steps * kLanes;
      const int lanes = std::min(kLanes, lanes_ - j * kLanes);
      const float* from = w + int64_t(j) * kLanes * laneWeightStride_;
      if (pass_ == ConvPass::Forward)  // its steps are w's columns in order: weight[t] = t
        packTransposed(from, lanes, steps, panel);
      else
        packStepMajor(from, ph, lanes, steps, panel);
    }
  }

  // fwd: lane l's steps are one contiguous row of w (K*C*R*S floats apart).
  // Step by step, the 32 lanes' lines fell into 2 of L1's 64 sets (a row is
  // 288 lines at C*R*S = 4608) and were refetched every step.
  void packTransposed(const float* from, int lanes, int64_t steps, float* panel) const {
    for (int64_t t0 = 0; t0 < steps; t0 += 16) {
      const int n = int(std::min<int64_t>(16, steps - t0));
      transposeToPanel(from + t0, laneWeightStride_, lanes, n, panel + t0 * kLanes);
    }
  }

  // bwd-data: a step's 32 lanes lie R*S floats apart, within a few cache
  // lines of w, and the phase's other taps of the same k reuse them.
  void packStepMajor(const float* from, const Phase& ph, int lanes, int64_t steps, float* panel) const {
    for (int64_t t = 0; t < steps; ++t, panel += kLanes) {
      const float* tap = from + ph.weight[t];
      for (int l = 0; l < lanes; ++l) panel[l] = tap[l * laneWeightStride_];
      for (int l = lanes; l < kLanes; ++l) panel[l] = 0.0f;
    }
  }

  PaddedPlanes src_;  // the source (x or dy) and its zero margins
  int lanes_ = 0, kPanels_ = 0;
  int64_t laneOutStride_ = 0, laneWeightStride_ = 0;
  bool panelOuter_ = false;
  int64_t rowSpan_ = 1;  // dst elements per group of phase rows (tiles ordered by it)
  std::vector<Phase> phases_;
  std::vector<int64_t> posSrc_, posDst_;
  std::vector<Tile> tiles_;
  size_t workspace_ = 0;
  WorkspaceBuffer source_, panels_;
};

}  // namespace

std::unique_ptr<ConvKernel> makeUnpackedConv(const ConvShape& shape, ConvPass pass, const std::string& layer) {
  if (pass == ConvPass::BackwardFilter) return nullptr;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) return nullptr;
  return std::make_unique<UnpackedConv>(shape, pass, layer);
}

}  // namespace stepscope
