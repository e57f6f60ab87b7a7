// Variants `implicit-gemm-tf32`, `implicit-gemm-bf16` and
// `implicit-gemm-tf32-pipelined`: our implicit GEMM on tensor cores. Each
// pass is a GEMM C[M][N] = sum_k A[m][k] B[k][n] whose operands are gathered
// from the tensors as the tiles are loaded (no im2col matrix in memory):
//   fwd:        M = N*P*Q, N = K, K = C*R*S   A = x gathered, B = w^T,   C -> y
//   bwd-data:   M = N*H*W, N = C, K = K*R*S   A = dy gathered, B = w,    C -> dx
//   bwd-filter: M = K,     N = C*R*S, K = N*P*Q   A = dy, B = x gathered, C -> dw
// A 64x64 block tile, 4 warps of 32x32, K steps of 16 through shared memory
// (igemm_tile.h: the block's schedule, replayed by the host check), split-K
// (atomicAdd into a zeroed output) when the tiles cannot fill the GPU;
// tensor cores through WMMA (wmma.mma.sync: m16n16k8 tf32, m16n16k16 bf16),
// fp32 accumulation. Needs sm_80 or newer. Gathers without a division per
// element (each thread keeps its rows' index parts across the K steps).
// The plain kernel gathers a step, multiplies it, and waits (two barriers a
// step, nothing overlapped); the pipelined one (tf32) gathers with cp.async
// into three stages, two steps ahead of the multiplications (one barrier a
// step). docs/perf-notes.md: the floor and the predictions.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cuda/conv_cuda.h"
#include "cuda/conv_index.h"
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"
#include "cuda/igemm_tile.h"

