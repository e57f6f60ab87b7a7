#include "napi/gloo_wrap.h"

#include "napi/buffer_wrap.h"
#include "napi/stream_wrap.h"
#include "napi/util.h"

namespace stepscope {

Napi::Function GlooWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceMethod<&GlooWrap::connect>("connect"), InstanceMethod<&GlooWrap::allreduce>("allreduce")});
}

// new GlooCommunicator({rank, size, storePath | storeHost+storePort, storePrefix?, hostname?, timeoutMs?})
GlooWrap::GlooWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GlooWrap>(info) {
  guarded(info.Env(), [&] {
    if (!info[0].IsObject()) throw Error("ERR_INVALID_ARG", "GlooCommunicator(options): options must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    GlooOptions g;
    g.size = intProp(o, "size", "options");
    g.rank = intProp(o, "rank", "options");
    if (g.size < 1 || g.rank < 0 || g.rank >= g.size) {
      throw Error("ERR_INVALID_ARG", "gloo: rank " + std::to_string(g.rank) + " is not in 0.." + std::to_string(g.size - 1));
    }
    if (o.Get("storePath").IsString()) {
      g.storePath = o.Get("storePath").As<Napi::String>().Utf8Value();
    } else if (o.Get("storeHost").IsString()) {
      g.storeHost = o.Get("storeHost").As<Napi::String>().Utf8Value();
      g.storePort = intProp(o, "storePort", "options");
      if (g.storePort < 1 || g.storePort > 65535) {
        throw Error("ERR_INVALID_ARG", "gloo: storePort " + std::to_string(g.storePort) + " is not in 1..65535");
      }
    } else {
      throw Error("ERR_INVALID_ARG", "gloo: options need storePath (a directory all ranks share) or storeHost and storePort (rank 0's TCP store)");
    }
    if (o.Get("storePrefix").IsString()) g.storePrefix = o.Get("storePrefix").As<Napi::String>().Utf8Value();
    if (o.Get("hostname").IsString()) g.hostname = o.Get("hostname").As<Napi::String>().Utf8Value();
    if (!o.Get("timeoutMs").IsUndefined()) g.timeoutMs = intProp(o, "timeoutMs", "options");
    // Gloo takes 0 as "no timeout": a dead peer would block the stream forever.
    if (g.timeoutMs < 1 || g.timeoutMs > 3600000) {
      throw Error("ERR_INVALID_ARG", "gloo: timeoutMs " + std::to_string(g.timeoutMs) + " is not in 1..3600000");
    }
    comm_ = std::make_shared<GlooCommunicator>(g);
  });
}

Napi::Value GlooWrap::connect(const Napi::CallbackInfo& info) {
  GlooPtr comm = comm_;
  return runAsync(info.Env(), [comm] { comm->connect(); });
}

// allreduce(stream, buffer, scale, layer): enqueued on the stream, timed as op
// "allreduce", variant "gloo", pass "comm".
Napi::Value GlooWrap::allreduce(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    StreamWrap* stream = unwrapArg<StreamWrap>(info, 0, "stream");
    BufferPtr buffer = unwrapArg<BufferWrap>(info, 1, "buffer")->buffer();
    if (!buffer) throw Error("ERR_INVALID_ARG", "gloo allreduce: the buffer was released");
    if (!info[2].IsNumber()) throw Error("ERR_INVALID_ARG", "gloo allreduce: scale must be a number");
    const float scale = info[2].As<Napi::Number>().FloatValue();
    KernelInfo k;
    k.op = "allreduce";
    k.variant = "gloo";
    k.pass = "comm";
    k.layer = optionalStringArg(info, 3);
    k.bytes = double(buffer->bytes());
    GlooPtr comm = comm_;
    stream->stream()->enqueue([comm, buffer, scale, k](KernelRecorder& recorder) {
      recorder.run(k, [&] { comm->allreduce(buffer->data(), buffer->size(), scale); });
    });
    return info.Env().Undefined();
  });
}

}  // namespace stepscope
