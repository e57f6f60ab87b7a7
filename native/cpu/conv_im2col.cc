// Conv variants `im2col-gemm` (our own GEMM, gemm.cc) and `im2col-blas`
// (OpenBLAS sgemm): each pass becomes one matrix product per group of images.
//   fwd:        Y[K x G*PQ]      = W[K x CRS] * col[CRS x G*PQ]
//   bwd-data:   dcol[CRS x G*PQ] = W^T[CRS x K] * dY[K x G*PQ], then col2im
//   bwd-filter: dW^T[CRS x K]   += col[CRS x G*PQ] * dY^T[G*PQ x K]   (own GEMM)
//               dW[K x CRS]     += dY[K x G*PQ] * col^T[G*PQ x CRS]   (OpenBLAS)
// With our GEMM, col is implicit in fwd and bwd-filter: the GEMM's packing
// gathers it from the activations (im2colSegment), so it is never written
// out. bwd-filter puts col on the A side so that its packing reads rows
// contiguously; each thread's dW^T is transposed and summed at the end.
// Images are grouped (G > 1) when one image's PQ is too narrow for the GEMM
// to run well (the 7x7 and 14x14 layers); 1x1 stride-1 layers with G = 1 use
// the activations in place.
// On CPUs with AVX-512, layers with R or S > 1 take the unpacked kernels
// instead (see makeIm2colConv at the end): the same products with the column
// operand read in place from a zero-padded copy, nothing packed but the
// small operand.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include <omp.h>

#include "core/error.h"
#include "cpu/bwd_filter_unpacked.h"
#include "cpu/conv_kernel.h"
#include "cpu/conv_unpacked.h"
#include "cpu/gemm.h"
#include "cpu/im2col.h"

#ifdef STEPSCOPE_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace stepscope {
namespace {

#ifdef STEPSCOPE_HAVE_OPENBLAS
// How a strided operand (rows x cols, element (i, j) at i*rs + j*cs) is
// handed to row-major BLAS: "no transpose" needs unit column stride and a
// leading dimension >= cols, "transpose" unit row stride and one >= rows.
// A dimension of 1 leaves its stride free (res5 at 32 px has 1x1 outputs,
// so a K of 1), and BLAS still checks the leading dimension: pick one it takes.
struct BlasLayout {
  bool trans;
  int ld;
};
BlasLayout blasLayout(const GemmOperand& op, int rows, int cols, const char* name) {
  if (op.cs == 1 || cols == 1) {
    const int64_t ld = rows == 1 ? std::max(1, cols) : op.rs;
    if (ld >= std::max(1, cols)) return {false, int(ld)};
  }
  if (op.rs == 1 || rows == 1) {
    const int64_t ld = cols == 1 ? std::max(1, rows) : op.cs;
    if (ld >= std::max(1, rows)) return {true, int(ld)};
  }
  throw Error("ERR_INTERNAL", std::string("im2col-blas: operand ") + name + " (" + std::to_string(rows) + " x " + std::to_string(cols) +
                                  ", strides " + std::to_string(op.rs) + ", " + std::to_string(op.cs) + ") has no BLAS layout");
}
#endif

constexpr int kMinGemmColumns = 768;

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Workspace = std::unique_ptr<float, AlignedFree>;

Workspace allocate(size_t count) {
  if (count == 0) return Workspace(nullptr);
  Workspace w(static_cast<float*>(std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64)));
  if (!w) throw Error("ERR_OUT_OF_MEMORY", "im2col: could not allocate " + std::to_string(count * 4) + " bytes");
  return w;
}

