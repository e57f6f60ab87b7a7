// Variants `implicit-gemm-tf32` and `implicit-gemm-bf16`: our implicit GEMM
// on tensor cores. Each pass is a GEMM C[M][N] = sum_k A[m][k] B[k][n] whose
// operands are gathered from the tensors as the tiles are loaded (no im2col
// matrix in memory):
//   fwd:        M = N*P*Q, N = K, K = C*R*S   A = x gathered, B = w^T,   C -> y
//   bwd-data:   M = N*H*W, N = C, K = K*R*S   A = dy gathered, B = w,    C -> dx
//   bwd-filter: M = K,     N = C*R*S, K = N*P*Q   A = dy, B = x gathered, C -> dw
// A 64x64 block tile, 4 warps of 32x32, K steps of 16 through shared memory,
// split-K (atomicAdd into a zeroed output) when the tiles cannot fill the GPU;
// tensor cores through WMMA (wmma.mma.sync: m16n16k8 tf32, m16n16k16 bf16),
// fp32 accumulation. Needs sm_80 or newer. Gathers without a division per
// element (each thread keeps its rows' index parts across the K steps); no
// double buffering yet (docs/perf-notes.md: the floor and the prediction).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>

#include "cuda/conv_cuda.h"
#include "cuda/conv_index.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"

namespace stepscope {

namespace {

using namespace nvcuda;

using namespace cudaconv;

constexpr int kTile = 64, kStep = 16, kThreads = 128;

template <typename T>
struct Precision;
template <>
struct Precision<float> {  // tf32: operands kept as fp32 in shared memory, rounded when loaded
  static constexpr int kMmaK = 8, kPad = 4;
  using Elem = wmma::precision::tf32;
  __device__ static float convert(float v) { return v; }
};
template <>
struct Precision<__nv_bfloat16> {
  static constexpr int kMmaK = 16, kPad = 8;
  using Elem = __nv_bfloat16;
  __device__ static __nv_bfloat16 convert(float v) { return __float2bfloat16(v); }
};

template <typename T, typename Problem>
__global__ void __launch_bounds__(kThreads) implicitGemm(Problem prob) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // tensor-core tf32/bf16 needs sm_80+; the host checks first
#else
  using P = Precision<T>;
  constexpr int LDA = kStep + P::kPad, LDB = kTile + P::kPad, LDC = kTile + 4;
  __shared__ __align__(128) T As[kTile * LDA];
  __shared__ __align__(128) T Bs[kStep * LDB];
  __shared__ __align__(128) float Cs[kTile * LDC];
  const int M = prob.M(), N = prob.N(), K = prob.K();
  const int m0 = blockIdx.x * kTile, n0 = blockIdx.y * kTile;
  int kBegin, kEnd;  // this block's share of the reduction (split-K along z)
  splitRange(K, gridDim.z, kStep, blockIdx.z, &kBegin, &kEnd);
  const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2;

  wmma::fragment<wmma::accumulator, 16, 16, P::kMmaK, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  // Each thread gathers column j of the A tile and row j of the B tile, at
  // rows (columns) first + kRowsPerPass * t: their index parts are
  // decomposed once here, kk's once per step (conv_index.h).
  constexpr int kRowsPerPass = kThreads / kStep, kLoads = kTile / kRowsPerPass;
  const int j = threadIdx.x % kStep, first = threadIdx.x / kStep;
  typename Problem::Row rows[kLoads];
  typename Problem::Col cols[kLoads];
  for (int t = 0; t < kLoads; ++t) {
    rows[t] = prob.row(m0 + first + kRowsPerPass * t);
    cols[t] = prob.col(n0 + first + kRowsPerPass * t);
  }

