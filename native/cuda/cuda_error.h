// CUDA, cuDNN and cuBLAS failures as stepscope::Error exceptions that carry
// the library's status name and the layer, so that JS gets a typed error
// (code, status, layer) and the process never aborts.
//   ERR_NO_DEVICE      no usable GPU or driver (the reason is CUDA's)
//   ERR_OUT_OF_MEMORY  cudaErrorMemoryAllocation, CUDNN/CUBLAS_STATUS_ALLOC_FAILED
//   ERR_UNSUPPORTED    the library does not support this algorithm or shape
//   ERR_CUDA / ERR_CUDNN / ERR_CUBLAS  any other status
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <string>

#include "core/error.h"

namespace stepscope {

class CudaError : public Error {
 public:
  CudaError(std::string code, const std::string& message, std::string status, std::string layer)
      : Error(std::move(code), message), status_(std::move(status)), layer_(std::move(layer)) {}
  const std::string& status() const { return status_; }
  const std::string& layer() const { return layer_; }
  std::vector<std::pair<std::string, std::string>> details() const override { return {{"status", status_}, {"layer", layer_}}; }

 private:
  std::string status_;
  std::string layer_;
};

// `what` names the call, `context` the layer/pass/variant (may be empty).
void checkCuda(cudaError_t status, const char* what, const std::string& context = "");
void checkCudnn(cudnnStatus_t status, const char* what, const std::string& context = "");
void checkCublas(cublasStatus_t status, const char* what, const std::string& context = "");

}  // namespace stepscope
