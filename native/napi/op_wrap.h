// JS class OpKernel: one prepared non-convolution op (batch norm, ReLU, pool,
// add, fc, loss, sgd) for one variant and set of parameters.
#pragma once
#include <napi.h>

#include <memory>

#include "cpu/op_kernel.h"
#include "napi/addon_data.h"

namespace stepscope {

class OpKernelWrap : public Napi::ObjectWrap<OpKernelWrap> {
 public:
  static constexpr const char* kClassName = "OpKernel";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return addonData(env).opKernel.Value(); }

  explicit OpKernelWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value enqueue(const Napi::CallbackInfo& info);
  Napi::Value describe(const Napi::CallbackInfo& info);

  std::shared_ptr<OpKernel> kernel_;
};

}  // namespace stepscope
