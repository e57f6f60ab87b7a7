// Division by a divisor fixed at launch, as a multiply-high, an add and a
// shift instead of the ~20-instruction integer division: for the kernels
// that find an element's channel from its memory index (the batch norm's
// apply, in either layout), where the division would cost more than the
// element's bytes at full bandwidth. Valid for dividends below 2^31 (the
// callers take the plain 64-bit path beyond). The method is the round-up
// multiplier of Granlund and Montgomery ("Division by invariant integers
// using multiplication", 1994): with s = ceil(log2 d) and
// m = floor(2^32 (2^s - d) / d) + 1, n / d = (mulhi(n, m) + n) >> s.
// check/op_host_check.cc compares it with '/' over edge and random values.
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace stepscope {
namespace cudaops {

struct FastDivider {
  uint32_t divisor = 1, multiplier = 1, shift = 0;

  FastDivider() = default;
  // divisor >= 1 (the callers' dimensions are validated positive).
  explicit FastDivider(uint32_t d) : divisor(d) {
    while (shift < 32 && (uint64_t(1) << shift) < d) ++shift;
    multiplier = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }

  // n < 2^31: mulhi(n, m) < n, so the sum stays below 2^32.
  SS_HD uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t high = __umulhi(n, multiplier);
#else
    const uint32_t high = uint32_t((uint64_t(n) * multiplier) >> 32);
#endif
    return (high + n) >> shift;
  }
  SS_HD uint32_t mod(uint32_t n) const { return n - div(n) * divisor; }
};

}  // namespace cudaops
}  // namespace stepscope