class Im2colConv : public ConvKernel {
 public:
  Im2colConv(const ConvShape& shape, ConvPass pass, const std::string& layer, bool useBlas)
      : ConvKernel(shape, pass, useBlas ? "im2col-blas" : "im2col-gemm", layer), useBlas_(useBlas) {
    const int64_t PQ = pq();
    const int threads = omp_get_max_threads();
    // Enough columns per GEMM, and (for our GEMM) at least one group per
    // thread, so that threads can take whole groups: no barriers inside a
    // GEMM, no thin parallel loops. OpenBLAS runs its own threads instead.
    const int64_t byColumns = (kMinGemmColumns + PQ - 1) / PQ;
    const int64_t perThread = useBlas ? shape.n : std::max(1, shape.n / threads);
    group_ = int(std::max<int64_t>(1, std::min<int64_t>({byColumns, perThread, int64_t(shape.n)})));
    // bwd-filter of the 7x7 outputs: one GEMM over every image, threaded
    // inside. Per-thread groups reduced over only 4 x 49 columns each, so
    // every thread streamed the whole 9 MB dW through its K-blocks and the
    // partials were summed after (measured 8-15% slower, docs/perf-notes.md v6).
    if (!useBlas && pass == ConvPass::BackwardFilter && shape.q() < 14) group_ = shape.n;
    groups_ = (shape.n + group_ - 1) / group_;
    workers_ = (!useBlas && groups_ >= threads) ? threads : 1;
    const bool direct1x1 = shape.r == 1 && shape.s == 1 && shape.stride == 1 && shape.pad == 0;
    colInPlace_ = direct1x1 && group_ == 1;
    // Implicit col pays in fwd, and in bwd-filter unless output rows are so
    // short (7x7) that gathering A row segments costs more than im2col
    // (measured, docs/perf-notes.md v4).
    implicitCol_ = !useBlas && (pass == ConvPass::Forward || (pass == ConvPass::BackwardFilter && shape.q() >= 14));
    const bool needsCol = !colInPlace_ && !implicitCol_;
    const bool transposedPartials = implicitCol_ && pass == ConvPass::BackwardFilter;
    scratch_.resize(workers_);
    auto take = [&](Workspace& slot, size_t count) {
      slot = allocate(count);
      workspace_ += count;
    };
    for (int t = 0; t < workers_; ++t) {
      Scratch& sc = scratch_[t];
      if (needsCol) take(sc.col, size_t(crs()) * group_ * PQ);
      if (group_ > 1) take(sc.tmp, size_t(shape.k) * group_ * PQ);
      if (transposedPartials || (t > 0 && pass == ConvPass::BackwardFilter)) take(sc.partial, size_t(shape.k) * crs());
    }
  }

  size_t workspaceBytes() const override { return workspace_ * sizeof(float); }
  std::string implementation() const override {
    return std::string(useBlas_ ? "OpenBLAS sgemm" : std::string("own sgemm, ") + sgemmKernelName()) + ", " +
           std::to_string(group_) + " image(s) per GEMM, " +
           (workers_ > 1 ? std::to_string(workers_) + " threads on separate groups" : "threaded GEMM") +
           (colInPlace_ ? ", no im2col" : implicitCol_ ? ", implicit im2col in the GEMM's packing" : "");
  }

  // The forward product alone, untimed (used by the transposed bwd-data below).
  void forwardUntimed(const float* x, const float* w, float* y) { forward(x, w, y); }

  void execute(const ConvTensors& t, KernelRecorder& recorder) override {
    recorder.run(info(), [&] {
      switch (pass_) {
        case ConvPass::Forward: forward(t.x, t.w, t.y); break;
        case ConvPass::BackwardData: backwardData(t.x, t.w, t.y); break;
        case ConvPass::BackwardFilter: backwardFilter(t.x, t.w, t.y); break;
      }
    });
  }

 private:
  struct Scratch {
    Workspace col, tmp, partial;
  };

  void gemm(int M, int N, int K, const GemmOperand& A, const GemmOperand& B, float beta, float* C, int64_t ldc) {
#ifdef STEPSCOPE_HAVE_OPENBLAS
    if (useBlas_) {
      const BlasLayout a = blasLayout(A, M, K, "A"), b = blasLayout(B, K, N, "B");
      cblas_sgemm(CblasRowMajor, a.trans ? CblasTrans : CblasNoTrans, b.trans ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A.data, a.ld,
                  B.data, b.ld, beta, C, int(M == 1 ? std::max<int64_t>(ldc, std::max(1, N)) : ldc));  // one row: its stride is free
      return;
    }
#endif
    sgemm(M, N, K, A, B, beta, C, ldc, workers_ > 1 ? 1 : 0);
  }