namespace stepscope {

namespace {

using namespace nvcuda;

using namespace cudaconv;
using namespace cudaconv::igemm;

template <typename T>
struct Precision;
template <>
struct Precision<float> {  // tf32: operands kept as fp32 in shared memory, rounded when loaded
  static constexpr int kMmaK = 8, kPad = kPadFp32;
  using Elem = wmma::precision::tf32;
  __device__ static float convert(float v) { return v; }
};
template <>
struct Precision<__nv_bfloat16> {
  static constexpr int kMmaK = 16, kPad = kPadBf16;
  using Elem = __nv_bfloat16;
  __device__ static __nv_bfloat16 convert(float v) { return __float2bfloat16(v); }
};

// One K step of a warp's 32x32: As (kTile x kStep; row-major with row
// length LDA, or column-major with column length LDAM when AAlongM) times Bs
// (kStep x kTile, row length LDB) into its 2x2 fragments.
template <typename T, bool AAlongM = false>
__device__ void multiplyStep(const T* As, const T* Bs, wmma::fragment<wmma::accumulator, kFragment, kFragment, Precision<T>::kMmaK, float> (&acc)[2][2]) {
  using P = Precision<T>;
  using ALayout = std::conditional_t<AAlongM, wmma::col_major, wmma::row_major>;
  constexpr int LDA = ldA(P::kPad), LDAM = ldAm(P::kPad), LDB = ldB(P::kPad);
  const int warp = threadIdx.x / 32;
  for (int kk = 0; kk < kStep; kk += P::kMmaK) {
    wmma::fragment<wmma::matrix_a, kFragment, kFragment, P::kMmaK, typename P::Elem, ALayout> a[2];
    wmma::fragment<wmma::matrix_b, kFragment, kFragment, P::kMmaK, typename P::Elem, wmma::row_major> b[2];
    for (int i = 0; i < 2; ++i) {
      if constexpr (AAlongM) wmma::load_matrix_sync(a[i], As + aFragmentAlongM(warp, i, kk, LDAM), LDAM);
      else wmma::load_matrix_sync(a[i], As + aFragment(warp, i, kk, LDA), LDA);
      wmma::load_matrix_sync(b[i], Bs + bFragment(warp, i, kk, LDB), LDB);
      if constexpr (P::kMmaK == 8) {  // round fp32 to tf32 in the fragments
        for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
        for (int t = 0; t < b[i].num_elements; ++t) b[i].x[t] = wmma::__float_to_tf32(b[i].x[t]);
      }
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
  }
}

// The block's tile through shared memory (Cs, kTile x kLdC, in the
// output's order: igemm_tile.h) into the output: stored, or added for a
// split-K's partial sums.
template <typename Problem, int MmaK>
__device__ void storeTile(const Problem& prob, int m0, int n0, float* Cs,
                          wmma::fragment<wmma::accumulator, kFragment, kFragment, MmaK, float> (&acc)[2][2]) {
  constexpr bool AlongN = Problem::kOutAlongN;
  const int warp = threadIdx.x / 32, M = prob.M(), N = prob.N();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + cFragment<AlongN>(warp, i, j), acc[i][j], kLdC, AlongN ? wmma::mem_row_major : wmma::mem_col_major);
  __syncthreads();
  for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) {
    const int i = epilogueRow<AlongN>(e), j = epilogueCol<AlongN>(e);
    const int m = m0 + i, n = n0 + j;
    if (m >= M || n >= N) continue;
    float* o = prob.out() + prob.outIndex(m, n);
    if (gridDim.z > 1) atomicAdd(o, Cs[stagedAt<AlongN>(i, j)]);  // partial sums of a split-K
    else *o = Cs[stagedAt<AlongN>(i, j)];
  }
}

// The block's share of the problem: its output tile's corner and, with a
// split-K along z, its range of the reduction.
struct BlockShare {
  int m0, n0, kBegin, kEnd;
};
template <typename Problem>
__device__ BlockShare blockShare(const Problem& prob) {
  BlockShare b{int(blockIdx.x) * kTile, int(blockIdx.y) * kTile, 0, 0};
  splitRange(prob.K(), gridDim.z, kStep, blockIdx.z, &b.kBegin, &b.kEnd);
  return b;
}

template <int MmaK>
__device__ void zeroAccumulators(wmma::fragment<wmma::accumulator, kFragment, kFragment, MmaK, float> (&acc)[2][2]) {
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
}

// Both kernels ask for 4 blocks per SM (at most 128 registers a thread):
// left alone, ptxas gave the tf32 forward kernel 158 (3 blocks), no spills either way.
template <typename T, typename Problem>
__global__ void __launch_bounds__(kThreads, 4) implicitGemm(Problem prob) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // tensor-core tf32/bf16 needs sm_80+; the host checks first
#else
  using P = Precision<T>;
  constexpr int LDA = ldA(P::kPad), LDB = ldB(P::kPad);
  __shared__ __align__(128) T As[kTile * LDA];
  __shared__ __align__(128) T Bs[kStep * LDB];
  __shared__ __align__(128) float Cs[kTile * kLdC];
  const BlockShare b = blockShare(prob);
  wmma::fragment<wmma::accumulator, kFragment, kFragment, P::kMmaK, float> acc[2][2];
  zeroAccumulators(acc);
  ThreadGather<Problem> g;
  beginGather(prob, b.m0, b.n0, threadIdx.x, g);
  plainSteps(
      stepsIn(b.kBegin, b.kEnd),
      [&](int s) {
        gatherStep(prob, g, stepStart(b.kBegin, s), b.kEnd, threadIdx.x, LDA, LDB, [&](int aSlot, const float* a, int bSlot, const float* b) {
          As[aSlot] = P::convert(a ? *a : 0.f);
          Bs[bSlot] = P::convert(b ? *b : 0.f);
        });
      },
      [] { __syncthreads(); }, [&](int) { multiplyStep<T>(As, Bs, acc); });
  storeTile(prob, b.m0, b.n0, Cs, acc);
#endif
}

