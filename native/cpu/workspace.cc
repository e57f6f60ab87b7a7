#include "cpu/workspace.h"

#include <sys/mman.h>

#include <algorithm>
#include <string>

#include "core/error.h"

namespace stepscope {

WorkspaceBuffer allocateWorkspace(size_t count) {
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t bytes = std::max<size_t>(count, 1) * sizeof(float);
  const bool huge = bytes >= (size_t(1) << 20);
  const size_t alignment = huge ? kHugePage : 64;
  const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  WorkspaceBuffer b(static_cast<float*>(std::aligned_alloc(alignment, rounded)));
  if (!b) throw Error("ERR_OUT_OF_MEMORY", "conv: could not allocate " + std::to_string(bytes) + " bytes of workspace");
#ifdef MADV_HUGEPAGE
  if (huge) madvise(b.get(), rounded, MADV_HUGEPAGE);  // a hint: without it, 4 KB pages
#endif
  return b;
}

}  // namespace stepscope