  // Calls body(worker, n0, g) for every group of images: on one thread
  // (whose GEMM is threaded) or with each worker thread taking whole groups.
  template <typename Body>
  void forEachGroup(Body&& body) {
    if (workers_ == 1) {
      for (int n0 = 0; n0 < shape_.n; n0 += group_) body(0, n0, std::min(group_, shape_.n - n0));
      return;
    }
    // An exception must not leave an OpenMP region (that terminates the
    // process): the first one is kept and thrown after it.
    std::exception_ptr failure;
#pragma omp parallel num_threads(workers_)
    {
      const int t = omp_get_thread_num();
      try {
        for (int gi = t; gi < groups_; gi += workers_) {
          const int n0 = gi * group_;
          body(t, n0, std::min(group_, shape_.n - n0));
        }
      } catch (...) {
#pragma omp critical(stepscope_conv_group_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
  }

  int64_t pq() const { return int64_t(shape_.p()) * shape_.q(); }
  int64_t crs() const { return int64_t(shape_.c) * shape_.r * shape_.s; }
  int64_t xImage() const { return int64_t(shape_.c) * shape_.h * shape_.w; }
  int64_t yImage() const { return int64_t(shape_.k) * pq(); }

  // dy of images [n0, n0+g) as one K x g*PQ matrix (gathered when g > 1).
  const float* dyMatrix(Scratch& sc, const float* dy, int n0, int g, int64_t* ld) {
    if (group_ == 1) {
      *ld = pq();
      return dy + n0 * yImage();
    }
    gatherImages(dy, sc.tmp.get(), n0, g);
    *ld = g * pq();
    return sc.tmp.get();
  }

  // The column matrix of images [n0, n0+g): in place (1x1/1, one image),
  // implicit (our GEMM gathers it while packing) or written by im2col (OpenBLAS).
  GemmOperand colOperand(Scratch& sc, const float* x, int n0, int g, Im2colView* view) {
    const int64_t PQ = pq();
    if (colInPlace_) return GemmOperand::strided(x + n0 * xImage(), PQ, 1);
    if (implicitCol_) {
      *view = Im2colView{&shape_, x + n0 * xImage()};
      return GemmOperand::implicit(view);
    }
    for (int i = 0; i < g; ++i) im2col(shape_, x + (n0 + i) * xImage(), sc.col.get() + i * PQ, g * PQ);
    return GemmOperand::strided(sc.col.get(), g * PQ, 1);
  }

  void forward(const float* x, const float* w, float* y) {
    const int64_t PQ = pq();
    forEachGroup([&](int t, int n0, int g) {
      Scratch& sc = scratch_[t];
      Im2colView view;
      const GemmOperand col = colOperand(sc, x, n0, g, &view);
      float* out = group_ == 1 ? y + n0 * yImage() : sc.tmp.get();
      gemm(shape_.k, int(g * PQ), int(crs()), GemmOperand::strided(w, crs(), 1), col, 0.0f, out, g * PQ);
      if (group_ > 1) scatterImages(sc.tmp.get(), y, n0, g);
    });
  }

  void backwardData(float* dx, const float* w, const float* dy) {
    const int64_t PQ = pq();
    forEachGroup([&](int t, int n0, int g) {
      Scratch& sc = scratch_[t];
      int64_t ldDy;
      const float* dyGroup = dyMatrix(sc, dy, n0, g, &ldDy);
      if (colInPlace_) {  // dx is dcol itself
        gemm(int(crs()), int(PQ), shape_.k, GemmOperand::strided(w, 1, crs()), GemmOperand::strided(dyGroup, ldDy, 1),
             0.0f, dx + n0 * xImage(), PQ);
        return;
      }
      const int64_t ld = g * PQ;
      gemm(int(crs()), int(ld), shape_.k, GemmOperand::strided(w, 1, crs()), GemmOperand::strided(dyGroup, ldDy, 1),
           0.0f, sc.col.get(), ld);
      for (int i = 0; i < g; ++i) {
        float* dxImg = dx + (n0 + i) * xImage();
        std::memset(dxImg, 0, sizeof(float) * xImage());
        col2im(shape_, sc.col.get() + i * PQ, ld, dxImg);
      }
    });
  }

  // Each worker sums its groups into its own partial (dW^T with our GEMM,
  // dW with OpenBLAS, where worker 0 writes dw itself); the partials are then
  // added in a fixed order, so results are reproducible.
  void backwardFilter(const float* x, float* dw, const float* dy) {
    std::vector<char> started(workers_, 0);
    const int64_t CRS = crs(), K = shape_.k;
    forEachGroup([&](int t, int n0, int g) {
      Scratch& sc = scratch_[t];
      int64_t ldDy;
      const float* dyGroup = dyMatrix(sc, dy, n0, g, &ldDy);
      Im2colView view;
      const GemmOperand col = colOperand(sc, x, n0, g, &view);
      const float beta = started[t] ? 1.0f : 0.0f;
      if (implicitCol_) {
        gemm(int(CRS), int(K), int(g * pq()), col, GemmOperand::strided(dyGroup, 1, ldDy), beta, sc.partial.get(), K);
      } else {
        float* partial = t == 0 ? dw : sc.partial.get();
        gemm(int(K), int(CRS), int(g * pq()), GemmOperand::strided(dyGroup, ldDy, 1),
             GemmOperand::strided(col.data, col.cs, col.rs), beta, partial, CRS);
      }
      started[t] = 1;
    });
    if (implicitCol_) {  // dw = sum of the dW^T partials, transposed in cache-sized tiles
      constexpr int64_t kTile = 64;
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t k0 = 0; k0 < K; k0 += kTile)
        for (int64_t i0 = 0; i0 < CRS; i0 += kTile)
          for (int64_t k = k0; k < std::min(K, k0 + kTile); ++k)
            for (int64_t i = i0; i < std::min(CRS, i0 + kTile); ++i) {
              float sum = 0.0f;
              for (int t = 0; t < workers_; ++t)
                if (started[t]) sum += scratch_[t].partial.get()[i * K + k];
              dw[k * CRS + i] = sum;
            }
      return;
    }
    const int64_t count = K * CRS;
    for (int t = 1; t < workers_; ++t) {
      if (!started[t]) continue;
      const float* partial = scratch_[t].partial.get();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < count; ++i) dw[i] += partial[i];
    }
  }

