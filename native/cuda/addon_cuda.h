// N-API classes of the CUDA addon (Buffer, Stream, ConvKernel over
// cuda_buffer.h, cuda_stream.h, conv_cuda.h) and the error conversion that
// keeps a CudaError's status and layer on the JS error.
#pragma once
#include <napi.h>

#include "cuda/comm_nccl.h"
#include "cuda/conv_cuda.h"
#include "cuda/cuda_graph.h"
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/cuda_stream.h"
#include "cuda/op_cuda.h"
#include "napi/util.h"

namespace stepscope {

struct CudaAddonData {
  Napi::FunctionReference buffer, stream, event, convKernel, opKernel, graph, nccl;
};
inline CudaAddonData& cudaAddonData(Napi::Env env) { return *env.GetInstanceData<CudaAddonData>(); }

// The JS class HostPin (wrap_host_pin.cc).
Napi::Function defineHostPin(Napi::Env env);

// guarded() (napi/util.h) plus an error's details (a CudaError's `status` and `layer`), as a promise's rejection carries them.
template <typename F>
auto cudaGuarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Error& e) {
    Napi::Error error = makeError(env, e.code(), e.what());
    for (const auto& [key, value] : e.details()) error.Value().Set(key, value);
    throw error;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw makeError(env, "ERR_OUT_OF_MEMORY", "out of host memory");
  } catch (const std::exception& e) {
    throw makeError(env, "ERR_NATIVE", e.what());
  }
}

// A GPU index (an integer >= 0); ERR_INVALID_ARG naming `what` and the value otherwise.
int deviceIndex(const Napi::Value& device, const std::string& what);
// `options.device` of argument `index` (an object) when given, else -1 (the default GPU); ERR_INVALID_ARG naming `what`.
int deviceOption(const Napi::CallbackInfo& info, size_t index, const char* what);
// ERR_INVALID_ARG unless the buffer lives on the stream's GPU. Runs on every
// launch: the message (context(), role()) is built only when it is thrown.
[[noreturn]] void throwOtherDevice(const CudaMemory& buffer, const CudaStream& stream, const std::string& context, const std::string& role);
template <typename Context, typename Role>
void checkSameDevice(const CudaMemory& buffer, const CudaStream& stream, Context&& context, Role&& role) {
  if (buffer.device() != stream.device()) throwOtherDevice(buffer, stream, context(), role());
}

class CudaBufferWrap : public Napi::ObjectWrap<CudaBufferWrap> {
 public:
  static constexpr const char* kClassName = "Buffer";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return cudaAddonData(env).buffer.Value(); }
  explicit CudaBufferWrap(const Napi::CallbackInfo& info);
  CudaMemoryPtr memory(Napi::Env env) const;

 private:
  Napi::Value length(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value write(const Napi::CallbackInfo& info);
  Napi::Value read(const Napi::CallbackInfo& info);
  Napi::Value fill(const Napi::CallbackInfo& info);
  Napi::Value fillUniform(const Napi::CallbackInfo& info);
  Napi::Value release(const Napi::CallbackInfo& info);
  Napi::Value released(const Napi::CallbackInfo& info);
  CudaMemoryPtr memory_;
  size_t length_ = 0;
  bool bf16_ = false;
};

class CudaEventWrap : public Napi::ObjectWrap<CudaEventWrap> {
 public:
  static constexpr const char* kClassName = "Event";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return cudaAddonData(env).event.Value(); }
  explicit CudaEventWrap(const Napi::CallbackInfo& info);
  const CudaEventPtr& event() const { return event_; }

 private:
  Napi::Value complete(const Napi::CallbackInfo& info);
  Napi::Value timestampNs(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);
  CudaEventPtr event_;
};

class CudaStreamWrap : public Napi::ObjectWrap<CudaStreamWrap> {
 public:
  static constexpr const char* kClassName = "Stream";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return cudaAddonData(env).stream.Value(); }
  explicit CudaStreamWrap(const Napi::CallbackInfo& info);
  const CudaStreamPtr& stream() const { return stream_; }

 private:
  Napi::Value id(const Napi::CallbackInfo& info);
  Napi::Value name(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);
  Napi::Value record(const Napi::CallbackInfo& info);
  Napi::Value wait(const Napi::CallbackInfo& info);
  Napi::Value beginCapture(const Napi::CallbackInfo& info);
  Napi::Value endCapture(const Napi::CallbackInfo& info);
  Napi::Value abortCapture(const Napi::CallbackInfo& info);
  CudaStreamPtr stream_;
};

// A captured CUDA graph; made only by stream.endCapture().
class CudaGraphWrap : public Napi::ObjectWrap<CudaGraphWrap> {
 public:
  static constexpr const char* kClassName = "Graph";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return cudaAddonData(env).graph.Value(); }
  explicit CudaGraphWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value launch(const Napi::CallbackInfo& info);
  Napi::Value release(const Napi::CallbackInfo& info);
  Napi::Value nodes(const Napi::CallbackInfo& info);
  Napi::Value kernels(const Napi::CallbackInfo& info);
  const CudaGraphPtr& graph() const;  // throws once released
  CudaGraphPtr graph_;
};

class CudaConvKernelWrap : public Napi::ObjectWrap<CudaConvKernelWrap> {
 public:
  static constexpr const char* kClassName = "ConvKernel";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return cudaAddonData(env).convKernel.Value(); }
  explicit CudaConvKernelWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value enqueue(const Napi::CallbackInfo& info);
  Napi::Value describe(const Napi::CallbackInfo& info);
  Napi::Value release(const Napi::CallbackInfo& info);
  CudaConvKernel& live() const;  // ERR_INVALID_STATE once released
  Napi::Value useWeightCopyOf(const Napi::CallbackInfo& info);
  static Napi::Value describeKernel(Napi::Env env, const CudaConvKernel& kernel);
  std::shared_ptr<CudaConvKernel> kernel_;
};

class CudaOpKernelWrap : public Napi::ObjectWrap<CudaOpKernelWrap> {
 public:
  static constexpr const char* kClassName = "OpKernel";
  static Napi::Function define(Napi::Env env);
  explicit CudaOpKernelWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value enqueue(const Napi::CallbackInfo& info);
  Napi::Value describe(const Napi::CallbackInfo& info);
  Napi::Value release(const Napi::CallbackInfo& info);
  CudaOpKernel& live() const;  // ERR_INVALID_STATE once released
  std::shared_ptr<CudaOpKernel> kernel_;
  // The GPU of its first enqueue (its scratch is made there): later ones must be on it. -1: none yet.
  int device_ = -1;
};

class CudaNcclWrap : public Napi::ObjectWrap<CudaNcclWrap> {
 public:
  static constexpr const char* kClassName = "NcclCommunicator";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return cudaAddonData(env).nccl.Value(); }
  explicit CudaNcclWrap(const Napi::CallbackInfo& info);

 private:
  static Napi::Value uniqueId(const Napi::CallbackInfo& info);
  static Napi::Value local(const Napi::CallbackInfo& info);
  static Napi::Value allreduceGroup(const Napi::CallbackInfo& info);
  static Napi::Value destroyGroup(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value connect(const Napi::CallbackInfo& info);
  Napi::Value allreduce(const Napi::CallbackInfo& info);
  Napi::Value destroy(const Napi::CallbackInfo& info);
  Napi::Value rank(const Napi::CallbackInfo& info);
  Napi::Value size(const Napi::CallbackInfo& info);
  NcclPtr comm_;
};

}  // namespace stepscope
