// A zero-padded copy of a tensor's planes, read in place by the unpacked
// convolution kernels (bwd_filter_unpacked.cc, conv_unpacked.cc): every
// filter tap over the border then reads a zero, with no branch.
#pragma once
#include <cstdint>

namespace stepscope {

// Planes of hs x ws values, stored as planes of hn x wn with mt rows and ml
// columns of zeros before the data (and whatever is left after it).
struct PaddedPlanes {
  int64_t planes = 0;
  int hs = 0, ws = 0, mt = 0, ml = 0, hn = 0, wn = 0;

  int64_t plane() const { return int64_t(hn) * wn; }
  int64_t size() const { return planes * plane(); }
  // Zeroes all of out (once, when the buffer is made: copyData never writes the margins).
  void zero(float* out) const;
  // Copies the data rows of `in` (planes of hs x ws) into out. An orphaned
  // `omp for`: called inside a parallel region, the threads share the planes.
  void copyData(const float* in, float* out) const;
};

}  // namespace stepscope
