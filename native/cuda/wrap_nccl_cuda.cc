// The JS class NcclCommunicator of the CUDA addon: NcclCommunicator.uniqueId()
// on rank 0, new NcclCommunicator({id, rank, size, timeoutMs}) and
// await connect() on every rank (as GlooCommunicator), allreduce(stream,
// buffer | buffers[], scale, layer), destroy().
#include <cmath>

#include "cuda/addon_cuda.h"

namespace stepscope {

Napi::Function CudaNcclWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {StaticMethod<&CudaNcclWrap::uniqueId>("uniqueId"),
                      InstanceMethod<&CudaNcclWrap::connect>("connect"),
                      InstanceMethod<&CudaNcclWrap::allreduce>("allreduce"),
                      InstanceMethod<&CudaNcclWrap::destroy>("destroy"),
                      InstanceAccessor<&CudaNcclWrap::rank>("rank"),
                      InstanceAccessor<&CudaNcclWrap::size>("size")});
}

// A Uint8Array of NCCL_UNIQUE_ID_BYTES bytes, to hand to every rank.
Napi::Value CudaNcclWrap::uniqueId(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    const std::string id = newNcclUniqueId();
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), id.size());
    std::copy(id.begin(), id.end(), out.Data());
    return out;
  });
}

// Starts joining (returns at once); connect() waits for the other ranks.
CudaNcclWrap::CudaNcclWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaNcclWrap>(info) {
  cudaGuarded(info.Env(), [&] {
    if (!info[0].IsObject()) throw Error("ERR_INVALID_ARG", "NcclCommunicator(options): options must be an object {id, rank, size, timeoutMs?}");
    Napi::Object o = info[0].As<Napi::Object>();
    NcclOptions n;
    if (!o.Get("id").IsTypedArray() || o.Get("id").As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Error("ERR_INVALID_ARG", "NcclCommunicator: options.id must be a Uint8Array (NcclCommunicator.uniqueId() of rank 0)");
    }
    Napi::Uint8Array id = o.Get("id").As<Napi::Uint8Array>();
    n.uniqueId.assign(reinterpret_cast<const char*>(id.Data()), id.ByteLength());
    n.size = intProp(o, "size", "options");
    n.rank = intProp(o, "rank", "options");
    if (!o.Get("timeoutMs").IsUndefined()) n.timeoutMs = intProp(o, "timeoutMs", "options");
    comm_ = std::make_shared<NcclCommunicator>(n);
  });
}

// A promise: resolves when every rank has joined, rejects (ERR_COMM) after
// timeoutMs. The event loop stays free meanwhile (rank 0 may be serving the id).
Napi::Value CudaNcclWrap::connect(const Napi::CallbackInfo& info) {
  NcclPtr comm = comm_;
  return runAsync(info.Env(), [comm] { comm->connect(); });
}

// allreduce(stream, buffer | buffers[], scale, layer?): one grouped launch,
// one kernel record; each buffer = scale * sum over ranks.
Napi::Value CudaNcclWrap::allreduce(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaStreamWrap* stream = unwrapArg<CudaStreamWrap>(info, 0, "stream");
    std::vector<Napi::Value> values;
    if (info[1].IsArray()) {
      Napi::Array arr = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); ++i) values.push_back(arr.Get(i));
    } else {
      values.push_back(info[1]);
    }
    if (values.empty()) throw Error("ERR_INVALID_ARG", "nccl allreduce: buffers must not be empty");
    std::vector<CudaMemoryPtr> held;
    std::vector<std::pair<float*, size_t>> buffers;
    for (size_t i = 0; i < values.size(); ++i) {
      if (!isInstance<CudaBufferWrap>(env, values[i])) throw Error("ERR_INVALID_ARG", "nccl allreduce: buffer " + std::to_string(i) + " must be a CUDA Buffer");
      CudaMemoryPtr m = CudaBufferWrap::Unwrap(values[i].As<Napi::Object>())->memory(env);
      if (m->bf16()) throw Error("ERR_INVALID_ARG", "nccl allreduce: buffer " + std::to_string(i) + " holds bf16 values; the gradients reduced are fp32");
      buffers.emplace_back(m->data(), m->size());
      held.push_back(std::move(m));
    }
    if (!info[2].IsNumber() || !std::isfinite(info[2].As<Napi::Number>().DoubleValue())) {
      throw Error("ERR_INVALID_ARG", "nccl allreduce: scale must be a finite number");
    }
    const std::string layer = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
    comm_->allreduce(*stream->stream(), buffers, info[2].As<Napi::Number>().FloatValue(), layer);
    return env.Undefined();
  });
}

Napi::Value CudaNcclWrap::destroy(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    comm_->destroy();
    return info.Env().Undefined();
  });
}

Napi::Value CudaNcclWrap::rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), comm_ ? comm_->options().rank : -1); }
Napi::Value CudaNcclWrap::size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), comm_ ? comm_->options().size : 0); }

}  // namespace stepscope
