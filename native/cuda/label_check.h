// softmax-xent's label check on the GPU. The labels live in device memory, so
// the host cannot look at them without a copy and a wait; the loss kernel
// looks instead and leaves one 64-bit word (cuda/device_check.h): the first
// row whose label is not a class index, with the label's bits, or -1. The
// host turns that word into the CPU backend's message (cpu/loss.cc).
// Shared with check/op_host_check.cc, which checks both against the CPU.
#pragma once

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>

#include "core/host_device.h"

namespace stepscope {
namespace cudaops {

// An integer in 0..classes-1 (NaN and infinities are not). The range test
// comes first: converting an out-of-range float to int is undefined.
SS_HD inline bool isClassIndex(float label, int classes) {
  return label >= 0.0f && label < float(classes) && label == float(int(label));
}

// Row in the high 32 bits, the label's float bits in the low: one store, so a
// reader sees a whole word.
SS_HD inline long long badLabelWord(int row, float label) {
  uint32_t bits;
  memcpy(&bits, &label, sizeof bits);
  return (long long)(uint64_t(uint32_t(row)) << 32 | bits);
}

// The first row of n whose label is not a class index, as badLabelWord; -1 if none.
SS_HD inline long long firstBadLabelWord(const float* labels, int n, int classes) {
  for (int i = 0; i < n; ++i)
    if (!isClassIndex(labels[i], classes)) return badLabelWord(i, labels[i]);
  return -1;
}

// The CPU backend's message for a bad word (cpu/loss.cc), word != -1.
inline std::string badLabelMessage(long long word, int classes) {
  const uint64_t w = uint64_t(word);
  const uint32_t bits = uint32_t(w & 0xFFFFFFFFu);
  float label;
  memcpy(&label, &bits, sizeof label);
  std::ostringstream text;
  text << "softmax-xent: label " << label << " of sample " << (w >> 32) << " is not a class index in 0.." << classes - 1;
  return text.str();
}

}  // namespace cudaops
}  // namespace stepscope
