#include "cuda/device.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"

#ifdef STEPSCOPE_HAVE_NCCL
#include <nccl.h>
#endif

namespace stepscope {

namespace {
DeviceStatus status;
std::atomic<bool> deviceInUse{false};  // set by the first device object

// The selected device's properties into `status`; false (with the reason) on failure.
bool readProperties(int index) {
  cudaDeviceProp prop{};
  const cudaError_t e = cudaGetDeviceProperties(&prop, index);
  if (e != cudaSuccess) {
    cudaGetLastError();
    status.available = false;
    status.reason = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e);
    return false;
  }
  status.available = true;
  status.device = index;
  status.name = prop.name;
  status.ccMajor = prop.major;
  status.ccMinor = prop.minor;
  status.memoryBytes = double(prop.totalGlobalMem);
  status.smCount = prop.multiProcessorCount;
  return true;
}
}  // namespace

DeviceStatus deviceStatus() {
  static std::once_flag once;
  std::call_once(once, [] {
    cudaRuntimeGetVersion(&status.runtimeVersion);
    cudaDriverGetVersion(&status.driverVersion);  // 0, not an error, without a driver
    cudaError_t e = cudaGetDeviceCount(&status.count);
    if (e != cudaSuccess) {
      cudaGetLastError();
      status.count = 0;
      status.reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      return;
    }
    if (status.count == 0) {
      status.reason = "no CUDA device found";
      return;
    }
    readProperties(0);
  });
  return status;
}

void requireDevice(const char* what) {
  DeviceStatus s = deviceStatus();
  if (!s.available) throw CudaError("ERR_NO_DEVICE", std::string(what) + ": no CUDA device: " + s.reason, s.reason, "");
  deviceInUse = true;
}

void selectDevice(int index) {
  const DeviceStatus s = deviceStatus();
  if (!s.available && s.count == 0) throw CudaError("ERR_NO_DEVICE", "setDevice: no CUDA device: " + s.reason, s.reason, "");
  if (index < 0 || index >= s.count) {
    throw Error("ERR_INVALID_ARG", "setDevice: device " + std::to_string(index) + " is not in 0.." + std::to_string(s.count - 1) +
                                       " (" + std::to_string(s.count) + " visible GPU" + (s.count == 1 ? "" : "s") + ")");
  }
  if (index == s.device) return;
  if (deviceInUse) {
    throw Error("ERR_INVALID_STATE", "setDevice(" + std::to_string(index) + "): device " + std::to_string(s.device) +
                                         " already holds streams or buffers; select the device before any other CUDA call");
  }
  useDevice(index);
  if (!readProperties(index)) throw CudaError("ERR_CUDA", "setDevice: " + status.reason, status.reason, "");
}

int selectedDevice() { return deviceStatus().device; }

std::vector<DeviceProperties> allDeviceProperties() {
  static std::once_flag once;
  static std::vector<DeviceProperties> all;
  std::call_once(once, [] {
    const DeviceStatus s = deviceStatus();
    for (int i = 0; i < s.count; ++i) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      all.push_back({i, prop.name, prop.major, prop.minor, double(prop.totalGlobalMem), prop.multiProcessorCount});
    }
  });
  return all;
}

DeviceProperties deviceProperties(int index) {
  requireDevice("deviceProperties");
  for (const DeviceProperties& p : allDeviceProperties()) {
    if (p.index == index) return p;
  }
  throw Error("ERR_INVALID_ARG", "GPU " + std::to_string(index) + " is not visible (" + std::to_string(deviceStatus().count) + " GPUs)");
}

void useDevice(int index) {
  int current = -1;
  // cudaGetDevice is a thread-local read: cheaper than a redundant cudaSetDevice.
  if (cudaGetDevice(&current) == cudaSuccess && current == index) return;
  checkCuda(cudaSetDevice(index), "cudaSetDevice", "GPU " + std::to_string(index));
}

cudaError_t trySetDevice(int index) noexcept {
  const cudaError_t e = cudaSetDevice(index);
  if (e != cudaSuccess) cudaGetLastError();
  return e;
}

int currentDevice() {
  int current = 0;
  checkCuda(cudaGetDevice(&current), "cudaGetDevice");
  return current;
}

int bindDevice(int index, const char* what) {
  requireDevice(what);
  const int device = deviceOrDefault(index, what);
  useDevice(device);
  return device;
}