// A 4-byte asynchronous copy global -> shared; zero-fills instead where
// source is nullptr (`fallback` is only a valid address to name: 0 bytes are read).
__device__ __forceinline__ void copyOrZero(float* shared, const float* source, const float* fallback) {
  const unsigned dst = unsigned(__cvta_generic_to_shared(shared));
  const size_t src = __cvta_generic_to_global(source ? source : fallback);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(source ? 4 : 0) : "memory");
}
__device__ __forceinline__ void closeCopyGroup() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void waitCopyGroups() { asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory"); }

// The pipelined tf32 kernels: the same tiles, gathered by cp.async kStages - 1
// steps ahead of the multiplications (igemm_tile.h: pipelinedSteps). With
// AlongM (problems with taps), A is gathered along m through the layer's
// tap table (`taps`, K entries; unused otherwise) and stored column-major.
template <typename Problem, bool AlongM>
__global__ void __launch_bounds__(kThreads, 4) implicitGemmPipelined(Problem prob, const Tap* __restrict__ taps) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // cp.async and tensor-core tf32 need sm_80+; the host checks first
#else
  using P = Precision<float>;
  constexpr int LDA = ldA(P::kPad), LDAM = ldAm(P::kPad), LDB = ldB(P::kPad);
  constexpr int kATile = AlongM ? kStep * LDAM : kTile * LDA;
  // 3 stages of A and B (26-28 KB) and the epilogue's tile (17 KB): under the 48 KB of static shared memory
  // (~2.3 KB left: a fourth stage or larger tiles need extern __shared__ and cudaFuncAttributeMaxDynamicSharedMemorySize).
  __shared__ __align__(128) float As[kStages][kATile];
  __shared__ __align__(128) float Bs[kStages][kStep * LDB];
  __shared__ __align__(128) float Cs[kTile * kLdC];
  const BlockShare b = blockShare(prob);
  const float* fallback = prob.out();  // any global address
  wmma::fragment<wmma::accumulator, kFragment, kFragment, P::kMmaK, float> acc[2][2];
  zeroAccumulators(acc);
  std::conditional_t<AlongM, TapGather<Problem>, ThreadGather<Problem>> g;
  if constexpr (AlongM) beginTapGather(prob, b.m0, b.n0, threadIdx.x, g);
  else beginGather(prob, b.m0, b.n0, threadIdx.x, g);
  pipelinedSteps(
      stepsIn(b.kBegin, b.kEnd),
      [&](int s) {
        float* aStage = As[stageOf(s)];
        float* bStage = Bs[stageOf(s)];
        auto copy = [&](int aSlot, const float* aSrc, int bSlot, const float* bSrc) {
          copyOrZero(aStage + aSlot, aSrc, fallback);
          copyOrZero(bStage + bSlot, bSrc, fallback);
        };
        if constexpr (AlongM) tapGatherStep(prob, g, taps, stepStart(b.kBegin, s), b.kEnd, threadIdx.x, LDAM, LDB, copy);
        else gatherStep(prob, g, stepStart(b.kBegin, s), b.kEnd, threadIdx.x, LDA, LDB, copy);
      },
      [] { closeCopyGroup(); },
      [] {
        waitCopyGroups<kStages - 2>();
        __syncthreads();
      },
      [&](int s) { multiplyStep<float, AlongM>(As[stageOf(s)], Bs[stageOf(s)], acc); });
  storeTile(prob, b.m0, b.n0, Cs, acc);
#endif
}

// Split-K when the output tiles alone cannot fill the GPU: bwd-filter (M x N
// is the filter, K the whole batch), and fwd and bwd-data of the small late
// layers (res5's 3x3 at batch 32: 200 tiles for 132 SMs x 4 blocks). The
// splits s minimize the time in rounds of the GPU's block slots,
// ceil(tiles * s / slots) / s (a split does 1/s of the work), each split
// keeping at least 1024 of K, taken only for a modelled gain of 10% or more
// (each split adds its partial sums into the zeroed output with atomics:
// the memset, the atomics, and results that differ in the last bits from
// run to run).
constexpr int kBlocksPerSm = 4;  // registers (<= 128 per thread) and shared memory (<= 45 KB) allow 4
int splitsFor(int M, int N, int K, int smCount) {
  const long long tiles = (long long)((M + kTile - 1) / kTile) * ((N + kTile - 1) / kTile);
  const long long slots = (long long)kBlocksPerSm * std::max(1, smCount);
  const long long most = std::max(1LL, std::min(K / 1024LL, 65535LL));
  const double unsplit = double((tiles + slots - 1) / slots);
  long long best = 1;
  double bestTime = unsplit;
  for (long long s = 2; s <= most; ++s) {
    const double time = double((tiles * s + slots - 1) / slots) / double(s);
    if (time < bestTime - 1e-9) best = s, bestTime = time;
  }
  return bestTime <= 0.9 * unsplit ? int(best) : 1;
}

const char* variantName(ImplicitGemmKind kind) {
  switch (kind) {
    case ImplicitGemmKind::Tf32: return "implicit-gemm-tf32";
    case ImplicitGemmKind::Bf16: return "implicit-gemm-bf16";
    case ImplicitGemmKind::Tf32Pipelined: return "implicit-gemm-tf32-pipelined";
    case ImplicitGemmKind::Tf32AlongM: return "implicit-gemm-tf32-along-m";
  }
  return "implicit-gemm";
}

