// Runs the index arithmetic of our CUDA conv kernels (cuda/conv_index.h) on
// the host, against a double-precision reference written independently
// (scatter loops), for every pass on small shapes of each ResNet-50 shape
// class plus odd ones: direct, im2col + the exact cuBLAS calls of
// im2col-cublas (emulated column-major GEMMs), and the implicit GEMM's
// gathers, scatters and split-K ranges (the WMMA tiles themselves need a device).
// Prints one JSON object; exit 1 if any error exceeds 1e-5. No GPU needed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/conv_index.h"

using namespace stepscope::cudaconv;

namespace {

struct Tensors {
  std::vector<float> x, w, y;
};

int outSize(int size, int k, int stride, int pad) { return (size + 2 * pad - k) / stride + 1; }

std::vector<float> randomVector(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (auto& e : v) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    e = float((seed >> 40) & 0xFFFFFF) / float(1 << 23) - 1.0f;  // [-1, 1)
  }
  return v;
}

size_t xLen(const Dims& d) { return size_t(d.n) * d.c * d.h * d.w; }
size_t wLen(const Dims& d) { return size_t(d.k) * d.c * d.r * d.s; }
size_t yLen(const Dims& d) { return size_t(d.n) * d.k * d.p * d.q; }

// The reference: every (n, k, p, q, c, r, s) term once, scattered, in double.
void reference(const Dims& d, int pass, const Tensors& t, std::vector<double>& out) {
  out.assign(pass == 0 ? yLen(d) : pass == 1 ? xLen(d) : wLen(d), 0.0);
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (int p = 0; p < d.p; ++p)
        for (int q = 0; q < d.q; ++q)
          for (int c = 0; c < d.c; ++c)
            for (int r = 0; r < d.r; ++r)
              for (int s = 0; s < d.s; ++s) {
                const int h = p * d.stride - d.pad + r, ww = q * d.stride - d.pad + s;
                if (h < 0 || h >= d.h || ww < 0 || ww >= d.w) continue;
                const size_t xi = ((size_t(n) * d.c + c) * d.h + h) * d.w + ww;
                const size_t wi = ((size_t(k) * d.c + c) * d.r + r) * d.s + s;
                const size_t yi = ((size_t(n) * d.k + k) * d.p + p) * d.q + q;
                if (pass == 0) out[yi] += double(t.x[xi]) * t.w[wi];
                if (pass == 1) out[xi] += double(t.y[yi]) * t.w[wi];
                if (pass == 2) out[wi] += double(t.y[yi]) * t.x[xi];
              }
}

double relErr(const std::vector<float>& out, const std::vector<double>& ref) {
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    maxDiff = std::fmax(maxDiff, std::fabs(out[i] - ref[i]));
    maxRef = std::fmax(maxRef, std::fabs(ref[i]));
  }
  return maxRef == 0 ? maxDiff : maxDiff / maxRef;
}

std::vector<float>& output(Tensors& t, int pass) { return pass == 0 ? t.y : pass == 1 ? t.x : t.w; }

void runDirect(const Dims& d, int pass, Tensors& t) {
  auto& out = output(t, pass);
  for (size_t i = 0; i < out.size(); ++i) {
    if (pass == 0) out[i] = directForwardAt(d, t.x.data(), t.w.data(), (long long)i);
    if (pass == 1) out[i] = directBackwardDataAt(d, t.w.data(), t.y.data(), (long long)i);
    if (pass == 2) {
      float acc = 0;
      for (long long term = 0; term < (long long)d.n * d.p * d.q; ++term) acc += directBackwardFilterTerm(d, t.x.data(), t.y.data(), (long long)i, term);
      out[i] = acc;
    }
  }
}

// cuBLAS semantics, column-major: C = op(A) op(B) + beta C.
void gemm(bool ta, bool tb, int m, int n, int k, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double acc = 0;
      for (int l = 0; l < k; ++l) {
        const float a = ta ? A[l + size_t(i) * lda] : A[i + size_t(l) * lda];
        const float b = tb ? B[j + size_t(l) * ldb] : B[l + size_t(j) * ldb];
        acc += double(a) * b;
      }
      C[i + size_t(j) * ldc] = float(acc + (beta == 0 ? 0.0 : double(beta) * C[i + size_t(j) * ldc]));
    }
}

void runIm2col(const Dims& d, int pass, Tensors& t) {
  std::vector<float> col(size_t(d.n) * d.c * d.r * d.s * d.p * d.q);
  if (pass != 1)
    for (size_t i = 0; i < col.size(); ++i) col[i] = im2colAt(d, t.x.data(), (long long)i);
  const GemmCall g = im2colGemm(pass, d);
  auto ptr = [&](Operand o) { return o == Operand::X ? t.x.data() : o == Operand::W ? t.w.data() : o == Operand::Y ? t.y.data() : col.data(); };
  for (int n = 0; n < g.batch; ++n) {
    if (g.perImageAccumulate) {
      gemm(g.transA, g.transB, g.m, g.n, g.k, ptr(g.a) + n * g.strideA, g.lda, ptr(g.b) + n * g.strideB, g.ldb, n == 0 ? 0.f : 1.f, ptr(g.c), g.ldc);
    } else {
      gemm(g.transA, g.transB, g.m, g.n, g.k, ptr(g.a) + n * g.strideA, g.lda, ptr(g.b) + n * g.strideB, g.ldb, 0.f, ptr(g.c) + n * g.strideC, g.ldc);
    }
  }
  if (pass == 1)
    for (size_t i = 0; i < t.x.size(); ++i) t.x[i] = col2imAt(d, col.data(), (long long)i);
}

