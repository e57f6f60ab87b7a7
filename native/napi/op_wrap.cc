#include "napi/op_wrap.h"

#include <mutex>

#include "napi/buffer_wrap.h"
#include "napi/op_js.h"
#include "napi/op_params_arg.h"
#include "napi/stream_wrap.h"
#include "napi/util.h"

namespace stepscope {

Napi::Function OpKernelWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceMethod<&OpKernelWrap::enqueue>("enqueue"),
                      InstanceMethod<&OpKernelWrap::describe>("describe")});
}

// new OpKernel(op, variant, params: {name: number}, layer?)
OpKernelWrap::OpKernelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OpKernelWrap>(info) {
  guarded(info.Env(), [&] {
    std::string op = stringArg(info, 0, "op");
    std::string variant = stringArg(info, 1, "variant");
    std::string layer = info.Length() > 3 && !info[3].IsUndefined() ? stringArg(info, 3, "layer") : "";
    kernel_ = makeCpuOpKernel(op, variant, opParamsArg(info, 2, op), layer);
  });
}

Napi::Value OpKernelWrap::describe(const Napi::CallbackInfo& info) { return describeOpKernel(info.Env(), *kernel_); }

// enqueue(stream, buffers[]): lengths must match describe().buffers exactly.
Napi::Value OpKernelWrap::enqueue(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StreamWrap* stream = unwrapArg<StreamWrap>(info, 0, "stream");
    if (!info[1].IsArray()) throw Error("ERR_INVALID_ARG", kernel_->op() + ".enqueue(stream, buffers): buffers must be an array");
    Napi::Array arr = info[1].As<Napi::Array>();
    const auto& spec = kernel_->buffers();
    checkOpBufferCount(*kernel_, arr.Length());
    std::vector<BufferPtr> buffers;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value v = arr.Get(i);
      if (!isInstance<BufferWrap>(info.Env(), v)) {
        throw Error("ERR_INVALID_ARG", kernel_->op() + ": buffer '" + spec[i].name + "' must be a Buffer");
      }
      BufferPtr b = BufferWrap::Unwrap(v.As<Napi::Object>())->buffer();
      if (!b) throw Error("ERR_INVALID_ARG", kernel_->op() + ": buffer '" + spec[i].name + "' was released");
      checkOpBufferLength(*kernel_, i, int64_t(b->size()));
      buffers.push_back(std::move(b));
    }
    std::shared_ptr<OpKernel> kernel = kernel_;
    stream->stream()->enqueue([kernel, buffers](KernelRecorder& recorder) {
      std::vector<float*> ptrs;
      ptrs.reserve(buffers.size());
      for (const auto& b : buffers) ptrs.push_back(b->data());
      kernel->execute(ptrs, recorder);
    });
    return info.Env().Undefined();
  });
}

}  // namespace stepscope
