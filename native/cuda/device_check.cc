#include "cuda/device_check.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_error.h"

namespace stepscope {
namespace {

std::mutex registryMutex;
std::vector<std::weak_ptr<DeviceCheck>>& registry() {
  static auto* checks = new std::vector<std::weak_ptr<DeviceCheck>>();  // never destroyed: finalizers may run late
  return *checks;
}

}  // namespace

DeviceCheck::DeviceCheck(std::string code, std::function<std::string(long long)> describe, const std::string& context)
    : code_(std::move(code)), describe_(std::move(describe)) {
  checkCuda(cudaGetDevice(&device_), "cudaGetDevice", context + " (device check)");
  void* host = nullptr;
  // Portable: mapped into every GPU's address space, whichever is current later.
  checkCuda(cudaHostAlloc(&host, sizeof(long long), cudaHostAllocMapped | cudaHostAllocPortable), "cudaHostAlloc", context + " (device check)");
  hostWord_ = static_cast<volatile long long*>(host);
  *hostWord_ = -1;
  void* onDevice = nullptr;
  const cudaError_t e = cudaHostGetDevicePointer(&onDevice, host, 0);
  if (e != cudaSuccess) {
    cudaFreeHost(host);
    checkCuda(e, "cudaHostGetDevicePointer", context + " (device check)");
  }
  deviceWord_ = static_cast<long long*>(onDevice);
}

DeviceCheck::~DeviceCheck() {
  cudaFreeHost(const_cast<long long*>(hostWord_));  // waits for the GPU: no kernel writes it afterwards
}

std::shared_ptr<DeviceCheck> makeDeviceCheck(std::string code, std::function<std::string(long long)> describe, const std::string& context) {
  auto check = std::make_shared<DeviceCheck>(std::move(code), std::move(describe), context);
  std::lock_guard<std::mutex> lock(registryMutex);
  auto& checks = registry();
  // Drop the checks of released kernels as new ones come.
  checks.erase(std::remove_if(checks.begin(), checks.end(), [](const std::weak_ptr<DeviceCheck>& c) { return c.expired(); }), checks.end());
  checks.push_back(check);
  return check;
}

void throwFailedDeviceChecks(int device, const char* waiter, const std::string& name) {
  std::string code, message;
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    for (const auto& weak : registry()) {
      const std::shared_ptr<DeviceCheck> check = weak.lock();
      if (!check || check->device_ != device) continue;
      if (*check->hostWord_ == -1) continue;
      // Taken and cleared in one step: a kernel's write in between is not lost.
      const long long word = __atomic_exchange_n(const_cast<long long*>(check->hostWord_), -1LL, __ATOMIC_SEQ_CST);
      code = check->code_;
      message = check->describe_(word);
      break;
    }
  }
  if (!code.empty()) throw Error(code, std::string(waiter) + " '" + name + "': " + message);
}

}  // namespace stepscope
