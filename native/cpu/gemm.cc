#include "cpu/gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"

namespace stepscope {
namespace {

// Computes an MR x NR tile from packed panels: Ap holds kc columns of MR
// values, Bp kc rows of NR values. Writes (or adds to) C with leading dim ldc.
using MicroKernelFn = void (*)(int kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate);

struct MicroKernel {
  int mr, nr;
  MicroKernelFn fn;
  const char* name;
};

// AVX-512: 8 rows x 2 zmm = 16 accumulators; broadcasts fold into the FMAs.
__attribute__((target("avx512f,fma"))) void kernelAvx512(int kc, const float* Ap, const float* Bp, float* C,
                                                          int64_t ldc, bool accumulate) {
  __m512 c[8][2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(Bp);
    const __m512 b1 = _mm512_loadu_ps(Bp + 16);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m512 a = _mm512_set1_ps(Ap[i]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
    Ap += 8;
    Bp += 32;
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    float* row = C + i * ldc;
    if (accumulate) {
      c[i][0] = _mm512_add_ps(c[i][0], _mm512_loadu_ps(row));
      c[i][1] = _mm512_add_ps(c[i][1], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, c[i][0]);
    _mm512_storeu_ps(row + 16, c[i][1]);
  }
}

// AVX2 + FMA: 6 rows x 2 ymm = 12 accumulators (16 ymm registers in all).
__attribute__((target("avx2,fma"))) void kernelAvx2(int kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
                                                     bool accumulate) {
  __m256 c[6][2];
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(Bp);
    const __m256 b1 = _mm256_loadu_ps(Bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m256 a = _mm256_broadcast_ss(Ap + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
    Ap += 6;
    Bp += 16;
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    float* row = C + i * ldc;
    if (accumulate) {
      c[i][0] = _mm256_add_ps(c[i][0], _mm256_loadu_ps(row));
      c[i][1] = _mm256_add_ps(c[i][1], _mm256_loadu_ps(row + 8));
    }
    _mm256_storeu_ps(row, c[i][0]);
    _mm256_storeu_ps(row + 8, c[i][1]);
  }
}

// Portable fallback for CPUs without AVX2.
void kernelGeneric(int kc, const float* Ap, const float* Bp, float* C, int64_t ldc, bool accumulate) {
  float c[4][16] = {};
  for (int p = 0; p < kc; ++p, Ap += 4, Bp += 16)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 16; ++j) c[i][j] += Ap[i] * Bp[j];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 16; ++j) C[i * ldc + j] = accumulate ? C[i * ldc + j] + c[i][j] : c[i][j];
}

const MicroKernel& microKernel() {
  static const MicroKernel chosen = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return MicroKernel{8, 32, kernelAvx512, "avx512 8x32"};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return MicroKernel{6, 16, kernelAvx2, "avx2 6x16"};
    return MicroKernel{4, 16, kernelGeneric, "generic 4x16"};
  }();
  return chosen;
}

// Block sizes (see docs/perf-notes.md, v2): a KC x NR micro-panel of B must
// stay in L1 (32 KB) while MR x KC panels of A stream past it: 128 x 32 x 4 B
// = 16 KB. At KC = 256 the B panel filled L1 and the GEMM ran ~15% slower.
constexpr int kKC = 128;
constexpr int kMC = 96;    // 96 x 128 floats of A (48 KB) stay in L2; a multiple of 8, 6 and 4
constexpr int kNC = 3072;  // 128 x 3072 floats of B (1.5 MB) stay in L3

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};

// A per-thread scratch area that grows as needed and is reused across calls.
float* scratch(std::unique_ptr<float, AlignedFree>& slot, size_t& capacity, size_t count) {
  if (count > capacity) {
    slot.reset(static_cast<float*>(std::aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64)));
    if (!slot) throw Error("ERR_OUT_OF_MEMORY", "sgemm: could not allocate packing buffers");
    capacity = count;
  }
  return slot.get();
}