// As the kernel does it: `splits` chunks of k (multiples of 16), each added into a zeroed output.
template <typename Problem>
void runGemmProblem(const Problem& prob, int splits) {
  for (int m = 0; m < prob.M(); ++m)
    for (int n = 0; n < prob.N(); ++n) prob.out()[prob.outIndex(m, n)] = splits > 1 ? 0.f : NAN;
  for (int z = 0; z < splits; ++z) {
    int begin, end;
    splitRange(prob.K(), splits, 16, z, &begin, &end);
    for (int m = 0; m < prob.M(); ++m)
      for (int n = 0; n < prob.N(); ++n) {
        double acc = 0;
        // The kernel's own split of the gathers: row and column once, kk per step.
        const auto row = prob.row(m);
        const auto col = prob.col(n);
        for (int k = begin; k < end; ++k) acc += double(prob.a(row, prob.kA(k))) * prob.b(prob.kB(k), col);
        float& o = prob.out()[prob.outIndex(m, n)];
        o = splits > 1 ? o + float(acc) : float(acc);
      }
  }
}

void runImplicitGemm(const Dims& d, int pass, Tensors& t, int splits) {
  if (pass == 0) runGemmProblem(ForwardProblem{d, t.x.data(), t.w.data(), t.y.data()}, splits);
  if (pass == 1) runGemmProblem(BackwardDataProblem{d, t.x.data(), t.w.data(), t.y.data()}, splits);
  if (pass == 2) runGemmProblem(BackwardFilterProblem{d, t.x.data(), t.w.data(), t.y.data()}, splits);
}

}  // namespace

int main() {
  // n, c, h, w, k, r, s, stride, pad: ResNet-50's classes (7x7/2, 1x1/1, 1x1/2, 3x3/1, 3x3/2) and odd sizes.
  const int shapes[][9] = {{2, 3, 19, 19, 8, 7, 7, 2, 3}, {2, 8, 9, 9, 16, 1, 1, 1, 0}, {2, 8, 9, 9, 16, 1, 1, 2, 0},
                           {2, 8, 9, 9, 8, 3, 3, 1, 1},  {2, 8, 10, 10, 8, 3, 3, 2, 1}, {1, 5, 7, 11, 6, 3, 3, 2, 1},
                           {3, 4, 6, 5, 7, 3, 3, 1, 1}};
  const char* passes[] = {"fwd", "bwd-data", "bwd-filter"};
  const char* variants[] = {"direct", "im2col-cublas", "implicit-gemm", "implicit-gemm split-K 3"};
  double worst = 0;
  std::string rows;
  for (const auto& sh : shapes) {
    Dims d{sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7], sh[8], 0, 0};
    d.p = outSize(d.h, d.r, d.stride, d.pad);
    d.q = outSize(d.w, d.s, d.stride, d.pad);
    for (int pass = 0; pass < 3; ++pass) {
      Tensors base{randomVector(xLen(d), 1), randomVector(wLen(d), 2), randomVector(yLen(d), 3)};
      std::vector<double> ref;
      reference(d, pass, base, ref);
      for (int v = 0; v < 4; ++v) {
        Tensors t = base;
        std::fill(output(t, pass).begin(), output(t, pass).end(), NAN);
        if (v == 0) runDirect(d, pass, t);
        if (v == 1) runIm2col(d, pass, t);
        if (v == 2) runImplicitGemm(d, pass, t, 1);
        if (v == 3) runImplicitGemm(d, pass, t, 3);
        const double err = relErr(output(t, pass), ref);
        worst = std::fmax(worst, err);
        char row[256];
        std::snprintf(row, sizeof row, "%s{\"shape\":\"n%d c%d %dx%d k%d %dx%d/%d pad %d\",\"pass\":\"%s\",\"variant\":\"%s\",\"maxRelErr\":%.3g}",
                      rows.empty() ? "" : ",", d.n, d.c, d.h, d.w, d.k, d.r, d.s, d.stride, d.pad, passes[pass], variants[v],
                      std::isfinite(err) ? err : 1e300);
        rows += row;
      }
    }
  }
  std::printf("{\"worst\":%.3g,\"tolerance\":1e-5,\"rows\":[%s]}\n", std::isfinite(worst) ? worst : 1e300, rows.c_str());
  return worst <= 1e-5 ? 0 : 1;
}
