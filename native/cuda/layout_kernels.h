// Layout transposes on the device: the step's input NCHW -> NHWC (op
// `to-nhwc`), and the weights KCRS <-> KRSC around cuDNN's NHWC convolutions
// (the step keeps its weights KCRS: as loaded, saved and updated by SGD).
#pragma once
#include <cuda_runtime_api.h>

namespace stepscope {

// y[n, s, c] = x[n, c, s] for an [n, c, s] activation.
void launchNchwToNhwc(const float* x, float* y, long long n, long long c, long long s, cudaStream_t stream);
// krsc[k, rs, c] = kcrs[k, c, rs], and back.
void launchKcrsToKrsc(const float* kcrs, float* krsc, long long k, long long c, long long rs, cudaStream_t stream);
void launchKrscToKcrs(const float* krsc, float* kcrs, long long k, long long c, long long rs, cudaStream_t stream);

}  // namespace stepscope
