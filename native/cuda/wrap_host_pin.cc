// JS class HostPin of the CUDA addon: host memory (a Float32Array, e.g. a
// view of a data pipeline's batch buffer) page-locked with cudaHostRegister
// while the pin lives, so a Buffer.write from it is a DMA at the link's speed
// instead of a copy through the driver's pageable staging (~5x slower for a
// 19 MB batch). Registration needs no GPU work and may be refused (no
// device, a sandbox's limits, memory already registered): then `pinned` is
// false with the reason, and copies from the array still work, unpinned.
// The pin holds the array, so its memory cannot be freed while registered;
// release() (or the pin's finalizer) unregisters it first.
#include <cuda_runtime_api.h>

#include "cuda/addon_cuda.h"
#include "cuda/device.h"

namespace stepscope {

namespace {

class HostPinWrap : public Napi::ObjectWrap<HostPinWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "HostPin",
                       {InstanceMethod<&HostPinWrap::release>("release"), InstanceAccessor<&HostPinWrap::pinned>("pinned"),
                        InstanceAccessor<&HostPinWrap::reason>("reason")});
  }

  // new HostPin(array: Float32Array)
  explicit HostPinWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HostPinWrap>(info) {
    cudaGuarded(info.Env(), [&] {
      if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw Error("ERR_INVALID_ARG", "HostPin(array): array must be a Float32Array");
      }
      Napi::Float32Array array = info[0].As<Napi::Float32Array>();
      array_ = Napi::Persistent(array.As<Napi::Object>());
      ptr_ = array.Data();
      bytes_ = array.ElementLength() * sizeof(float);
      const cudaError_t e = bytes_ == 0 ? cudaErrorInvalidValue : cudaHostRegister(ptr_, bytes_, cudaHostRegisterDefault);
      if (e == cudaSuccess) {
        pinned_ = true;
      } else {
        cudaGetLastError();  // a refusal is this pin's answer, not the next launch's error
        reason_ = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      }
    });
  }

  ~HostPinWrap() override { unpin(); }

 private:
  // Unregisters before the array (and so its memory) can go.
  void unpin() noexcept {
    if (pinned_) {
      if (cudaHostUnregister(ptr_) != cudaSuccess) cudaGetLastError();
      pinned_ = false;
    }
    if (!array_.IsEmpty()) array_.Reset();
  }

  Napi::Value release(const Napi::CallbackInfo& info) {
    unpin();
    return info.Env().Undefined();
  }
  Napi::Value pinned(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), pinned_); }
  Napi::Value reason(const Napi::CallbackInfo& info) {
    return reason_.empty() ? info.Env().Undefined() : Napi::String::New(info.Env(), reason_);
  }

  Napi::ObjectReference array_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_ = false;
  std::string reason_;
};

}  // namespace

Napi::Function defineHostPin(Napi::Env env) { return HostPinWrap::define(env); }

}  // namespace stepscope
