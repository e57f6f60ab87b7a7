// The JS class OpKernel of the CUDA addon: the same surface as the CPU
// addon's (napi/op_wrap.cc), device buffers and a CUDA stream underneath.
#include "cuda/addon_cuda.h"
#include "napi/op_js.h"
#include "napi/op_params_arg.h"

namespace stepscope {

Napi::Function CudaOpKernelWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceMethod<&CudaOpKernelWrap::enqueue>("enqueue"),
                      InstanceMethod<&CudaOpKernelWrap::describe>("describe"), InstanceMethod<&CudaOpKernelWrap::release>("release")});
}

// The kernel, or ERR_INVALID_STATE once released.
CudaOpKernel& CudaOpKernelWrap::live() const {
  if (!kernel_) throw Error("ERR_INVALID_STATE", "OpKernel: released (release() was called)");
  return *kernel_;
}

// release(): its scratch (device memory V8 does not see) goes now, or with the
// last graph that captured it; enqueue and describe throw afterwards.
Napi::Value CudaOpKernelWrap::release(const Napi::CallbackInfo& info) {
  kernel_.reset();
  return info.Env().Undefined();
}

// new OpKernel(op, variant, params: {name: number | boolean}, layer?): needs
// no device; it is bound to the GPU of its first enqueue.
CudaOpKernelWrap::CudaOpKernelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaOpKernelWrap>(info) {
  cudaGuarded(info.Env(), [&] {
    std::string op = stringArg(info, 0, "op");
    std::string variant = stringArg(info, 1, "variant");
    std::string layer = info.Length() > 3 && !info[3].IsUndefined() ? stringArg(info, 3, "layer") : "";
    kernel_ = makeCudaOpKernel(op, variant, opParamsArg(info, 2, op), layer);
  });
}

Napi::Value CudaOpKernelWrap::describe(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value { return describeOpKernel(info.Env(), live()); });
}

// enqueue(stream, buffers[]): lengths must match describe().buffers exactly.
Napi::Value CudaOpKernelWrap::enqueue(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaStreamWrap* stream = unwrapArg<CudaStreamWrap>(info, 0, "stream");
    const CudaStream& s = *stream->stream();
    live();  // not released
    if (device_ >= 0 && s.device() != device_) {
      throw Error("ERR_INVALID_ARG", kernel_->context() + ": first enqueued on GPU " + std::to_string(device_) + ", now on stream '" + s.name() + "' of GPU " +
                                         std::to_string(s.device()) + " (its scratch lives on the first: one kernel per GPU)");
    }
    if (!info[1].IsArray()) throw Error("ERR_INVALID_ARG", kernel_->op() + ".enqueue(stream, buffers): buffers must be an array");
    Napi::Array arr = info[1].As<Napi::Array>();
    const auto& spec = kernel_->buffers();
    checkOpBufferCount(*kernel_, arr.Length());
    std::vector<CudaMemoryPtr> held;
    std::vector<float*> ptrs;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value v = arr.Get(i);
      if (!isInstance<CudaBufferWrap>(env, v)) throw Error("ERR_INVALID_ARG", kernel_->op() + ": buffer '" + spec[i].name + "' must be a CUDA Buffer");
      CudaMemoryPtr m = CudaBufferWrap::Unwrap(v.As<Napi::Object>())->memory(env);
      checkOpBufferLength(*kernel_, i, int64_t(m->size()));
      if (m->bf16() != spec[i].bf16) {
        throw Error("ERR_INVALID_ARG", kernel_->op() + " " + kernel_->pass() + ": buffer '" + spec[i].name + "' holds " + (m->bf16() ? "bf16" : "fp32") +
                                           " values, needs " + (spec[i].bf16 ? "bf16" : "fp32"));
      }
      checkSameDevice(*m, s, [&] { return kernel_->context(); }, [&] { return spec[i].name; });
      ptrs.push_back(m->data());
      held.push_back(std::move(m));
    }
    std::shared_ptr<CudaOpKernel> kernel = kernel_;
    device_ = s.device();
    stream->stream()->timed(kernel->info(), [&] { kernel->launch(ptrs, stream->stream()->get()); });
    if (s.capturing()) {  // the graph's nodes hold these addresses
      holdForCapture(kernel);
      for (CudaMemoryPtr& m : held) holdForCapture(std::move(m));
    }
    return env.Undefined();
  });
}

}  // namespace stepscope
