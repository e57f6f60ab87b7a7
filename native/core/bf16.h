// bf16 storage for the CUDA backend's activations (step --dtype bf16): the
// top 16 bits of an fp32, rounded to nearest even; NaN stays a (quiet) NaN.
// loadf/storef let a kernel template read and write float or bf16 tensors
// with the same arithmetic in fp32. Host and device (host checks use it).
#pragma once
#include <cstdint>
#include <cstring>

#include "core/host_device.h"
#ifdef __CUDACC__
#include <cuda_bf16.h>
#endif

namespace stepscope {

struct Bf16 {
  uint16_t bits;
};

SS_HD inline Bf16 toBf16(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  // The hardware's conversion (cvt.rn.bf16.f32): the same nearest-even rounding in one instruction; a NaN
  // stays a NaN (the canonical one).
  return Bf16{__bfloat16_as_ushort(__float2bfloat16_rn(f))};
#else
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return Bf16{uint16_t((u >> 16) | 0x0040u)};  // NaN: keep it one
  u += 0x7fffu + ((u >> 16) & 1u);                                                   // round to nearest, ties to even
  return Bf16{uint16_t(u >> 16)};
#endif
}

SS_HD inline float fromBf16(Bf16 h) {
  const uint32_t u = uint32_t(h.bits) << 16;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

SS_HD inline float loadf(float v) { return v; }
SS_HD inline float loadf(Bf16 v) { return fromBf16(v); }
SS_HD inline void storef(float* p, float v) { *p = v; }
SS_HD inline void storef(Bf16* p, float v) { *p = toBf16(v); }

}  // namespace stepscope
