// The GPU, the driver and the libraries, as far as this process can see them,
// and the per-thread library handles. Nothing here aborts without a driver:
// deviceStatus() says why there is no device, requireDevice() throws it.
#pragma once
#include <cublas_v2.h>
#include <cudnn.h>

#include <string>

namespace stepscope {

struct DeviceStatus {
  bool available = false;
  std::string reason;  // why not, when !available
  int count = 0;
  int device = 0;
  std::string name;
  int ccMajor = 0, ccMinor = 0;
  double memoryBytes = 0;
  int smCount = 0;
  int driverVersion = 0;   // e.g. 13000; 0 without a driver
  int runtimeVersion = 0;  // the cudart this addon was linked with
};

DeviceStatus deviceStatus();  // of the selected device; cached
// Throws ERR_NO_DEVICE with CUDA's reason; `what` names the caller.
void requireDevice(const char* what);
// Makes GPU `index` this process's device (one rank per GPU: LOCAL_RANK).
// Only before the first stream, buffer, event or handle: they belong to the
// device that was current when they were made. Throws ERR_INVALID_ARG for an
// index out of range, ERR_INVALID_STATE once device objects exist.
void selectDevice(int index);
int selectedDevice();

struct LibraryVersions {
  std::string cudnn, cudnnCudart, cublas, nccl;
  std::string cudnnReason;  // when cuDNN cannot be used (see cudnnUsable)
  std::string ncclReason;   // when NCCL was not built in
};

// cuDNN 9's libcudnn.so.9 is a loader that aborts the process when a
// sub-library (graph, ops, cnn) cannot be loaded, as under AddressSanitizer.
// This checks first, so that no cuDNN call is ever made when it would abort:
// empty when usable, else the reason.
const std::string& cudnnUnusableReason();
LibraryVersions libraryVersions();  // needs no device

// Handles of the current thread, created on first use (they are not
// thread-safe; each libuv worker or main thread gets its own).
cudnnHandle_t cudnnHandle();
cublasHandle_t cublasHandle();

}  // namespace stepscope