// Packs rows [i0, i0+mc) and columns [p0, p0+kc) of A into MR-row panels,
// zero-padding the last panel.
void packA(const MicroKernel& mk, const GemmOperand& A, int i0, int mc, int p0, int kc, float* Ap, float* rowScratch) {
  for (int ib = 0; ib < mc; ib += mk.mr, Ap += size_t(mk.mr) * kc) {
    const int rows = std::min(mk.mr, mc - ib);
    if (A.im2col) {
      // Gather each row contiguously (copies, not strided stores), then
      // interleave the MR rows into the panel.
      float* gathered = rowScratch;
      for (int i = 0; i < rows; ++i) im2colSegment(*A.im2col, i0 + ib + i, p0, kc, gathered + i * kc, 1);
      for (int i = rows; i < mk.mr; ++i) std::memset(gathered + i * kc, 0, sizeof(float) * kc);
      for (int p = 0; p < kc; ++p)
        for (int i = 0; i < mk.mr; ++i) Ap[p * mk.mr + i] = gathered[i * kc + p];
      continue;
    }
    float* out = Ap;
    for (int p = 0; p < kc; ++p) {
      const float* src = A.data + (i0 + ib) * A.rs + (p0 + p) * A.cs;
      for (int i = 0; i < rows; ++i) out[i] = src[i * A.rs];
      for (int i = rows; i < mk.mr; ++i) out[i] = 0.0f;
      out += mk.mr;
    }
  }
}

// Packs row `row` (columns [j0, j0+nc)) of an implicit im2col B into its
// place (local row p of kc) in every panel: one gather for the whole row into
// an L1-resident scratch row, then NR-wide copies.
void packImplicitBRow(const MicroKernel& mk, const GemmOperand& B, int row, int p, int kc, int j0, int nc, float* Bp,
                      float* rowScratch) {
  im2colSegment(*B.im2col, row, j0, nc, rowScratch, 1);
  for (int jp = 0, j = 0; j < nc; ++jp, j += mk.nr) {
    const int cols = std::min(mk.nr, nc - j);
    float* dst = Bp + (size_t(jp) * kc + p) * mk.nr;
    std::memcpy(dst, rowScratch + j, sizeof(float) * cols);
    for (int jj = cols; jj < mk.nr; ++jj) dst[jj] = 0.0f;
  }
}

// Packs one NR-column panel of a strided B (rows [p0, p0+kc), columns
// [j0, j0+cols)), zero-padding missing columns.
void packBPanel(const MicroKernel& mk, const GemmOperand& B, int p0, int kc, int j0, int cols, float* Bp) {
  if (B.cs == 1) {
    for (int p = 0; p < kc; ++p, Bp += mk.nr) {
      std::memcpy(Bp, B.data + (p0 + p) * B.rs + j0, sizeof(float) * cols);
      for (int j = cols; j < mk.nr; ++j) Bp[j] = 0.0f;
    }
  } else {
    for (int j = 0; j < mk.nr; ++j) {
      if (j < cols) {
        const float* src = B.data + p0 * B.rs + (j0 + j) * B.cs;
        for (int p = 0; p < kc; ++p) Bp[p * mk.nr + j] = src[p * B.rs];
      } else {
        for (int p = 0; p < kc; ++p) Bp[p * mk.nr + j] = 0.0f;
      }
    }
  }
}

}  // namespace

const char* sgemmKernelName() { return microKernel().name; }

void sgemm(int M, int N, int K, const float* A, int64_t rsA, int64_t csA, const float* B, int64_t rsB, int64_t csB,
           float beta, float* C, int64_t ldc, int threads) {
  sgemm(M, N, K, GemmOperand::strided(A, rsA, csA), GemmOperand::strided(B, rsB, csB), beta, C, ldc, threads);
}

void sgemm(int M, int N, int K, const GemmOperand& A, const GemmOperand& B, float beta, float* C, int64_t ldc,
           int requestedThreads) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (beta == 0.0f)
      for (int i = 0; i < M; ++i) std::memset(C + i * ldc, 0, sizeof(float) * N);
    return;
  }
  const MicroKernel& mk = microKernel();
  const int threads = requestedThreads > 0 ? requestedThreads : omp_get_max_threads();
  const int nc = std::min(kNC, (N + mk.nr - 1) / mk.nr * mk.nr);

  static thread_local std::unique_ptr<float, AlignedFree> bSlot;
  static thread_local size_t bCapacity = 0;
  float* Bp = scratch(bSlot, bCapacity, size_t(kKC) * nc);

  const int icBlocks = (M + kMC - 1) / kMC;
  bool failed = false;