  for (int k0 = kBegin; k0 < kEnd; k0 += kStep) {
    // Gather the A tile (64 x 16) and the B tile (16 x 64); zeros outside the problem.
    const int kk = k0 + j;
    const bool kIn = kk < kEnd;
    const auto ka = prob.kA(kk);
    const auto kb = prob.kB(kk);
    for (int t = 0; t < kLoads; ++t) {
      const int i = first + kRowsPerPass * t;
      As[i * LDA + j] = P::convert(kIn ? prob.a(rows[t], ka) : 0.f);
      Bs[j * LDB + i] = P::convert(kIn ? prob.b(kb, cols[t]) : 0.f);
    }
    __syncthreads();
    for (int kk = 0; kk < kStep; kk += P::kMmaK) {
      wmma::fragment<wmma::matrix_a, 16, 16, P::kMmaK, typename P::Elem, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, P::kMmaK, typename P::Elem, wmma::row_major> b[2];
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(a[i], As + (wm * 32 + i * 16) * LDA + kk, LDA);
        wmma::load_matrix_sync(b[i], Bs + kk * LDB + wn * 32 + i * 16, LDB);
        if constexpr (P::kMmaK == 8) {  // round fp32 to tf32 in the fragments
          for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
          for (int t = 0; t < b[i].num_elements; ++t) b[i].x[t] = wmma::__float_to_tf32(b[i].x[t]);
        }
      }
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();
  for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) {
    const int i = e % kTile, j = e / kTile;  // consecutive threads, consecutive m (contiguous in NCHW outputs)
    const int m = m0 + i, n = n0 + j;
    if (m >= M || n >= N) continue;
    float* o = prob.out() + prob.outIndex(m, n);
    if (gridDim.z > 1) atomicAdd(o, Cs[i * LDC + j]);  // partial sums of a split-K
    else *o = Cs[i * LDC + j];
  }
#endif
}

// Split-K when the output tiles alone cannot fill the GPU (bwd-filter: M x N
// is the filter, K the whole batch): aim at two blocks per SM, each split
// keeping at least 1024 of K.
int splitsFor(int M, int N, int K, int smCount) {
  const long long tiles = (long long)((M + kTile - 1) / kTile) * ((N + kTile - 1) / kTile);
  const long long want = (2LL * smCount + tiles - 1) / tiles;
  const long long most = (K + 1023) / 1024;
  return int(std::max(1LL, std::min({want, most, 65535LL})));
}

template <typename T, typename Problem>
void launchGemm(const Problem& prob, int M, int N, int splits, cudaStream_t stream, const std::string& ctx) {
  const unsigned gx = unsigned((M + kTile - 1) / kTile), gy = unsigned((N + kTile - 1) / kTile);
  if (gy > 65535) throw CudaError("ERR_UNSUPPORTED", ctx + ": N = " + std::to_string(N) + " needs more than 65535 block rows", "grid too large", "");
  implicitGemm<T, Problem><<<dim3(gx, gy, unsigned(splits)), kThreads, 0, stream>>>(prob);
  checkCuda(cudaGetLastError(), "implicit GEMM launch", ctx);
}

class ImplicitGemmConv : public CudaConvKernel {
 public:
  ImplicitGemmConv(const ConvShape& shape, ConvPass pass, const std::string& layer, bool bf16)
      : CudaConvKernel(shape, pass, bf16 ? "implicit-gemm-bf16" : "implicit-gemm-tf32", layer), bf16_(bf16) {
    const DeviceProperties dev = deviceProperties(currentDevice());  // the GPU it is prepared on
    if (dev.ccMajor < 8) {
      throw CudaError("ERR_UNSUPPORTED", context() + ": tensor-core tf32/bf16 needs compute capability 8.0 or newer, the GPU has " +
                                             std::to_string(dev.ccMajor) + "." + std::to_string(dev.ccMinor),
                      "compute capability too low", layer);
    }
    smCount_ = dev.smCount;
    // Products index with 32-bit ints; ResNet-50 shapes at batch 256 still fit.
    const double biggest = std::max({double(shape.xSize()), double(shape.ySize()), double(shape.wSize())});
    if (biggest >= 2147483647.0) throw CudaError("ERR_UNSUPPORTED", context() + ": tensor too large for 32-bit indexing", "too large", layer);
  }

  void launch(float* x, float* w, float* y, cudaStream_t stream) override {
    const ConvShape& sh = shape_;
    const Dims d{sh.n, sh.c, sh.h, sh.w, sh.k, sh.r, sh.s, sh.stride, sh.pad, sh.p(), sh.q()};
    const std::string ctx = context();
    switch (pass_) {
      case ConvPass::Forward: {
        ForwardProblem prob{d, x, w, y};
        const int M = d.n * d.p * d.q, N = d.k;
        bf16_ ? launchGemm<__nv_bfloat16>(prob, M, N, 1, stream, ctx) : launchGemm<float>(prob, M, N, 1, stream, ctx);
        break;
      }
      case ConvPass::BackwardData: {
        BackwardDataProblem prob{d, x, w, y};
        const int M = d.n * d.h * d.w, N = d.c;
        bf16_ ? launchGemm<__nv_bfloat16>(prob, M, N, 1, stream, ctx) : launchGemm<float>(prob, M, N, 1, stream, ctx);
        break;
      }
      case ConvPass::BackwardFilter: {
        BackwardFilterProblem prob{d, x, w, y};
        const int M = d.k, N = d.c * d.r * d.s;
        const int splits = splitsFor(M, N, d.n * d.p * d.q, smCount_);
        if (splits > 1) checkCuda(cudaMemsetAsync(w, 0, size_t(sh.wSize()) * sizeof(float), stream), "cudaMemsetAsync", ctx);
        bf16_ ? launchGemm<__nv_bfloat16>(prob, M, N, splits, stream, ctx) : launchGemm<float>(prob, M, N, splits, stream, ctx);
        break;
      }
    }
  }

  std::string implementation() const override {
    return std::string("implicit GEMM, WMMA ") + (bf16_ ? "m16n16k16 bf16" : "m16n16k8 tf32") + ", 64x64 tiles, fp32 accumulation";
  }
  std::string precision() const override { return bf16_ ? "bf16" : "tf32"; }

 private:
  bool bf16_;
  int smCount_ = 0;  // of the GPU it is prepared on (the split-K aims at filling it)
};

}  // namespace

std::unique_ptr<CudaConvKernel> makeImplicitGemmConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                                     bool bf16) {
  return std::make_unique<ImplicitGemmConv>(shape, pass, layer, bf16);
}

}  // namespace stepscope
