#include "cpu/panel_transpose.h"

#include <immintrin.h>

namespace stepscope {

__attribute__((target("avx512f"))) void transposeToPanel(const float* from, int64_t rowStride, int lanes, int n,
                                                          float* panel) {
  constexpr int kLanes = 32;
  alignas(64) float block[kLanes * 16];
  const __mmask16 valid = __mmask16((1u << n) - 1);
  for (int l = 0; l < kLanes; ++l) {
    // 32 rows are more streams than the hardware prefetcher follows: fetch
    // each row's block 4 ahead (past the row's end it is a harmless hint).
    _mm_prefetch(reinterpret_cast<const char*>(from + l * rowStride + 64), _MM_HINT_T0);
    const __m512 row = l < lanes ? _mm512_maskz_loadu_ps(valid, from + l * rowStride) : _mm512_setzero_ps();
    _mm512_store_ps(block + l * 16, row);
  }
  const __m512i column = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
  const __m512 zero = _mm512_setzero_ps();  // (the unmasked gather makes GCC warn)
  for (int i = 0; i < n; ++i) {
    const __m512i at = _mm512_add_epi32(column, _mm512_set1_epi32(i));
    _mm512_storeu_ps(panel + i * kLanes, _mm512_mask_i32gather_ps(zero, 0xffff, at, block, 4));
    _mm512_storeu_ps(panel + i * kLanes + 16, _mm512_mask_i32gather_ps(zero, 0xffff, at, block + 256, 4));
  }
}

}  // namespace stepscope
