// The machine's measured peak, by our own small kernels: fp32 FMA throughput
// (register-resident FMA chains on every thread) and memory bandwidth (a
// STREAM-style triad over arrays far larger than the caches).
#pragma once

namespace stepscope {

struct PeakResult {
  double fmaGflops = 0;       // best of the trials, all threads
  double bandwidthGBs = 0;    // best of the trials, all threads, bytes read + written
  int threads = 0;
  const char* fmaKernel = "";  // which ISA the FMA kernel used
};

// Blocking; call off the event loop.
PeakResult measurePeak(int trials);

}  // namespace stepscope