  // tmp[k][img*PQ + pq] <- t[n0+img][k][pq], and back.
  void gatherImages(const float* t, float* tmp, int n0, int g) {
    const int64_t PQ = pq();
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < g; ++i)
      for (int k = 0; k < shape_.k; ++k)
        std::memcpy(tmp + k * g * PQ + i * PQ, t + ((n0 + i) * int64_t(shape_.k) + k) * PQ, sizeof(float) * PQ);
  }
  void scatterImages(const float* tmp, float* t, int n0, int g) {
    const int64_t PQ = pq();
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < g; ++i)
      for (int k = 0; k < shape_.k; ++k)
        std::memcpy(t + ((n0 + i) * int64_t(shape_.k) + k) * PQ, tmp + k * g * PQ + i * PQ, sizeof(float) * PQ);
  }

  bool useBlas_;
  int group_ = 1;
  int groups_ = 1;
  int workers_ = 1;
  bool colInPlace_ = false;
  bool implicitCol_ = false;  // our GEMM gathers col while packing (fwd, bwd-filter)
  size_t workspace_ = 0;
  std::vector<Scratch> scratch_;
};

}  // namespace

namespace {

// bwd-data of a stride-1 convolution is itself a stride-1 convolution: dy
// (K channels) convolved with the weights flipped in r and s and with c and k
// swapped, padded by R-1-pad. Running it through the forward path uses the
// implicit im2col (no column matrix, no col2im), which a direct bwd-data GEMM
// cannot: there the K-deep product writes a CRS x PQ matrix per image.
class TransposedBackwardData : public ConvKernel {
 public:
  TransposedBackwardData(const ConvShape& shape, const std::string& layer)
      : ConvKernel(shape, ConvPass::BackwardData, "im2col-gemm", layer),
        flipped_(static_cast<size_t>(shape.wSize())) {
    ConvShape t;
    t.n = shape.n, t.c = shape.k, t.h = shape.p(), t.w = shape.q();
    t.k = shape.c, t.r = shape.r, t.s = shape.s, t.stride = 1, t.pad = shape.r - 1 - shape.pad;
    forward_ = std::make_unique<Im2colConv>(t, ConvPass::Forward, layer, false);
  }
  size_t workspaceBytes() const override { return forward_->workspaceBytes() + flipped_.size() * sizeof(float); }
  std::string implementation() const override {
    return "bwd-data as a forward convolution of dy with flipped, transposed weights; " + forward_->implementation();
  }
  void execute(const ConvTensors& t, KernelRecorder& recorder) override {
    recorder.run(info(), [&] {
      flipWeights(t.w);
      forward_->forwardUntimed(t.y, flipped_.data(), t.x);
    });
  }

