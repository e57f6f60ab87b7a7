// Our own single-precision GEMM: the hand-written kernel path under the
// `im2col-gemm` convolution. Goto/BLIS structure: B is packed into
// KC x NC blocks (L3), A into MC x KC blocks (L2), and a register-blocked
// micro-kernel computes MR x NR tiles from packed panels (L1). The
// micro-kernel is picked once at run time from the CPU's ISA.
#pragma once
#include <cstdint>

#include "cpu/im2col.h"

namespace stepscope {

// An operand as the GEMM reads it while packing: a strided matrix, element
// (i, j) = data[i * rs + j * cs], or an implicit im2col matrix (rows are
// filter taps c*R*S + r*S + s, columns output positions of consecutive images).
struct GemmOperand {
  const float* data = nullptr;
  int64_t rs = 0, cs = 0;
  const Im2colView* im2col = nullptr;

  static GemmOperand strided(const float* data, int64_t rs, int64_t cs) { return {data, rs, cs, nullptr}; }
  static GemmOperand implicit(const Im2colView* view) { return {nullptr, 0, 0, view}; }
};

// C[M x N] (row-major, leading dimension ldc) = beta * C + A * B; beta is 0 or 1.
void sgemm(int M, int N, int K, const GemmOperand& A, const GemmOperand& B, float beta, float* C, int64_t ldc,
           int threads = 0);

// C[M x N] (row-major, leading dimension ldc) = beta * C + A * B, with
// A(i, p) = A[i * rsA + p * csA] and B(p, j) = B[p * rsB + j * csB], so a
// transposed operand is just a different pair of strides. beta is 0 or 1.
// Runs on `threads` OpenMP threads (0: all); 1 when called per image from
// inside a parallel region.
void sgemm(int M, int N, int K, const float* A, int64_t rsA, int64_t csA, const float* B, int64_t rsB, int64_t csB,
           float beta, float* C, int64_t ldc, int threads = 0);

// Name of the micro-kernel in use, e.g. "avx512 8x32".
const char* sgemmKernelName();

}  // namespace stepscope