// `taps`: the layer's tap table on the device (the along-m kernel, problems with taps).
template <typename Problem>
void launchGemm(ImplicitGemmKind kind, const Problem& prob, const Tap* taps, int M, int N, int splits, cudaStream_t stream,
                const std::string& ctx) {
  const unsigned gx = unsigned((M + kTile - 1) / kTile), gy = unsigned((N + kTile - 1) / kTile);
  if (gy > 65535) throw CudaError("ERR_UNSUPPORTED", ctx + ": N = " + std::to_string(N) + " needs more than 65535 block rows", "grid too large", "");
  const dim3 grid(gx, gy, unsigned(splits));
  switch (kind) {
    case ImplicitGemmKind::Tf32: implicitGemm<float, Problem><<<grid, kThreads, 0, stream>>>(prob); break;
    case ImplicitGemmKind::Bf16: implicitGemm<__nv_bfloat16, Problem><<<grid, kThreads, 0, stream>>>(prob); break;
    case ImplicitGemmKind::Tf32Pipelined: implicitGemmPipelined<Problem, false><<<grid, kThreads, 0, stream>>>(prob, nullptr); break;
    case ImplicitGemmKind::Tf32AlongM:
      // bwd-filter's A (dy) is contiguous along kk: it keeps the k-wise gathers.
      if constexpr (Problem::kHasTaps) implicitGemmPipelined<Problem, true><<<grid, kThreads, 0, stream>>>(prob, taps);
      else implicitGemmPipelined<Problem, false><<<grid, kThreads, 0, stream>>>(prob, nullptr);
      break;
  }
  checkCuda(cudaGetLastError(), "implicit GEMM launch", ctx);
}

Dims dimsOf(const ConvShape& sh) { return {sh.n, sh.c, sh.h, sh.w, sh.k, sh.r, sh.s, sh.stride, sh.pad, sh.p(), sh.q()}; }

// The tap gathers add a row's offset and a kk's in 32 bits, and bwd-data's
// row offset may point past dy ((h + pad) / stride up to (H - 1 + pad) /
// stride, beyond P - 1 when pad > R - 1 - pad): the largest sum must fit.
void checkTapOffsets(const Dims& d, ConvPass pass, const std::string& ctx, const std::string& layer) {
  long long largest;
  if (pass == ConvPass::Forward) {
    largest = (long long)d.n * d.c * d.h * d.w + (long long)d.r * d.w + d.s;  // x's last element, a window past the edge at most
  } else {
    const long long rowPart = (long long)(d.n - 1) * d.k * d.p * d.q + (long long)(d.h - 1 + d.pad) / d.stride * d.q + (d.w - 1 + d.pad) / d.stride;
    largest = rowPart + (long long)(d.k - 1) * d.p * d.q;
  }
  if (largest >= 2147483647LL) throw CudaError("ERR_UNSUPPORTED", ctx + ": the tap offsets need more than 32 bits", "too large", layer);
}

// The along-m kernel's tap table for a problem with taps, built here and
// copied to the device once, when the kernel is prepared.
template <typename Problem>
std::unique_ptr<DeviceScratch> uploadTapTable(const Problem& prob, const std::string& ctx) {
  std::vector<Tap> table(size_t(prob.K()));
  fillTapTable(prob, table.data());
  auto taps = std::make_unique<DeviceScratch>(table.size() * sizeof(Tap));
  taps->upload(table.data(), taps->bytes(), ctx + " (tap table)");  // landed before any launch reads it
  return taps;
}

