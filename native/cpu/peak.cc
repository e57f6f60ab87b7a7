#include "cpu/peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>

#include "core/error.h"

namespace stepscope {
namespace {

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr int kChains = 24;  // independent accumulators: more than FMA latency x throughput

// Returns the flops done. `seed` keeps the compiler from folding the loop.
__attribute__((target("avx512f,fma"))) double fmaAvx512(long iters, float seed, float* sink) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(seed + i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  *sink = lanes[0] + lanes[15];
  return 2.0 * 16 * kChains * double(iters);
}

__attribute__((target("avx2,fma"))) double fmaAvx2(long iters, float seed, float* sink) {
  constexpr int chains = 12;
  __m256 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm256_set1_ps(seed + i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < chains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  float out[8];
  __m256 sum = acc[0];
  for (int i = 1; i < chains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  _mm256_storeu_ps(out, sum);
  *sink = out[0];
  return 2.0 * 8 * chains * double(iters);
}

double fmaScalar(long iters, float seed, float* sink) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = seed + i;
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  float sum = 0;
  for (int i = 0; i < kChains; ++i) sum += acc[i];
  *sink = sum;
  return 2.0 * kChains * double(iters);
}

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

}  // namespace

PeakResult measurePeak(int trials) {
  PeakResult result;
  result.threads = omp_get_max_threads();
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  result.fmaKernel = avx512 ? "avx512" : avx2 ? "avx2" : "scalar";
  const long iters = avx512 ? 4000000 : avx2 ? 8000000 : 2000000;

  volatile float sinkAll = 0;
  for (int t = 0; t < trials; ++t) {
    double flops = 0;
    const double start = seconds();
#pragma omp parallel reduction(+ : flops)
    {
      float sink = 0;
      const float seed = 1.0f + omp_get_thread_num();
      flops += avx512 ? fmaAvx512(iters, seed, &sink) : avx2 ? fmaAvx2(iters, seed, &sink) : fmaScalar(iters, seed, &sink);
      sinkAll = sinkAll + sink;
    }
    result.fmaGflops = std::max(result.fmaGflops, flops / (seconds() - start) / 1e9);
  }

  const size_t n = size_t(1) << 25;  // 3 arrays x 128 MiB
  std::unique_ptr<float, FreeDeleter> a(static_cast<float*>(std::aligned_alloc(64, n * 4))),
      b(static_cast<float*>(std::aligned_alloc(64, n * 4))), c(static_cast<float*>(std::aligned_alloc(64, n * 4)));
  if (!a || !b || !c) throw Error("ERR_OUT_OF_MEMORY", "peak: could not allocate bandwidth arrays");
  float *pa = a.get(), *pb = b.get(), *pc = c.get();
  const long count = long(n);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < count; ++i) {  // first touch by the threads that use the pages
    pa[i] = 0.0f;
    pb[i] = 1.0f + float(i & 7);
    pc[i] = 2.0f;
  }
  for (int t = 0; t < trials + 1; ++t) {
    const double start = seconds();
#pragma omp parallel for schedule(static)
    for (long i = 0; i < count; ++i) pa[i] = pb[i] + 0.5f * pc[i];
    const double elapsed = seconds() - start;
    if (t > 0) result.bandwidthGBs = std::max(result.bandwidthGBs, 3.0 * 4.0 * double(n) / elapsed / 1e9);
  }
  sinkAll = sinkAll + pa[count / 3];
  return result;
}

}  // namespace stepscope
