// The GPU, the driver and the libraries, as far as this process can see them,
// and the per-thread library handles. Nothing here aborts without a driver:
// deviceStatus() says why there is no device, requireDevice() throws it.
#pragma once
#include <cublas_v2.h>
#include <cudnn.h>

#include <string>
#include <vector>

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

// One visible GPU's properties (cached; no context is made).
struct DeviceProperties {
  int index = 0;
  std::string name;
  int ccMajor = 0, ccMinor = 0;
  double memoryBytes = 0;
  int smCount = 0;
};
// Every visible GPU (empty without a device).
std::vector<DeviceProperties> allDeviceProperties();
// GPU `index`'s; ERR_INVALID_ARG out of range, ERR_NO_DEVICE without a device.
DeviceProperties deviceProperties(int index);
// Throws ERR_NO_DEVICE with CUDA's reason; `what` names the caller.
void requireDevice(const char* what);
// Makes GPU `index` this process's default device (one rank per GPU:
// LOCAL_RANK): streams, buffers and kernels made without a device go there.
// Only before the first of them. Throws ERR_INVALID_ARG for an index out of
// range, ERR_INVALID_STATE once device objects exist.
void selectDevice(int index);
int selectedDevice();

// Several GPUs in one process: every device object (stream, buffer, kernel,
// event) remembers its GPU, and every call that touches it first makes that
// GPU the calling thread's current one (useDevice). Nothing relies on what
// was current before, so replicas on different GPUs can be driven in turn
// from one thread.
// Makes `index` current on the calling thread (cheap when it already is).
void useDevice(int index);
// The same for destructors, watchdogs and open NCCL groups, which must not
// throw: CUDA's status; a failure is also cleared from cudaGetLastError, so
// that the next launch check does not blame its kernel for it.
cudaError_t trySetDevice(int index) noexcept;
// The calling thread's current GPU.
int currentDevice();
// `index` when it names a visible GPU, the default device for -1; else ERR_INVALID_ARG naming `what`.
int deviceOrDefault(int index, const char* what);
// What a device object's constructor does first: requireDevice, deviceOrDefault, useDevice; the GPU.
int bindDevice(int index, const char* what);

struct LibraryVersions {
  std::string cudnn, cudnnCudart, cublas, nccl;
  std::string cudnnReason;  // when cuDNN cannot be used (see cudnnUsable)
  std::string ncclReason;   // when NCCL was not built in
};

LibraryVersions libraryVersions();  // needs no device

// Handles of the current thread and its current device, created on first
// use (they are not thread-safe; each libuv worker or main thread gets its
// own, one per GPU).
cudnnHandle_t cudnnHandle();
cublasHandle_t cublasHandle();
// cublasHandle() bound to `stream` with a workspace of its own (kCublasWorkspaceBytes, made once per thread and
// GPU, counted as device scratch): cublasSetStream resets a handle to cuBLAS's default pool, from which a launch in
// a graph capture would put allocation nodes into the graph, outside our memory statistics. The workspace is the
// thread's for that GPU, shared by its streams: GEMMs of two streams of one GPU must not run at once (today only
// the compute stream, or one benchmark or check stream, runs them).
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;  // NVIDIA's recommendation for Hopper
cublasHandle_t cublasOn(cudaStream_t stream, const std::string& context);

}  // namespace stepscope