class ImplicitGemmConv : public CudaConvKernel {
 public:
  ImplicitGemmConv(const ConvShape& shape, ConvPass pass, const std::string& layer, ImplicitGemmKind kind)
      : CudaConvKernel(shape, pass, variantName(kind), layer), kind_(kind) {
    const DeviceProperties dev = deviceProperties(currentDevice());  // the GPU it is prepared on
    if (dev.ccMajor < 8) {
      throw CudaError("ERR_UNSUPPORTED", context() + ": tensor-core tf32/bf16 needs compute capability 8.0 or newer, the GPU has " +
                                             std::to_string(dev.ccMajor) + "." + std::to_string(dev.ccMinor),
                      "compute capability too low", layer);
    }
    // Split-K: fixed by the shape and the GPU it is prepared on, so chosen once here (M, N, K of the pass's GEMM).
    const int pq = shape.p() * shape.q(), crs = shape.c * shape.r * shape.s;
    switch (pass) {
      case ConvPass::Forward: splits_ = splitsFor(shape.n * pq, shape.k, crs, dev.smCount); break;
      case ConvPass::BackwardData: splits_ = splitsFor(shape.n * shape.h * shape.w, shape.c, shape.k * shape.r * shape.s, dev.smCount); break;
      case ConvPass::BackwardFilter: splits_ = splitsFor(shape.k, crs, shape.n * pq, dev.smCount); break;
    }
    // Products index with 32-bit ints; ResNet-50 shapes at batch 256 still fit.
    const double biggest = std::max({double(shape.xSize()), double(shape.ySize()), double(shape.wSize())});
    if (biggest >= 2147483647.0) throw CudaError("ERR_UNSUPPORTED", context() + ": tensor too large for 32-bit indexing", "too large", layer);
    if (kind == ImplicitGemmKind::Tf32AlongM && pass != ConvPass::BackwardFilter) {
      if (shape.r * shape.s > kMaxTaps) {
        throw CudaError("ERR_UNSUPPORTED", context() + ": a " + std::to_string(shape.r) + "x" + std::to_string(shape.s) + " filter has more than " +
                                               std::to_string(kMaxTaps) + " taps (the row's tap mask is 64 bits)",
                        "filter too large", layer);
      }
      const Dims d = dimsOf(shape);  // the table holds offsets only: no tensor is read
      checkTapOffsets(d, pass, context(), layer);
      taps_ = pass == ConvPass::Forward ? uploadTapTable(ForwardProblem{d, nullptr, nullptr, nullptr}, context())
                                        : uploadTapTable(BackwardDataProblem{d, nullptr, nullptr, nullptr}, context());
    }
  }

  void launch(float* x, float* w, float* y, cudaStream_t stream) override {
    const ConvShape& sh = shape_;
    const Dims d = dimsOf(sh);
    const std::string& ctx = context();
    const Tap* taps = taps_ ? static_cast<const Tap*>(taps_->get()) : nullptr;
    switch (pass_) {
      case ConvPass::Forward:
        if (splits_ > 1) checkCuda(cudaMemsetAsync(y, 0, size_t(sh.ySize()) * sizeof(float), stream), "cudaMemsetAsync", ctx);
        launchGemm(kind_, ForwardProblem{d, x, w, y}, taps, d.n * d.p * d.q, d.k, splits_, stream, ctx);
        break;
      case ConvPass::BackwardData:
        if (splits_ > 1) checkCuda(cudaMemsetAsync(x, 0, size_t(sh.xSize()) * sizeof(float), stream), "cudaMemsetAsync", ctx);
        launchGemm(kind_, BackwardDataProblem{d, x, w, y}, taps, d.n * d.h * d.w, d.c, splits_, stream, ctx);
        break;
      case ConvPass::BackwardFilter: {
        if (splits_ > 1) checkCuda(cudaMemsetAsync(w, 0, size_t(sh.wSize()) * sizeof(float), stream), "cudaMemsetAsync", ctx);
        launchGemm(kind_, BackwardFilterProblem{d, x, w, y}, nullptr, d.k, d.c * d.r * d.s, splits_, stream, ctx);
        break;
      }
    }
  }

  std::string implementation() const override {
    switch (kind_) {
      case ImplicitGemmKind::Bf16: return "implicit GEMM, WMMA m16n16k16 bf16, 64x64 tiles, fp32 accumulation";
      case ImplicitGemmKind::Tf32Pipelined:
        return "implicit GEMM, WMMA m16n16k8 tf32, 64x64 tiles, cp.async gathers in 3 stages, fp32 accumulation";
      case ImplicitGemmKind::Tf32AlongM:
        return pass_ == ConvPass::BackwardFilter
                   ? "implicit GEMM, WMMA m16n16k8 tf32, 64x64 tiles, cp.async gathers in 3 stages (bwd-filter: as pipelined), fp32 accumulation"
                   : "implicit GEMM, WMMA m16n16k8 tf32, 64x64 tiles, cp.async gathers in 3 stages, A along m from a tap table, fp32 accumulation";
      default: return "implicit GEMM, WMMA m16n16k8 tf32, 64x64 tiles, fp32 accumulation";
    }
  }
  std::string precision() const override { return kind_ == ImplicitGemmKind::Bf16 ? "bf16" : "tf32"; }

 private:
  ImplicitGemmKind kind_;
  int splits_ = 1;  // split-K (aimed at filling the GPU it is prepared on)
  std::unique_ptr<DeviceScratch> taps_;  // the along-m kernel's tap table (fwd, bwd-data)
};

}  // namespace

std::unique_ptr<CudaConvKernel> makeImplicitGemmConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                                     ImplicitGemmKind kind) {
  return std::make_unique<ImplicitGemmConv>(shape, pass, layer, kind);
}

}  // namespace stepscope
