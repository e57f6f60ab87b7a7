// bwd-filter as dW^T[CRS x K] = col[CRS x NPQ] * dY^T[NPQ x K] with the
// column operand read in place, never packed: the micro-kernel broadcasts
// each filter tap's input value straight from a zero-padded copy of x (one
// pointer per tap, one shared offset per output position). Part of the
// `im2col-gemm` variant (docs/perf-notes.md, v7).
#pragma once
#include <memory>
#include <string>

#include "cpu/conv_kernel.h"

namespace stepscope {

// nullptr when this CPU has no micro-kernel for it (no AVX-512); the caller
// then uses the packed GEMM path.
std::unique_ptr<ConvKernel> makeUnpackedBackwardFilter(const ConvShape& shape, const std::string& layer);

}  // namespace stepscope
