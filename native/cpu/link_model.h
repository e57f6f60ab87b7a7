// The modeled link of a `link-hold` op (CPU and CUDA alike): the time a ring
// all-reduce of `bytes` among `workers` takes on a link of `gbps` with
// `latencyUs` per step, 2(W-1) latencies plus 2(W-1)/W of the bytes. The
// parameters are checked here, and the hold is capped: a sleep of hours (or
// of infinity, from a tiny gbps) would hang the stream.
#pragma once
#include <cmath>
#include <sstream>
#include <string>

#include "core/error.h"
#include "cpu/op_params.h"

namespace stepscope {

// An hour: a study of slow links fits, a sleep of days or of infinity (from a
// tiny gbps) does not. src/schedule/link-hold.ts refuses the same before a run.
constexpr double kMaxLinkHoldSeconds = 3600;

inline double linkHoldSeconds(const OpParams& p, int workers) {
  const double bytes = p.number("bytes");
  if (!(bytes >= 0 && std::isfinite(bytes))) throw Error("ERR_INVALID_ARG", "link-hold: parameter 'bytes' must be a finite number >= 0");
  const double gbps = p.number("gbps");
  if (!(gbps > 0)) throw Error("ERR_INVALID_ARG", "link-hold: parameter 'gbps' must be positive");
  const double latencyUs = p.number("latencyUs", 0.0);
  if (!(latencyUs >= 0)) throw Error("ERR_INVALID_ARG", "link-hold: parameter 'latencyUs' must be >= 0");
  const double w = workers;
  const double seconds = workers > 1 ? 2 * (w - 1) * latencyUs * 1e-6 + 2 * (w - 1) / w * bytes / (gbps * 1e9) : 0.0;
  if (!(seconds <= kMaxLinkHoldSeconds)) {
    std::ostringstream why;
    why << "link-hold: " << bytes << " bytes among " << workers << " workers at " << gbps << " GB/s and " << latencyUs
        << " us hold the link " << seconds << " s, more than the " << kMaxLinkHoldSeconds << " s allowed (raise gbps or lower bytes)";
    throw Error("ERR_INVALID_ARG", why.str());
  }
  return seconds;
}

}  // namespace stepscope