int deviceOrDefault(int index, const char* what) {
  const DeviceStatus s = deviceStatus();
  if (index == -1) return s.device;
  if (index < 0 || index >= s.count) {
    throw Error("ERR_INVALID_ARG", std::string(what) + ": device " + std::to_string(index) + " is not in 0.." + std::to_string(s.count - 1) + " (" +
                                       std::to_string(s.count) + " visible GPU" + (s.count == 1 ? "" : "s") + ")");
  }
  return index;
}

static std::string dotted(size_t v, size_t major, size_t minor) {
  return std::to_string(v / major) + "." + std::to_string((v % major) / minor) + "." + std::to_string(v % minor);
}

// cuDNN 9's libcudnn.so.9 is a loader that aborts the process when a
// sub-library (graph, ops, cnn) cannot be loaded, as under AddressSanitizer.
// This checks first, so that no cuDNN call is ever made when it would abort:
// empty when usable, else the reason.
static const std::string& cudnnUnusableReason() {
  static const std::string reason = [] {
    // The sanitizer runtime rejects the loader's dlopen flags (RTLD_DEEPBIND).
    if (dlsym(RTLD_DEFAULT, "__asan_init")) return std::string("not used under AddressSanitizer (cuDNN's loader aborts there)");
    // dlopen searches this addon's RUNPATH, which holds cuDNN's folder.
    for (const char* lib : {"libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9"}) {
      if (!dlopen(lib, RTLD_LAZY | RTLD_LOCAL)) {
        const char* e = dlerror();
        return std::string("cuDNN sub-library missing: ") + (e ? e : lib);
      }
    }
    return std::string();
  }();
  return reason;
}

LibraryVersions libraryVersions() {
  LibraryVersions v;
  v.cudnnReason = cudnnUnusableReason();
  if (v.cudnnReason.empty()) {
    v.cudnn = dotted(cudnnGetVersion(), 10000, 100);          // 9.24.0 is 92400
    v.cudnnCudart = dotted(cudnnGetCudartVersion(), 1000, 10); // 13.0.0 is 13000
  }
  int major = 0, minor = 0, patch = 0;
  cublasGetProperty(MAJOR_VERSION, &major);
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  v.cublas = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
#ifdef STEPSCOPE_HAVE_NCCL
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess) v.nccl = dotted(size_t(nccl), 10000, 100);  // 2.30.7 is 23007
#else
  v.ncclReason = STEPSCOPE_NCCL_BUILD_STATUS;
#endif
  return v;
}

namespace {
// Never destroyed, as in PyTorch: at process exit the CUDA runtime may be
// torn down before thread-local destructors would run.
struct ThreadHandles {
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  DeviceScratch* cublasWorkspace = nullptr;  // never freed, as the handle
};
thread_local std::vector<ThreadHandles> perDevice;

// The calling thread's handles for its current GPU (a handle belongs to the
// device that was current when it was made).
ThreadHandles& currentHandles(const char* what) {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) {
    cudaGetLastError();
    requireDevice(what);  // no device: its reason
    checkCuda(e, "cudaGetDevice", what);
  }
  if (size_t(device) >= perDevice.size()) perDevice.resize(size_t(device) + 1);
  return perDevice[size_t(device)];
}
}  // namespace

cudnnHandle_t cudnnHandle() {
  if (!cudnnUnusableReason().empty()) throw CudaError("ERR_UNAVAILABLE", "cuDNN is unavailable: " + cudnnUnusableReason(), "", "");
  ThreadHandles& handles = currentHandles("cuDNN");
  if (!handles.cudnn) {
    requireDevice("cuDNN");
    checkCudnn(cudnnCreate(&handles.cudnn), "cudnnCreate");
  }
  return handles.cudnn;
}

cublasHandle_t cublasHandle() {
  ThreadHandles& handles = currentHandles("cuBLAS");
  if (!handles.cublas) {
    requireDevice("cuBLAS");
    checkCublas(cublasCreate(&handles.cublas), "cublasCreate");
  }
  return handles.cublas;
}

cublasHandle_t cublasOn(cudaStream_t stream, const std::string& context) {
  cublasHandle_t handle = cublasHandle();
  ThreadHandles& handles = currentHandles("cuBLAS");
  if (!handles.cublasWorkspace) handles.cublasWorkspace = new DeviceScratch(kCublasWorkspaceBytes);
  checkCublas(cublasSetStream(handle, stream), "cublasSetStream", context);
  checkCublas(cublasSetWorkspace(handle, handles.cublasWorkspace->get(), handles.cublasWorkspace->bytes()), "cublasSetWorkspace", context);
  return handle;
}

}  // namespace stepscope
