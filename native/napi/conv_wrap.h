// JS class ConvKernel: one prepared convolution variant for one pass and
// shape; enqueue() puts an execution on a stream.
#pragma once
#include <napi.h>

#include <memory>

#include "cpu/conv_kernel.h"
#include "napi/addon_data.h"

namespace stepscope {

class ConvKernelWrap : public Napi::ObjectWrap<ConvKernelWrap> {
 public:
  static constexpr const char* kClassName = "ConvKernel";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return addonData(env).convKernel.Value(); }

  explicit ConvKernelWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value enqueue(const Napi::CallbackInfo& info);
  Napi::Value describe(const Napi::CallbackInfo& info);

  std::shared_ptr<ConvKernel> kernel_;
};

}  // namespace stepscope
