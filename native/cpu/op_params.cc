// OpParams: the range checks name the op and the field.
#include "cpu/op_params.h"

#include <cmath>

#include "core/error.h"

namespace stepscope {

double OpParams::number(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw Error("ERR_INVALID_ARG", op_ + ": parameter '" + name + "' is missing");
  if (!std::isfinite(it->second)) {
    throw Error("ERR_INVALID_ARG", op_ + ": parameter '" + name + "' is " + std::to_string(it->second) + ", not finite");
  }
  return it->second;
}

double OpParams::number(const std::string& name, double fallback) const {
  return values_.count(name) ? number(name) : fallback;
}

int OpParams::integer(const std::string& name, int lo, int hi) const {
  double v = number(name);
  if (v != std::floor(v) || v < lo || v > hi) {
    throw Error("ERR_INVALID_ARG", op_ + ": parameter '" + name + "' is " + std::to_string(v) + ": allowed an integer from " +
                                       std::to_string(lo) + " to " + std::to_string(hi));
  }
  return int(v);
}

int OpParams::integer(const std::string& name, int lo, int hi, int fallback) const {
  return values_.count(name) ? integer(name, lo, hi) : fallback;
}

}  // namespace stepscope
