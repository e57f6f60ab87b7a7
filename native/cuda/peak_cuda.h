// The GPU's measured peaks, the denominators of every "% of peak" on the
// CUDA backend: cuBLAS GEMMs of 8192^3 in fp32 (FMA, no tensor cores), TF32
// and bf16 tensor cores (fp32 accumulation), and device-to-device copy
// bandwidth (bytes read + written). The best of `trials` timed runs each,
// after one warm-up, timed with CUDA events.
#pragma once

namespace stepscope {

struct CudaPeak {
  double fp32Gflops = 0, tf32Gflops = 0, bf16Gflops = 0, bandwidthGBs = 0;
  int gemmSize = 0;
  int trials = 0;
};

// Needs a device (ERR_NO_DEVICE) and ~3.2 GB of device memory (ERR_OUT_OF_MEMORY).
CudaPeak measureCudaPeak(int trials);

}  // namespace stepscope
