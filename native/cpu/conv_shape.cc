#include "cpu/conv_shape.h"

#include "core/error.h"

namespace stepscope {

ConvPass parseConvPass(const std::string& name) {
  if (name == "fwd") return ConvPass::Forward;
  if (name == "bwd-data") return ConvPass::BackwardData;
  if (name == "bwd-filter") return ConvPass::BackwardFilter;
  throw Error("ERR_INVALID_ARG", "unknown pass '" + name + "': allowed fwd, bwd-data, bwd-filter");
}

const char* convPassName(ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return "fwd";
    case ConvPass::BackwardData: return "bwd-data";
    case ConvPass::BackwardFilter: return "bwd-filter";
  }
  return "?";
}

static void requireRange(const char* field, int value, int lo, int hi) {
  if (value < lo || value > hi) {
    throw Error("ERR_BAD_SHAPE", std::string("conv shape field '") + field + "' is " + std::to_string(value) +
                                     ": allowed " + std::to_string(lo) + " to " + std::to_string(hi));
  }
}

void ConvShape::validate() const {
  requireRange("n", n, 1, 1 << 16);
  requireRange("c", c, 1, 1 << 16);
  requireRange("h", h, 1, 1 << 16);
  requireRange("w", w, 1, 1 << 16);
  requireRange("k", k, 1, 1 << 16);
  requireRange("r", r, 1, 64);
  requireRange("s", s, 1, 64);
  requireRange("stride", stride, 1, 64);
  requireRange("pad", pad, 0, 64);
  if (pad >= r || pad >= s) {
    throw Error("ERR_BAD_SHAPE", "conv pad " + std::to_string(pad) + " must be smaller than the filter (" +
                                     std::to_string(r) + "x" + std::to_string(s) + ")");
  }
  if (h + 2 * pad < r || w + 2 * pad < s) {
    throw Error("ERR_BAD_SHAPE", "conv input " + std::to_string(h) + "x" + std::to_string(w) + " with pad " +
                                     std::to_string(pad) + " is smaller than the filter " + std::to_string(r) + "x" +
                                     std::to_string(s));
  }
  const int64_t limit = int64_t(1) << 31;
  if (xSize() >= limit || wSize() >= limit || ySize() >= limit) {
    throw Error("ERR_BAD_SHAPE", "conv " + describe() + " has a tensor of 2^31 elements or more");
  }
}

std::string ConvShape::describe() const {
  return "n" + std::to_string(n) + " c" + std::to_string(c) + " " + std::to_string(h) + "x" + std::to_string(w) +
         " k" + std::to_string(k) + " " + std::to_string(r) + "x" + std::to_string(s) + "/" + std::to_string(stride) +
         " pad" + std::to_string(pad);
}

}  // namespace stepscope