#pragma omp parallel num_threads(threads)
  {
    static thread_local std::unique_ptr<float, AlignedFree> aSlot;
    static thread_local size_t aCapacity = 0;
    static thread_local std::unique_ptr<float, AlignedFree> tileSlot;
    static thread_local size_t tileCapacity = 0;
    static thread_local std::unique_ptr<float, AlignedFree> rowSlot;
    static thread_local size_t rowCapacity = 0;
    float* Ap = nullptr;
    float* tile = nullptr;
    float* rowScratch = nullptr;
    try {
      Ap = scratch(aSlot, aCapacity, size_t(kMC) * kKC);
      tile = scratch(tileSlot, tileCapacity, size_t(mk.mr) * mk.nr);
      rowScratch = scratch(rowSlot, rowCapacity, std::max(size_t(kNC), size_t(mk.mr) * kKC));
    } catch (...) {
#pragma omp atomic write
      failed = true;
    }
#pragma omp barrier
    if (!failed) {
      for (int jc = 0; jc < N; jc += kNC) {
        const int ncCur = std::min(kNC, N - jc);
        const int nPanels = (ncCur + mk.nr - 1) / mk.nr;
        // Split columns so that every thread has work even when M is small.
        const int jChunks = std::max(1, std::min(nPanels, (2 * threads + icBlocks - 1) / icBlocks));
        for (int pc = 0; pc < K; pc += kKC) {
          const int kc = std::min(kKC, K - pc);
          const bool accumulate = pc > 0 || beta != 0.0f;
          if (B.im2col) {
#pragma omp for schedule(static)
            for (int p = 0; p < kc; ++p) packImplicitBRow(mk, B, pc + p, p, kc, jc, ncCur, Bp, rowScratch);
          } else {
#pragma omp for schedule(static)
            for (int jp = 0; jp < nPanels; ++jp) {
              const int j0 = jp * mk.nr;
              packBPanel(mk, B, pc, kc, jc + j0, std::min(mk.nr, ncCur - j0), Bp + size_t(jp) * kc * mk.nr);
            }
          }
          int packedIc = -1;
#pragma omp for schedule(static)
          for (int item = 0; item < icBlocks * jChunks; ++item) {
            const int ib = item / jChunks, chunk = item % jChunks;
            const int ic = ib * kMC;
            const int mc = std::min(kMC, M - ic);
            if (packedIc != ic) {
              packA(mk, A, ic, mc, pc, kc, Ap, rowScratch);
              packedIc = ic;
            }
            const int pBegin = nPanels * chunk / jChunks, pEnd = nPanels * (chunk + 1) / jChunks;
            for (int jp = pBegin; jp < pEnd; ++jp) {
              const int j0 = jp * mk.nr;
              const int cols = std::min(mk.nr, ncCur - j0);
              const float* bPanel = Bp + size_t(jp) * kc * mk.nr;
              for (int ir = 0; ir < mc; ir += mk.mr) {
                const int rows = std::min(mk.mr, mc - ir);
                const float* aPanel = Ap + size_t(ir) * kc;
                float* c = C + (ic + ir) * ldc + jc + j0;
                if (rows == mk.mr && cols == mk.nr) {
                  mk.fn(kc, aPanel, bPanel, c, ldc, accumulate);
                } else {  // edge tile: compute in scratch, copy the valid part
                  mk.fn(kc, aPanel, bPanel, tile, mk.nr, false);
                  for (int i = 0; i < rows; ++i)
                    for (int j = 0; j < cols; ++j)
                      c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i * mk.nr + j] : tile[i * mk.nr + j];
                }
              }
            }
          }
        }
      }
    }
  }
  if (failed) throw Error("ERR_OUT_OF_MEMORY", "sgemm: could not allocate packing buffers");
}

}  // namespace stepscope
