// Layout and dtype conversions on the device: the step's input (fp32 NCHW)
// into its activations' layout and dtype (op `input`), and the weights
// (fp32 KCRS, as loaded, saved and updated by SGD) into what cuDNN's
// convolutions take (KRSC for NHWC, bf16 for --dtype bf16), and their
// gradient back.
#pragma once
#include <cuda_runtime_api.h>

namespace stepscope {

// y[n, c, s] as NHWC when nhwc, in bf16 when bf16 (y's elements are then Bf16), from fp32 NCHW x.
void launchInputConversion(const float* x, void* y, long long n, long long c, long long s, bool nhwc, bool bf16, cudaStream_t stream);
// out = kcrs arranged KRSC when krsc, in bf16 when bf16; and the way back into fp32 KCRS.
void launchWeightsForCudnn(const float* kcrs, void* out, long long k, long long c, long long rs, bool krsc, bool bf16, cudaStream_t stream);
void launchWeightsFromCudnn(const void* in, float* kcrs, long long k, long long c, long long rs, bool krsc, bool bf16, cudaStream_t stream);

}  // namespace stepscope