 private:
  // flipped[c][k][r][s] = w[k][c][R-1-r][S-1-s]: a transpose of K x C blocks
  // of R*S taps. Done in tiles of k and c so that both sides stay in cache
  // (the plain loop wrote one tap block per cache line, 5 ms on res5b).
  void flipWeights(const float* w) {
    const auto& sh = shape_;
    const int taps = sh.r * sh.s;
    constexpr int kTile = 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int c0 = 0; c0 < sh.c; c0 += kTile)
      for (int k0 = 0; k0 < sh.k; k0 += kTile)
        for (int c = c0; c < std::min(sh.c, c0 + kTile); ++c)
          for (int k = k0; k < std::min(sh.k, k0 + kTile); ++k) {
            const float* from = w + (size_t(k) * sh.c + c) * taps;
            float* to = flipped_.data() + (size_t(c) * sh.k + k) * taps;
            for (int i = 0; i < taps; ++i) to[i] = from[taps - 1 - i];  // (r, s) -> (R-1-r, S-1-s)
          }
  }

  std::vector<float> flipped_;
  std::unique_ptr<Im2colConv> forward_;
};

}  // namespace

std::unique_ptr<ConvKernel> makeIm2colConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                           bool useBlas) {
  // Layers with a real filter (1x1 has no im2col to save), on CPUs with
  // AVX-512: the column operand read in place by the micro-kernel, never
  // packed (conv_unpacked.cc, bwd_filter_unpacked.cc; docs/perf-notes.md v7).
  // Their tiles are 32 output channels wide: not for conv1's bwd-data (3
  // channels of dx). Without AVX-512 the packed GEMM paths below run.
  const bool realFilter = shape.r > 1 || shape.s > 1;
  if (!useBlas && realFilter) {
    if (pass == ConvPass::BackwardFilter) {
      if (auto unpacked = makeUnpackedBackwardFilter(shape, layer)) return unpacked;
    } else if ((pass == ConvPass::Forward ? shape.k : shape.c) >= 32) {
      if (auto unpacked = makeUnpackedConv(shape, pass, layer)) return unpacked;
    }
  }
  // Stride-1 layers with a real filter.
  if (!useBlas && pass == ConvPass::BackwardData && shape.stride == 1 && realFilter &&
      2 * shape.pad == shape.r - 1 && shape.r == shape.s) {
    return std::make_unique<TransposedBackwardData>(shape, layer);
  }
  return std::make_unique<Im2colConv>(shape, pass, layer, useBlas);
}

}  // namespace stepscope
