// Workspace buffers of the unpacked conv kernels.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <memory>

namespace stepscope {

struct FreeWorkspace {
  void operator()(float* p) const { std::free(p); }
};
using WorkspaceBuffer = std::unique_ptr<float, FreeWorkspace>;

// `count` floats, 64-byte aligned; from 1 MB up, 2 MB aligned and backed by
// transparent huge pages where the kernel allows it (madvise). Why: the
// kernels keep a 0.3-0.6 MB weight or dY panel in L2 while they sweep it;
// on 4 KB pages its physical placement decides how evenly it spreads over
// L2's sets (res5 fwd / bwd-data measured 3-5% faster on huge pages).
// Throws ERR_OUT_OF_MEMORY.
WorkspaceBuffer allocateWorkspace(size_t count);

}  // namespace stepscope
