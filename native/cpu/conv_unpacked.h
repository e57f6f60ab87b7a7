// fwd and bwd-data without packing the column matrix: tiles of 8 output
// positions x 32 output channels, each tile's reduction (over c, r, s for
// fwd; over k and the taps that reach it for bwd-data) read in place from a
// zero-padded copy of the input (x, or dy). Part of the `im2col-gemm`
// variant (docs/perf-notes.md, v7).
#pragma once
#include <memory>
#include <string>

#include "cpu/conv_kernel.h"

namespace stepscope {

// pass is Forward or BackwardData. nullptr when this CPU has no micro-kernel
// for it (no AVX-512); the caller then uses the packed GEMM path.
std::unique_ptr<ConvKernel> makeUnpackedConv(const ConvShape& shape, ConvPass pass, const std::string& layer);

}  // namespace stepscope
