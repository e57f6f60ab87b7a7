#include "cuda/cuda_error.h"

namespace stepscope {

static std::string where(const char* what, const std::string& context) {
  return context.empty() ? std::string(what) : context + ": " + what;
}

void checkCuda(cudaError_t status, const char* what, const std::string& context) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky-free error so the next call starts clean
  const std::string name = cudaGetErrorName(status);
  std::string code = "ERR_CUDA";
  if (status == cudaErrorMemoryAllocation) code = "ERR_OUT_OF_MEMORY";
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver || status == cudaErrorInitializationError)
    code = "ERR_NO_DEVICE";
  throw CudaError(code, where(what, context) + " failed: " + name + " (" + cudaGetErrorString(status) + ")", name, context);
}

void checkCudnn(cudnnStatus_t status, const char* what, const std::string& context) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  const std::string name = cudnnGetErrorString(status);
  std::string code = "ERR_CUDNN";
  // cuDNN 9 statuses come in families of a thousand (3xxx: not supported).
  // 3005-3009 say the installation cannot run cuDNN at all (driver, runtime,
  // architecture, a missing sub-library): an error, not one layer's refusal.
  if (int(status) / 1000 == 3 && !(int(status) >= 3005 && int(status) <= 3009)) code = "ERR_UNSUPPORTED";
  if (status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
      status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
    code = "ERR_OUT_OF_MEMORY";
  cudaGetLastError();  // a runtime error cuDNN left behind is not the next launch's
  throw CudaError(code, where(what, context) + " failed: " + name, name, context);
}

static const char* cublasStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

void checkCublas(cublasStatus_t status, const char* what, const std::string& context) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const std::string name = cublasStatusName(status);
  std::string code = "ERR_CUBLAS";
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_ARCH_MISMATCH) code = "ERR_UNSUPPORTED";
  if (status == CUBLAS_STATUS_ALLOC_FAILED) code = "ERR_OUT_OF_MEMORY";
  throw CudaError(code, where(what, context) + " failed: " + name, name, context);
}

}  // namespace stepscope
