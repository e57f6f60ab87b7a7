// Counter-based randomness for the input pipeline: every draw is a pure
// function of (seed, epoch, sample index, draw number), so a sample's crop and
// flip do not depend on which thread prepares it, or when.
#pragma once
#include <cmath>
#include <cstdint>

namespace stepscope {

// SplitMix64's finalizer: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t epoch, uint64_t index)
      : key_(mix64(mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ epoch) + index)) {}

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(mix64(key_ + (++counter_) * 0x9e3779b97f4a7c15ULL) >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi) (hi > lo).
  int64_t integer(int64_t lo, int64_t hi) { return lo + int64_t(std::floor(uniform() * double(hi - lo))); }

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

}  // namespace stepscope
