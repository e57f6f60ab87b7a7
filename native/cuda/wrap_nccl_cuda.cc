// The JS class NcclCommunicator of the CUDA addon: NcclCommunicator.uniqueId()
// on rank 0, new NcclCommunicator({id, rank, size, timeoutMs, device}) and
// await connect() on every rank (as GlooCommunicator), allreduce(stream,
// buffer | buffers[], scale, layer), destroy(). All local GPUs in one
// process: NcclCommunicator.local(devices, {timeoutMs}) gives one per GPU
// (connect() each), NcclCommunicator.allreduceGroup(calls, scale, layer)
// reduces one bucket on all of them at once, and
// NcclCommunicator.destroyGroup(comms) releases them together.
#include <cmath>

#include "cuda/addon_cuda.h"

namespace stepscope {

Napi::Function CudaNcclWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {StaticMethod<&CudaNcclWrap::uniqueId>("uniqueId"),
                      StaticMethod<&CudaNcclWrap::local>("local"),
                      StaticMethod<&CudaNcclWrap::allreduceGroup>("allreduceGroup"),
                      StaticMethod<&CudaNcclWrap::destroyGroup>("destroyGroup"),
                      InstanceAccessor<&CudaNcclWrap::device>("device"),
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
    if (info.Length() > 0 && info[0].IsExternal()) {  // from local()
      comm_ = *info[0].As<Napi::External<NcclPtr>>().Data();
      return;
    }
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
    n.device = deviceOption(info, 0, "NcclCommunicator");
    comm_ = std::make_shared<NcclCommunicator>(n);
  });
}

// A promise: resolves when every rank has joined, rejects (ERR_COMM) after
// timeoutMs. The event loop stays free meanwhile (rank 0 may be serving the id).
Napi::Value CudaNcclWrap::connect(const Napi::CallbackInfo& info) {
  NcclPtr comm = comm_;
  return runAsync(info.Env(), [comm] { comm->connect(); });
}

namespace {

// buffer | buffers[] of fp32 CUDA Buffers on the stream's GPU, as (address, length); `held` keeps them alive.
std::vector<std::pair<float*, size_t>> gradientBuffers(Napi::Env env, Napi::Value arg, const CudaStream& stream, std::vector<CudaMemoryPtr>& held) {
  std::vector<Napi::Value> values;
  if (arg.IsArray()) {
    Napi::Array arr = arg.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) values.push_back(arr.Get(i));
  } else {
    values.push_back(arg);
  }
  if (values.empty()) throw Error("ERR_INVALID_ARG", "nccl allreduce: buffers must not be empty");
  std::vector<std::pair<float*, size_t>> buffers;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!isInstance<CudaBufferWrap>(env, values[i])) throw Error("ERR_INVALID_ARG", "nccl allreduce: buffer " + std::to_string(i) + " must be a CUDA Buffer");
    CudaMemoryPtr m = CudaBufferWrap::Unwrap(values[i].As<Napi::Object>())->memory(env);
    if (m->bf16()) throw Error("ERR_INVALID_ARG", "nccl allreduce: buffer " + std::to_string(i) + " holds bf16 values; the gradients reduced are fp32");
    checkSameDevice(*m, stream, [] { return "nccl allreduce"; }, [&] { return "buffer " + std::to_string(i); });
    buffers.emplace_back(m->data(), m->size());
    held.push_back(std::move(m));
  }
  return buffers;
}

float scaleArg(const Napi::Value& v) {
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) throw Error("ERR_INVALID_ARG", "nccl allreduce: scale must be a finite number");
  return v.As<Napi::Number>().FloatValue();
}

}  // namespace

// allreduce(stream, buffer | buffers[], scale, layer?): one grouped launch,
// one kernel record; each buffer = scale * sum over ranks.
Napi::Value CudaNcclWrap::allreduce(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaStreamWrap* stream = unwrapArg<CudaStreamWrap>(info, 0, "stream");
    std::vector<CudaMemoryPtr> held;
    const auto buffers = gradientBuffers(env, info[1], *stream->stream(), held);
    const float scale = scaleArg(info[2]);
    const std::string layer = optionalStringArg(info, 3);
    comm_->allreduce(*stream->stream(), buffers, scale, layer);
    if (stream->stream()->capturing()) {  // the graph's all-reduce nodes hold these addresses
      for (CudaMemoryPtr& m : held) holdForCapture(std::move(m));
    }
    return env.Undefined();
  });
}

