// im2col/col2im over NCHW images. Row (c*R + r)*S + s of the column matrix
// holds, for every output position (p, q), the input value under filter tap
// (r, s) of channel c, or 0 where that tap reads padding.
#pragma once
#include <cstdint>

#include "cpu/conv_shape.h"

namespace stepscope {

// Writes the column matrix of one image (CRS rows, P*Q columns, leading dim ldcol).
void im2col(const ConvShape& sh, const float* xImg, float* col, int64_t ldcol);
// Adds a column matrix's contributions into dxImg (which the caller zeroed).
void col2im(const ConvShape& sh, const float* col, int64_t ldcol, float* dxImg);

// The column matrix of consecutive images x, x + CHW, ... without storing it:
// column j is output position j % PQ of image j / PQ.
struct Im2colView {
  const ConvShape* shape;
  const float* x;
};

// Writes col(row, j) for j in [j0, j0 + len) to out[t * outStride].
void im2colSegment(const Im2colView& view, int row, int64_t j0, int len, float* out, int64_t outStride);

}  // namespace stepscope
