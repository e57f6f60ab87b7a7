// Packing a block of rows into 32-lane panels (the B operand of the
// unpacked conv micro-kernels): lane l of the panel is row l of the source.
#pragma once
#include <cstdint>

namespace stepscope {

// panel[i * 32 + l] = from[l * rowStride + i] for i < n (<= 16) and
// l < lanes (<= 32); 0 for the other lanes. Needs AVX-512F (callers are
// AVX-512 kernels). Goes through an L1 block, one cache line per row: row by
// row, 32 rows a large power-of-two-ish stride apart fall into a few L1 sets
// and are refetched for every column.
void transposeToPanel(const float* from, int64_t rowStride, int lanes, int n, float* panel);

}  // namespace stepscope
