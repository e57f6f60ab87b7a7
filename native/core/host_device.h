// SS_HD marks an inline function for both the host and, under nvcc, the
// device: the arithmetic the CUDA kernels share with host code and host checks.
#pragma once

#ifdef __CUDACC__
#define SS_HD __host__ __device__
#else
#define SS_HD
#endif
