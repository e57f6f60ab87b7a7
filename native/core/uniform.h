// The counter-based uniform generator behind Buffer.fillUniform, shared by the
// CPU addon and the CUDA kernels (host and device), so that both backends fill
// the same values for the same seed (the same initial weights, the same data).
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace stepscope {

SS_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Element i of a fill with key splitmix64(seed): lo + 24 random bits * (hi - lo) / 2^24.
// In double, where the product (24 bits by 24 bits) is exact: a compiler that fuses the
// multiply and the add (nvcc does by default, g++ with -march=native) rounds the same sum
// once either way, so every backend and build fills bit-identical values. In float, the
// fused and the unfused forms differed in the last bit for ~22% of the elements.
SS_HD inline float uniformAt(uint64_t key, int64_t i, float lo, float scale) {
  const uint64_t bits = splitmix64(key ^ static_cast<uint64_t>(i));
  return static_cast<float>(static_cast<double>(lo) + static_cast<double>(bits >> 40) * static_cast<double>(scale));
}

}  // namespace stepscope
