// The JS class Event of the CUDA addon: the CPU addon's surface (complete,
// timestampNs, synchronize) over a cudaEvent_t; streams record and wait.
#include "cuda/addon_cuda.h"

namespace stepscope {

Napi::Function CudaEventWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceAccessor<&CudaEventWrap::complete>("complete"),
                      InstanceAccessor<&CudaEventWrap::timestampNs>("timestampNs"),
                      InstanceMethod<&CudaEventWrap::synchronize>("synchronize")});
}

// new Event(): throws ERR_NO_DEVICE without a GPU.
CudaEventWrap::CudaEventWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaEventWrap>(info) {
  cudaGuarded(info.Env(), [&] { event_ = std::make_shared<CudaEvent>(); });
}

Napi::Value CudaEventWrap::complete(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), event_->complete()); });
}

// Nanoseconds on the addon's clock when the latest record fired, or null.
Napi::Value CudaEventWrap::timestampNs(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    const int64_t ns = event_->timestampNs();
    return ns < 0 ? info.Env().Null() : Napi::Number::New(info.Env(), double(ns));
  });
}

Napi::Value CudaEventWrap::synchronize(const Napi::CallbackInfo& info) {
  CudaEventPtr event = event_;
  return runAsync(info.Env(), [event] { event->synchronize(); });
}

}  // namespace stepscope
