// Op sgd's parameters and buffers, shared by both backends: one tensor
// (size), or with tensors=k a group of k tensors updated by one kernel
// (size0 .. size{k-1}; buffers param.i, grad.i, momentum_buffer.i for each i
// in turn): the CUDA step's whole optimizer step in one launch instead of one
// per parameter (161 in ResNet-50).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/op_params.h"

namespace stepscope {

constexpr int kSgdMaxTensors = 4096;

struct SgdParams {
  std::vector<int64_t> sizes;
  float lr, momentum, weightDecay;
  bool group;  // tensors=k given: the buffers' names carry the index
};

inline SgdParams sgdParams(const OpParams& p) {
  SgdParams s{{}, float(p.number("lr")), float(p.number("momentum", 0.0)), float(p.number("weightDecay", 0.0)), p.number("tensors", 0) != 0};
  if (!s.group) {
    s.sizes.push_back(p.integer("size", 1, 2147483647));
    return s;
  }
  const int k = p.integer("tensors", 1, kSgdMaxTensors);
  for (int i = 0; i < k; ++i) s.sizes.push_back(p.integer("size" + std::to_string(i), 1, 2147483647));
  return s;
}

inline std::vector<BufferSpec> sgdBuffers(const SgdParams& s) {
  std::vector<BufferSpec> buffers;
  for (size_t i = 0; i < s.sizes.size(); ++i) {
    const std::string tag = s.group ? "." + std::to_string(i) : "";
    for (const char* name : {"param", "grad", "momentum_buffer"}) buffers.push_back({name + tag, s.sizes[i]});
  }
  return buffers;
}

inline double sgdElements(const SgdParams& s) {
  double total = 0;
  for (int64_t n : s.sizes) total += double(n);
  return total;
}

}  // namespace stepscope
