#include "napi/conv_wrap.h"
#include "napi/conv_shape_arg.h"

#include "napi/buffer_wrap.h"
#include "napi/stream_wrap.h"
#include "napi/util.h"

namespace stepscope {

Napi::Function ConvKernelWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceMethod<&ConvKernelWrap::enqueue>("enqueue"),
                      InstanceMethod<&ConvKernelWrap::describe>("describe")});
}

// new ConvKernel({n,c,h,w,k,r,s,stride,pad}, pass, variant, layer?)
ConvKernelWrap::ConvKernelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ConvKernelWrap>(info) {
  guarded(info.Env(), [&] {
    const ConvShape shape = convShapeArg(info[0]);
    ConvPass pass = parseConvPass(stringArg(info, 1, "pass"));
    std::string variant = stringArg(info, 2, "variant");
    std::string layer = info.Length() > 3 && !info[3].IsUndefined() ? stringArg(info, 3, "layer") : "";
    ConvLayouts layouts;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      if (!info[4].IsObject()) throw Error("ERR_INVALID_ARG", "ConvKernel: layouts must be an object {x?, y?}");
      Napi::Object l = info[4].As<Napi::Object>();
      auto parse = [&](const char* key) {
        if (!l.Has(key) || l.Get(key).IsUndefined()) return ActivationLayout::NCHW;
        std::string v = l.Get(key).ToString().Utf8Value();
        if (v == "nchw") return ActivationLayout::NCHW;
        if (v == "nChw16c") return ActivationLayout::NChw16c;
        throw Error("ERR_INVALID_ARG", std::string("ConvKernel: layout of ") + key + " is '" + v + "': allowed nchw, nChw16c");
      };
      layouts.x = parse("x");
      layouts.y = parse("y");
    }
    kernel_ = makeCpuConvKernel(shape, pass, variant, layer, layouts);
  });
}

Napi::Value ConvKernelWrap::describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const ConvShape& sh = kernel_->shape();
  o.Set("variant", kernel_->variant());
  o.Set("pass", convPassName(kernel_->pass()));
  o.Set("layer", kernel_->layer());
  o.Set("implementation", kernel_->implementation());
  o.Set("flops", sh.flops());
  o.Set("bytes", sh.bytes());
  o.Set("workspaceBytes", double(kernel_->workspaceBytes()));
  o.Set("xLength", double(sh.xSize()));
  o.Set("wLength", double(sh.wSize()));
  o.Set("yLength", double(sh.ySize()));
  return o;
}

// enqueue(stream, x, w, y): roles per pass as in conv_shape.h.
Napi::Value ConvKernelWrap::enqueue(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StreamWrap* stream = unwrapArg<StreamWrap>(info, 0, "stream");
    BufferPtr x = unwrapArg<BufferWrap>(info, 1, "x")->buffer();
    BufferPtr w = unwrapArg<BufferWrap>(info, 2, "w")->buffer();
    BufferPtr y = unwrapArg<BufferWrap>(info, 3, "y")->buffer();
    const ConvShape& sh = kernel_->shape();
    auto check = [&](const BufferPtr& b, int64_t need, const char* role) {
      if (!b) throw Error("ERR_INVALID_ARG", std::string("conv: buffer '") + role + "' was released");
      if (int64_t(b->size()) != need) {
        throw Error("ERR_INVALID_ARG", std::string("conv ") + convPassName(kernel_->pass()) + " " + sh.describe() +
                                           ": buffer '" + role + "' holds " + std::to_string(b->size()) +
                                           " values, the shape needs " + std::to_string(need));
      }
    };
    check(x, sh.xSize(), "x");
    check(w, sh.wSize(), "w");
    check(y, sh.ySize(), "y");
    std::shared_ptr<ConvKernel> kernel = kernel_;
    stream->stream()->enqueue([kernel, x, w, y](KernelRecorder& recorder) {
      std::lock_guard<std::mutex> lock(kernel->executionMutex());
      kernel->execute({x->data(), w->data(), y->data()}, recorder);
    });
    return info.Env().Undefined();
  });
}

}  // namespace stepscope
