// The CUDA group SGD's schedule (ops_element.cu, op sgd with tensors=k): the
// tensors cut into spans of at most kSgdSpan elements, one block each, so a
// 2.4M-value layer and a 64-value bias both get whole blocks and one launch
// covers all. check/op_host_check.cc runs these spans against the CPU kernel.
#pragma once
#include <cstdint>
#include <vector>

namespace stepscope {
namespace cudaops {

constexpr long long kSgdSpan = 1 << 13;  // 32 values per thread: ~3300 blocks for ResNet-50's 25.5M

struct SgdSpan {
  int tensor;
  long long begin, end;
};

inline std::vector<SgdSpan> sgdSpans(const std::vector<int64_t>& sizes) {
  std::vector<SgdSpan> spans;
  for (size_t t = 0; t < sizes.size(); ++t) {
    for (long long b = 0; b < sizes[t]; b += kSgdSpan) spans.push_back({int(t), b, b + kSgdSpan < sizes[t] ? b + kSgdSpan : sizes[t]});
  }
  return spans;
}

}  // namespace cudaops
}  // namespace stepscope
