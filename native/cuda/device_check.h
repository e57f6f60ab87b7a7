// A check a kernel makes on the device, reported on the host the way CUDA
// reports a kernel's fault: by the next call that waits for the GPU. The
// kernel writes one 64-bit word into pinned host memory mapped into the GPU
// when it finds a failure and the word is still -1 (none unreported);
// CudaStream::synchronize and CudaEvent::synchronize read every check of
// their GPU once the wait is over and throw the first failure (taking the
// word back to -1: reported once). A
// check does not know which stream its kernel ran on: a failure surfaces at
// the next wait on that GPU, as a sticky CUDA error would.
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace stepscope {

class DeviceCheck {
 public:
  // On the current GPU. `describe` turns a failed word into the message of an
  // Error with `code`; `context` (the kernel's) names it in CUDA errors here.
  DeviceCheck(std::string code, std::function<std::string(long long word)> describe, const std::string& context);
  ~DeviceCheck();
  DeviceCheck(const DeviceCheck&) = delete;
  DeviceCheck& operator=(const DeviceCheck&) = delete;

  // Where the kernel writes its word (a device address of the host word).
  long long* deviceWord() const { return deviceWord_; }
  int device() const { return device_; }

 private:
  friend void throwFailedDeviceChecks(int device, const char* waiter, const std::string& name);
  volatile long long* hostWord_ = nullptr;
  long long* deviceWord_ = nullptr;
  int device_ = 0;
  std::string code_;
  std::function<std::string(long long)> describe_;
};

// A check registered for throwFailedDeviceChecks (held by its kernel; the
// registry keeps only a weak reference).
std::shared_ptr<DeviceCheck> makeDeviceCheck(std::string code, std::function<std::string(long long word)> describe, const std::string& context);

// After a wait on GPU `device`: throws the first failed check of that GPU as
// an Error "<waiter> '<name>': <message>" and clears it; nothing when none failed.
void throwFailedDeviceChecks(int device, const char* waiter, const std::string& name);

}  // namespace stepscope
