#include "cpu/padded_planes.h"

#include <algorithm>
#include <cstring>

namespace stepscope {

void PaddedPlanes::zero(float* out) const { std::memset(out, 0, sizeof(float) * size_t(size())); }

// Rows are short (7-56 floats): a plain loop, not a memcpy call per row.
void PaddedPlanes::copyData(const float* in, float* out) const {
  const int cols = std::max(0, std::min(ws, wn - ml));
  const int rows = std::max(0, std::min(hs, hn - mt));
#pragma omp for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float* from = in + p * hs * ws;
    float* to = out + p * plane() + int64_t(mt) * wn + ml;
    for (int h = 0; h < rows; ++h, from += ws, to += wn)
      for (int w = 0; w < cols; ++w) to[w] = from[w];
  }
}

}  // namespace stepscope
