// Conv variants `im2col-gemm` (our own GEMM, gemm.cc) and `im2col-blas`
// (OpenBLAS sgemm): each pass becomes one matrix product per group of images.
//   fwd:        Y[K x G*PQ]    = W[K x CRS]   * col[CRS x G*PQ]
//   bwd-data:   dcol[CRS x G*PQ] = W^T[CRS x K] * dY[K x G*PQ], then col2im
//   bwd-filter: dW[K x CRS]   += dY[K x G*PQ] * col^T[G*PQ x CRS]
// Images are grouped (G > 1) when one image's PQ is too narrow for the GEMM
// to run well (the 7x7 and 14x14 layers); 1x1 stride-1 layers with G = 1 use
// the activations in place, without im2col.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <omp.h>

#include "core/error.h"
#include "cpu/conv_kernel.h"
#include "cpu/gemm.h"

#ifdef STEPSCOPE_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace stepscope {
namespace {

constexpr int kMinGemmColumns = 768;

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
    groups_ = (shape.n + group_ - 1) / group_;
    workers_ = (!useBlas && groups_ >= threads) ? threads : 1;
    const bool direct1x1 = shape.r == 1 && shape.s == 1 && shape.stride == 1 && shape.pad == 0;
    colInPlace_ = direct1x1 && group_ == 1;
    scratch_.resize(workers_);
    for (int t = 0; t < workers_; ++t) {
      Scratch& sc = scratch_[t];
      if (!colInPlace_) sc.col = allocate(size_t(crs()) * group_ * PQ), workspace_ += size_t(crs()) * group_ * PQ;
      if (group_ > 1) sc.tmp = allocate(size_t(shape.k) * group_ * PQ), workspace_ += size_t(shape.k) * group_ * PQ;
      if (t > 0 && pass == ConvPass::BackwardFilter) {
        sc.partial = allocate(size_t(shape.k) * crs());
        workspace_ += size_t(shape.k) * crs();
      }
    }
  }

  size_t workspaceBytes() const override { return workspace_ * sizeof(float); }
  std::string implementation() const override {
    return std::string(useBlas_ ? "OpenBLAS sgemm" : std::string("own sgemm, ") + sgemmKernelName()) + ", " +
           std::to_string(group_) + " image(s) per GEMM, " +
           (workers_ > 1 ? std::to_string(workers_) + " threads on separate groups" : "threaded GEMM") +
           (colInPlace_ ? ", no im2col" : "");
  }

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

  void gemm(int M, int N, int K, const float* A, int64_t rsA, int64_t csA, const float* B, int64_t rsB, int64_t csB,
            float beta, float* C, int64_t ldc) {
#ifdef STEPSCOPE_HAVE_OPENBLAS
    if (useBlas_) {
      // A row-major operand with unit column stride is "no transpose".
      const bool transA = csA != 1, transB = csB != 1;
      cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                  A, int(transA ? csA : rsA), B, int(transB ? csB : rsB), beta, C, int(ldc));
      return;
    }
#endif
    sgemm(M, N, K, A, rsA, csA, B, rsB, csB, beta, C, ldc, workers_ > 1 ? 1 : 0);
  }

  // Calls body(worker, n0, g) for every group of images: on one thread
  // (whose GEMM is threaded) or with each worker thread taking whole groups.
  template <typename Body>
  void forEachGroup(Body&& body) {
    if (workers_ == 1) {
      for (int n0 = 0; n0 < shape_.n; n0 += group_) body(0, n0, std::min(group_, shape_.n - n0));
      return;
    }
#pragma omp parallel num_threads(workers_)
    {
      const int t = omp_get_thread_num();
      for (int gi = t; gi < groups_; gi += workers_) {
        const int n0 = gi * group_;
        body(t, n0, std::min(group_, shape_.n - n0));
      }
    }
  }

  int64_t pq() const { return int64_t(shape_.p()) * shape_.q(); }
  int64_t crs() const { return int64_t(shape_.c) * shape_.r * shape_.s; }
  int64_t xImage() const { return int64_t(shape_.c) * shape_.h * shape_.w; }
  int64_t yImage() const { return int64_t(shape_.k) * pq(); }

  // Builds col for images [n0, n0+g) (columns img*PQ + pq); returns the matrix and its leading dim.
  const float* buildCol(Scratch& sc, const float* x, int n0, int g, int64_t* ld) {
    const int64_t PQ = pq();
    if (colInPlace_) {
      *ld = PQ;
      return x + n0 * xImage();
    }
    *ld = g * PQ;
    for (int i = 0; i < g; ++i) im2col(shape_, x + (n0 + i) * xImage(), sc.col.get() + i * PQ, *ld);
    return sc.col.get();
  }

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

  void forward(const float* x, const float* w, float* y) {
    const int64_t PQ = pq();
    forEachGroup([&](int t, int n0, int g) {
      Scratch& sc = scratch_[t];
      int64_t ld;
      const float* col = buildCol(sc, x, n0, g, &ld);
      if (group_ == 1) {
        gemm(shape_.k, int(PQ), int(crs()), w, crs(), 1, col, ld, 1, 0.0f, y + n0 * yImage(), PQ);
        return;
      }
      gemm(shape_.k, int(g * PQ), int(crs()), w, crs(), 1, col, ld, 1, 0.0f, sc.tmp.get(), g * PQ);
      scatterImages(sc.tmp.get(), y, n0, g);
    });
  }

  void backwardData(float* dx, const float* w, const float* dy) {
    const int64_t PQ = pq();
    forEachGroup([&](int t, int n0, int g) {
      Scratch& sc = scratch_[t];
      int64_t ldDy;
      const float* dyGroup = dyMatrix(sc, dy, n0, g, &ldDy);
      if (colInPlace_) {  // dx is dcol itself
        gemm(int(crs()), int(PQ), shape_.k, w, 1, crs(), dyGroup, ldDy, 1, 0.0f, dx + n0 * xImage(), PQ);
        return;
      }
      const int64_t ld = g * PQ;
      gemm(int(crs()), int(ld), shape_.k, w, 1, crs(), dyGroup, ldDy, 1, 0.0f, sc.col.get(), ld);
      for (int i = 0; i < g; ++i) {
        float* dxImg = dx + (n0 + i) * xImage();
        std::memset(dxImg, 0, sizeof(float) * xImage());
        col2im(shape_, sc.col.get() + i * PQ, ld, dxImg);
      }
    });
  }

  // Each worker sums its groups into its own partial dW (worker 0 into dw),
  // then the partials are added: a fixed order, so results are reproducible.
  void backwardFilter(const float* x, float* dw, const float* dy) {
    std::vector<char> started(workers_, 0);
    forEachGroup([&](int t, int n0, int g) {
      Scratch& sc = scratch_[t];
      float* partial = t == 0 ? dw : sc.partial.get();
      int64_t ldDy, ld;
      const float* dyGroup = dyMatrix(sc, dy, n0, g, &ldDy);
      const float* col = buildCol(sc, x, n0, g, &ld);
      gemm(shape_.k, int(crs()), int(g * pq()), dyGroup, ldDy, 1, col, 1, ld, started[t] ? 1.0f : 0.0f, partial, crs());
      started[t] = 1;
    });
    const int64_t count = int64_t(shape_.k) * crs();
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
  size_t workspace_ = 0;
  std::vector<Scratch> scratch_;
};

}  // namespace

std::unique_ptr<ConvKernel> makeIm2colConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                           bool useBlas) {
  return std::make_unique<Im2colConv>(shape, pass, layer, useBlas);
}

}  // namespace stepscope