// NcclCommunicator.local(devices: number[], {timeoutMs?}): one communicator per GPU, ranks in the order given.
Napi::Value CudaNcclWrap::local(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Error("ERR_INVALID_ARG", "NcclCommunicator.local(devices): devices must be an array of GPU indices");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<int> devices;
    for (uint32_t i = 0; i < arr.Length(); ++i) devices.push_back(deviceIndex(arr.Get(i), "NcclCommunicator.local: devices[" + std::to_string(i) + "]"));
    int timeoutMs = 30000;
    if (info.Length() > 1 && info[1].IsObject() && !info[1].As<Napi::Object>().Get("timeoutMs").IsUndefined()) {
      timeoutMs = intProp(info[1].As<Napi::Object>(), "timeoutMs", "options");
    }
    std::vector<NcclPtr> comms = NcclCommunicator::local(devices, timeoutMs);
    Napi::Array out = Napi::Array::New(env, comms.size());
    Napi::Function ctor = constructor(env);
    for (uint32_t i = 0; i < comms.size(); ++i) out.Set(i, ctor.New({Napi::External<NcclPtr>::New(env, &comms[i])}));
    return out;
  });
}

// NcclCommunicator.allreduceGroup(calls: {comm, stream, buffers}[], scale, layer?):
// the same bucket on every local rank, one NCCL group, one record per stream.
Napi::Value CudaNcclWrap::allreduceGroup(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Error("ERR_INVALID_ARG", "NcclCommunicator.allreduceGroup(calls): calls must be an array of {comm, stream, buffers}");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<CudaMemoryPtr> held;
    std::vector<CudaStreamPtr> streams;
    std::vector<NcclGroupCall> calls;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      if (!arr.Get(i).IsObject()) throw Error("ERR_INVALID_ARG", "allreduceGroup: calls[" + std::to_string(i) + "] must be {comm, stream, buffers}");
      Napi::Object c = arr.Get(i).As<Napi::Object>();
      if (!isInstance<CudaNcclWrap>(env, c.Get("comm"))) throw Error("ERR_INVALID_ARG", "allreduceGroup: calls[" + std::to_string(i) + "].comm must be an NcclCommunicator");
      if (!isInstance<CudaStreamWrap>(env, c.Get("stream"))) throw Error("ERR_INVALID_ARG", "allreduceGroup: calls[" + std::to_string(i) + "].stream must be a CUDA Stream");
      CudaStreamPtr stream = CudaStreamWrap::Unwrap(c.Get("stream").As<Napi::Object>())->stream();
      streams.push_back(stream);
      calls.push_back({CudaNcclWrap::Unwrap(c.Get("comm").As<Napi::Object>())->comm_, stream.get(), gradientBuffers(env, c.Get("buffers"), *stream, held)});
    }
    const float scale = scaleArg(info[1]);
    const std::string layer = optionalStringArg(info, 2);
    NcclCommunicator::allreduceGroup(calls, scale, layer);  // never captured (timedTogether refuses it): nothing to hold
    return env.Undefined();
  });
}

// NcclCommunicator.destroyGroup(comms): every communicator of one local() clique, released together.
Napi::Value CudaNcclWrap::destroyGroup(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throw Error("ERR_INVALID_ARG", "NcclCommunicator.destroyGroup(comms): comms must be an array of NcclCommunicators");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<NcclPtr> comms;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      if (!isInstance<CudaNcclWrap>(env, arr.Get(i))) throw Error("ERR_INVALID_ARG", "destroyGroup: comms[" + std::to_string(i) + "] must be an NcclCommunicator");
      comms.push_back(CudaNcclWrap::Unwrap(arr.Get(i).As<Napi::Object>())->comm_);
    }
    NcclCommunicator::destroyGroup(comms);
    return env.Undefined();
  });
}

Napi::Value CudaNcclWrap::device(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), comm_ ? comm_->device() : -1); }

Napi::Value CudaNcclWrap::destroy(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    comm_->destroy();
    return info.Env().Undefined();
  });
}

Napi::Value CudaNcclWrap::rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), comm_ ? comm_->options().rank : -1); }
Napi::Value CudaNcclWrap::size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), comm_ ? comm_->options().size : 0); }

}  // namespace stepscope
