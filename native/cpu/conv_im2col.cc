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

#include "core/error.h"
#include "cpu/conv_kernel.h"
#include "cpu/gemm.h"

#ifdef STEPSCOPE_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace stepscope {
namespace {

constexpr int kMinGemmColumns = 768;

void im2col(const ConvShape& sh, const float* xImg, float* col, int64_t ldcol) {
  const int P = sh.p(), Q = sh.q(), st = sh.stride;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < sh.c; ++c)
    for (int r = 0; r < sh.r; ++r)
      for (int s = 0; s < sh.s; ++s) {
        float* row = col + (int64_t(c * sh.r + r) * sh.s + s) * ldcol;
        const float* plane = xImg + int64_t(c) * sh.h * sh.w;
        for (int p = 0; p < P; ++p) {
          const int h = p * st - sh.pad + r;
          float* out = row + p * Q;
          if (h < 0 || h >= sh.h) {
            std::memset(out, 0, sizeof(float) * Q);
            continue;
          }
          const float* in = plane + h * sh.w;
          for (int q = 0; q < Q; ++q) {
            const int w = q * st - sh.pad + s;
            out[q] = (w >= 0 && w < sh.w) ? in[w] : 0.0f;
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
        for (int p = 0; p < P; ++p) {
          const int h = p * st - sh.pad + r;
          if (h < 0 || h >= sh.h) continue;
          float* out = plane + h * sh.w;
          const float* in = row + p * Q;
          for (int q = 0; q < Q; ++q) {
            const int w = q * st - sh.pad + s;
            if (w >= 0 && w < sh.w) out[w] += in[q];
          }
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
    const int64_t PQ = int64_t(shape.p()) * shape.q();
    group_ = int(std::min<int64_t>(shape.n, std::max<int64_t>(1, (kMinGemmColumns + PQ - 1) / PQ)));
    const int64_t crs = int64_t(shape.c) * shape.r * shape.s;
    const bool direct1x1 = shape.r == 1 && shape.s == 1 && shape.stride == 1 && shape.pad == 0;
    colInPlace_ = direct1x1 && group_ == 1;
    if (!colInPlace_) col_ = allocate(size_t(crs) * group_ * PQ);
    if (group_ > 1) tmp_ = allocate(size_t(shape.k) * group_ * PQ);
    workspace_ = (colInPlace_ ? 0 : size_t(crs) * group_ * PQ) + (group_ > 1 ? size_t(shape.k) * group_ * PQ : 0);
  }

  size_t workspaceBytes() const override { return workspace_ * sizeof(float); }
  std::string implementation() const override {
    return std::string(useBlas_ ? "OpenBLAS sgemm" : std::string("own sgemm, ") + sgemmKernelName()) + ", " +
           std::to_string(group_) + " image(s) per GEMM" + (colInPlace_ ? ", no im2col" : "");
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
    sgemm(M, N, K, A, rsA, csA, B, rsB, csB, beta, C, ldc);
  }

  int64_t pq() const { return int64_t(shape_.p()) * shape_.q(); }
  int64_t crs() const { return int64_t(shape_.c) * shape_.r * shape_.s; }
  const float* image(const float* t, int n, int64_t perImage) const { return t + n * perImage; }

  // Builds col for images [n0, n0+g) (columns img*PQ + pq); returns the matrix and its leading dim.
  const float* buildCol(const float* x, int n0, int g, int64_t* ld) {
    const int64_t PQ = pq(), xImage = int64_t(shape_.c) * shape_.h * shape_.w;
    if (colInPlace_) {
      *ld = PQ;
      return x + n0 * xImage;
    }
    *ld = g * PQ;
    for (int i = 0; i < g; ++i) im2col(shape_, x + (n0 + i) * xImage, col_.get() + i * PQ, *ld);
    return col_.get();
  }

  void forward(const float* x, const float* w, float* y) {
    const int64_t PQ = pq(), yImage = int64_t(shape_.k) * PQ;
    for (int n0 = 0; n0 < shape_.n; n0 += group_) {
      const int g = std::min(group_, shape_.n - n0);
      int64_t ld;
      const float* col = buildCol(x, n0, g, &ld);
      if (group_ == 1) {
        gemm(shape_.k, int(PQ), int(crs()), w, crs(), 1, col, ld, 1, 0.0f, y + n0 * yImage, PQ);
        continue;
      }
      gemm(shape_.k, int(g * PQ), int(crs()), w, crs(), 1, col, ld, 1, 0.0f, tmp_.get(), g * PQ);
      scatterImages(tmp_.get(), y, n0, g);
    }
  }

  void backwardData(float* dx, const float* w, const float* dy) {
    const int64_t PQ = pq(), xImage = int64_t(shape_.c) * shape_.h * shape_.w, yImage = int64_t(shape_.k) * PQ;
    for (int n0 = 0; n0 < shape_.n; n0 += group_) {
      const int g = std::min(group_, shape_.n - n0);
      const float* dyGroup = dy + n0 * yImage;
      int64_t ldDy = PQ;
      if (group_ > 1) {
        gatherImages(dy, tmp_.get(), n0, g);
        dyGroup = tmp_.get();
        ldDy = g * PQ;
      }
      if (colInPlace_) {  // dx is dcol itself
        gemm(int(crs()), int(PQ), shape_.k, w, 1, crs(), dyGroup, ldDy, 1, 0.0f, dx + n0 * xImage, PQ);
        continue;
      }
      const int64_t ld = g * PQ;
      gemm(int(crs()), int(ld), shape_.k, w, 1, crs(), dyGroup, ldDy, 1, 0.0f, col_.get(), ld);
      for (int i = 0; i < g; ++i) {
        float* dxImg = dx + (n0 + i) * xImage;
        std::memset(dxImg, 0, sizeof(float) * xImage);
        col2im(shape_, col_.get() + i * PQ, ld, dxImg);
      }
    }
  }

  void backwardFilter(const float* x, float* dw, const float* dy) {
    const int64_t PQ = pq(), yImage = int64_t(shape_.k) * PQ;
    for (int n0 = 0; n0 < shape_.n; n0 += group_) {
      const int g = std::min(group_, shape_.n - n0);
      const float* dyGroup = dy + n0 * yImage;
      int64_t ldDy = PQ;
      if (group_ > 1) {
        gatherImages(dy, tmp_.get(), n0, g);
        dyGroup = tmp_.get();
        ldDy = g * PQ;
      }
      int64_t ld;
      const float* col = buildCol(x, n0, g, &ld);
      gemm(shape_.k, int(crs()), int(g * PQ), dyGroup, ldDy, 1, col, 1, ld, n0 == 0 ? 0.0f : 1.0f, dw, crs());
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
  bool colInPlace_ = false;
  size_t workspace_ = 0;
  Workspace col_, tmp_;
};

}  // namespace

std::unique_ptr<ConvKernel> makeIm2colConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                           bool useBlas) {
  return std::make_unique<Im2colConv>(shape, pass, layer, useBlas);
}

}  // namespace stepscope
