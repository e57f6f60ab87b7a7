#include "cuda/peak_cuda.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>

#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/cuda_stream.h"
#include "cuda/device.h"

namespace stepscope {
namespace {

constexpr int kGemm = 8192;
constexpr size_t kCopyBytes = size_t(1) << 30;

__global__ void toBf16(const float* __restrict__ in, __nv_bfloat16* __restrict__ out, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) out[i] = __float2bfloat16(in[i]);
}

// The best time (ms) of `trials` runs of body on `stream`, after one warm-up.
double bestMs(cudaStream_t stream, int trials, const std::function<void()>& body, const char* what) {
  cudaEvent_t start = nullptr, end = nullptr;
  checkCuda(cudaEventCreate(&start), "cudaEventCreate", what);
  checkCuda(cudaEventCreate(&end), "cudaEventCreate", what);
  double best = 1e300;
  try {
    for (int t = 0; t <= trials; ++t) {
      checkCuda(cudaEventRecord(start, stream), "cudaEventRecord", what);
      body();
      checkCuda(cudaEventRecord(end, stream), "cudaEventRecord", what);
      checkCuda(cudaEventSynchronize(end), "cudaEventSynchronize", what);
      float ms = 0;
      checkCuda(cudaEventElapsedTime(&ms, start, end), "cudaEventElapsedTime", what);
      if (t > 0) best = std::min(best, double(ms));  // run 0 warms up
    }
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(end);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(end);
  return best;
}

}  // namespace

CudaPeak measureCudaPeak(int trials) {
  requireDevice("measurePeak");
  useDevice(selectedDevice());
  CudaPeak peak;
  peak.gemmSize = kGemm;
  peak.trials = trials;
  const size_t n2 = size_t(kGemm) * kGemm;
  // Random fp32 operands (never zeros: data-dependent power would flatter the clock).
  CudaMemory a(n2), b(n2), c(n2);
  a.fillUniform(1, -1, 1);
  b.fillUniform(2, -1, 1);
  // bf16 operands: a and b rounded to bf16.
  DeviceScratch bf16(2 * n2 * sizeof(__nv_bfloat16));
  auto* a16 = static_cast<__nv_bfloat16*>(bf16.get());
  auto* b16 = a16 + n2;
  toBf16<<<4096, 256>>>(a.data(), a16, (long long)n2);
  toBf16<<<4096, 256>>>(b.data(), b16, (long long)n2);
  checkCuda(cudaGetLastError(), "bf16 operands", "measurePeak");
  checkCuda(cudaDeviceSynchronize(), "bf16 operands", "measurePeak");
  cudaStream_t stream = nullptr;
  checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate", "measurePeak");
  cublasHandle_t h = cublasHandle();
  try {
    checkCublas(cublasSetStream(h, stream), "cublasSetStream", "measurePeak");
    const double flops = 2.0 * double(kGemm) * kGemm * kGemm;
    const float one = 1.0f, zero = 0.0f;
    auto gemm = [&](cudaDataType type, cublasComputeType_t compute, const char* what) {
      return bestMs(stream, trials, [&] {
        const bool bf = type == CUDA_R_16BF;
        const void* A = bf ? static_cast<const void*>(a16) : a.data();
        const void* B = bf ? static_cast<const void*>(b16) : b.data();
        checkCublas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, kGemm, kGemm, kGemm, &one, A, type, kGemm, B, type, kGemm, &zero, c.data(), CUDA_R_32F,
                                 kGemm, compute, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmEx", what);
      }, what);
    };
    peak.fp32Gflops = flops / (gemm(CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, "fp32 gemm") * 1e6);
    peak.tf32Gflops = flops / (gemm(CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, "tf32 gemm") * 1e6);
    peak.bf16Gflops = flops / (gemm(CUDA_R_16BF, CUBLAS_COMPUTE_32F, "bf16 gemm") * 1e6);
    // Copy bandwidth: 1 GiB read and 1 GiB written per copy.
    CudaMemory src(kCopyBytes / sizeof(float)), dst(kCopyBytes / sizeof(float));
    src.fillUniform(3, -1, 1);
    const double ms = bestMs(stream, trials, [&] {
      checkCuda(cudaMemcpyAsync(dst.data(), src.data(), kCopyBytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync", "bandwidth");
    }, "bandwidth");
    peak.bandwidthGBs = 2.0 * double(kCopyBytes) / (ms * 1e6);
  } catch (...) {
    cublasSetStream(h, nullptr);  // the thread's shared handle must not keep a destroyed stream
    cudaStreamDestroy(stream);
    throw;
  }
  cublasSetStream(h, nullptr);
  cudaStreamDestroy(stream);
  return peak;
}

}  // namespace stepscope
