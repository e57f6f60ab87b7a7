// The JS classes Buffer, Stream and ConvKernel of the CUDA addon. Same
// surface as the CPU addon's (binding-cuda.d.ts), device memory underneath.
#include <cmath>

#include "cuda/addon_cuda.h"
#include "napi/conv_shape_arg.h"

namespace stepscope {

// `options.device` when given (an integer >= 0), else -1 (the default GPU).
int deviceIndex(const Napi::Value& device, const std::string& what) {
  const double d = device.IsNumber() ? device.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0) || d != std::floor(d) || d > 1024) {
    throw Error("ERR_INVALID_ARG", what + ": device " + device.ToString().Utf8Value() + " must be a GPU index (an integer >= 0)");
  }
  return int(d);
}

int deviceOption(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsObject()) return -1;
  Napi::Value device = info[index].As<Napi::Object>().Get("device");
  return device.IsUndefined() ? -1 : deviceIndex(device, what);
}

void throwOtherDevice(const CudaMemory& buffer, const CudaStream& stream, const std::string& context, const std::string& role) {
  throw Error("ERR_INVALID_ARG", context + ": buffer '" + role + "' is on GPU " + std::to_string(buffer.device()) + ", stream '" + stream.name() +
                                     "' on GPU " + std::to_string(stream.device()) + " (a kernel reads and writes its own GPU's memory)");
}

// ---- Buffer

Napi::Function CudaBufferWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceAccessor<&CudaBufferWrap::length>("length"), InstanceAccessor<&CudaBufferWrap::dtype>("dtype"),
                      InstanceAccessor<&CudaBufferWrap::released>("released"),
                      InstanceMethod<&CudaBufferWrap::write>("write"), InstanceMethod<&CudaBufferWrap::read>("read"),
                      InstanceMethod<&CudaBufferWrap::fill>("fill"), InstanceMethod<&CudaBufferWrap::fillUniform>("fillUniform"),
                      InstanceMethod<&CudaBufferWrap::release>("release")});
}

// new Buffer(length, {dtype?: 'fp32' | 'bf16', device?: number}). A CUDA
// Stream as the second argument (code shared with the CPU step passes its
// stream) puts the buffer on the stream's GPU; anything else is ignored.
CudaBufferWrap::CudaBufferWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaBufferWrap>(info) {
  cudaGuarded(info.Env(), [&] {
    const int length = intArg(info, 0, "length");
    if (length < 1) throw Error("ERR_INVALID_ARG", "Buffer(length): length " + std::to_string(length) + " must be at least 1");
    bool bf16 = false;
    if (info.Length() > 1 && info[1].IsObject() && !info[1].As<Napi::Object>().Get("dtype").IsUndefined()) {
      const std::string dtype = info[1].As<Napi::Object>().Get("dtype").ToString().Utf8Value();
      if (dtype != "fp32" && dtype != "bf16") throw Error("ERR_INVALID_ARG", "Buffer: dtype '" + dtype + "': allowed fp32, bf16");
      bf16 = dtype == "bf16";
    }
    memory_ = std::make_shared<CudaMemory>(size_t(length), bf16, deviceOption(info, 1, "Buffer"));
    length_ = size_t(length);
    bf16_ = bf16;
  });
}

Napi::Value CudaBufferWrap::dtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), bf16_ ? "bf16" : "fp32"); }

CudaMemoryPtr CudaBufferWrap::memory(Napi::Env env) const {
  if (!memory_) throw makeError(env, "ERR_INVALID_ARG", "buffer was released");
  return memory_;
}

Napi::Value CudaBufferWrap::length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(length_)); }
Napi::Value CudaBufferWrap::released(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !memory_); }

static void checkRange(Napi::Env env, size_t offset, size_t count, size_t length, const char* what) {
  if (offset > length || count > length - offset) {
    throw makeError(env, "ERR_INVALID_ARG", std::string(what) + ": offset " + std::to_string(offset) + " + count " +
                                                std::to_string(count) + " exceeds the buffer's " + std::to_string(length) + " values");
  }
}

// write(data: Float32Array, offset = 0)
Napi::Value CudaBufferWrap::write(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    CudaMemoryPtr m = memory(info.Env());
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Error("ERR_INVALID_ARG", "write(data): data must be a Float32Array");
    Napi::Float32Array data = info[0].As<Napi::Float32Array>();
    const size_t offset = info.Length() > 1 && !info[1].IsUndefined() ? size_t(intArg(info, 1, "offset")) : 0;
    checkRange(info.Env(), offset, data.ElementLength(), length_, "write");
    m->write(data.Data(), offset, data.ElementLength());
    return info.Env().Undefined();
  });
}

// read(offset = 0, count = length - offset): Float32Array
Napi::Value CudaBufferWrap::read(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    CudaMemoryPtr m = memory(info.Env());
    const size_t offset = info.Length() > 0 && !info[0].IsUndefined() ? size_t(intArg(info, 0, "offset")) : 0;
    const size_t count = info.Length() > 1 && !info[1].IsUndefined() ? size_t(intArg(info, 1, "count"))
                                                                      : (offset <= length_ ? length_ - offset : 0);
    checkRange(info.Env(), offset, count, length_, "read");
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), count);
    m->read(out.Data(), offset, count);
    return out;
  });
}

Napi::Value CudaBufferWrap::fill(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsNumber()) throw Error("ERR_INVALID_ARG", "fill(value): value must be a number");
    memory(info.Env())->fill(info[0].As<Napi::Number>().FloatValue());
    return info.Env().Undefined();
  });
}

// fillUniform(seed, lo, hi): the CPU addon's generator, so the same seed gives the same values.
Napi::Value CudaBufferWrap::fillUniform(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    CudaMemoryPtr m = memory(info.Env());
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
      throw Error("ERR_INVALID_ARG", "Buffer.fillUniform(seed, lo, hi): all three must be numbers");
    }
    const double seed = info[0].As<Napi::Number>().DoubleValue();
    const float lo = info[1].As<Napi::Number>().FloatValue(), hi = info[2].As<Napi::Number>().FloatValue();
    if (!(hi > lo)) throw Error("ERR_INVALID_ARG", "Buffer.fillUniform: hi must be greater than lo");
    m->fillUniform(uint64_t(int64_t(seed)), lo, hi);
    return info.Env().Undefined();
  });
}

Napi::Value CudaBufferWrap::release(const Napi::CallbackInfo& info) {
  memory_.reset();  // cudaFree waits for kernels still using the memory
  return info.Env().Undefined();
}

// ---- Stream

Napi::Function CudaStreamWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceAccessor<&CudaStreamWrap::id>("id"), InstanceAccessor<&CudaStreamWrap::name>("name"),
                      InstanceAccessor<&CudaStreamWrap::device>("device"),
                      InstanceMethod<&CudaStreamWrap::synchronize>("synchronize"),
                      InstanceMethod<&CudaStreamWrap::record>("record"), InstanceMethod<&CudaStreamWrap::wait>("wait"),
                      InstanceMethod<&CudaStreamWrap::beginCapture>("beginCapture"),
                      InstanceMethod<&CudaStreamWrap::endCapture>("endCapture"),
                      InstanceMethod<&CudaStreamWrap::abortCapture>("abortCapture")});
}

CudaStreamWrap::CudaStreamWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaStreamWrap>(info) {
  cudaGuarded(info.Env(), [&] {
    // new Stream(name?, {device?})
    std::string name = info.Length() > 0 && !info[0].IsUndefined() ? stringArg(info, 0, "name") : "cuda";
    stream_ = std::make_shared<CudaStream>(name, deviceOption(info, 1, "Stream"));
  });
}

Napi::Value CudaStreamWrap::id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), stream_->id()); }
Napi::Value CudaStreamWrap::name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), stream_->name()); }
Napi::Value CudaStreamWrap::device(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), stream_->device()); }

Napi::Value CudaStreamWrap::synchronize(const Napi::CallbackInfo& info) {
  CudaStreamPtr stream = stream_;
  return runAsync(info.Env(), [stream] { stream->synchronize(); });
}

// record(event): the event marks where this stream is now.
Napi::Value CudaStreamWrap::record(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    unwrapArg<CudaEventWrap>(info, 0, "event")->event()->record(*stream_);
    return info.This();
  });
}

// wait(event): later work on this stream waits for the event's latest record.
Napi::Value CudaStreamWrap::wait(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    stream_->wait(unwrapArg<CudaEventWrap>(info, 0, "event")->event());
    return info.This();
  });
}

// beginCapture(): this stream's later work (and that of streams waiting on
// its captured events) goes into a CUDA graph instead of running.
Napi::Value CudaStreamWrap::beginCapture(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    CudaGraph::beginCapture(*stream_);
    return info.Env().Undefined();
  });
}

// endCapture(): the Graph of everything captured since beginCapture().
Napi::Value CudaStreamWrap::endCapture(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    CudaGraphPtr graph = CudaGraph::endCapture(*stream_);
    return CudaGraphWrap::constructor(info.Env()).New({Napi::External<CudaGraphPtr>::New(info.Env(), &graph)});
  });
}

// abortCapture(): ends this stream's capture, if it opened one, and discards
// what was captured without instantiating it (an iteration that failed halfway).
Napi::Value CudaStreamWrap::abortCapture(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    CudaGraph::abandonCaptureOf(*stream_);
    return info.Env().Undefined();
  });
}

// ---- Graph

Napi::Function CudaGraphWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceMethod<&CudaGraphWrap::launch>("launch"), InstanceMethod<&CudaGraphWrap::release>("release"),
                      InstanceAccessor<&CudaGraphWrap::nodes>("nodes"),
                      InstanceAccessor<&CudaGraphWrap::kernels>("kernels")});
}

CudaGraphWrap::CudaGraphWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaGraphWrap>(info) {
  cudaGuarded(info.Env(), [&] {
    if (info.Length() < 1 || !info[0].IsExternal()) throw Error("ERR_INVALID_ARG", "Graph objects come from stream.endCapture()");
    graph_ = *info[0].As<Napi::External<CudaGraphPtr>>().Data();
  });
}

const CudaGraphPtr& CudaGraphWrap::graph() const {
  if (!graph_) throw Error("ERR_INVALID_STATE", "the graph was released");
  return graph_;
}

// launch(stream): one launch of the whole graph; its kernels' records go on the timeline.
Napi::Value CudaGraphWrap::launch(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    graph()->launch(*unwrapArg<CudaStreamWrap>(info, 0, "stream")->stream());
    return info.Env().Undefined();
  });
}

// release(): destroys the graph now (not at garbage collection): a
// communicator whose all-reduce it captured can then be destroyed.
Napi::Value CudaGraphWrap::release(const Napi::CallbackInfo& info) {
  graph_.reset();
  return info.Env().Undefined();
}

Napi::Value CudaGraphWrap::nodes(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), double(graph()->nodes())); });
}

Napi::Value CudaGraphWrap::kernels(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), double(graph()->kernels())); });
}

// ---- ConvKernel

Napi::Function CudaConvKernelWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceMethod<&CudaConvKernelWrap::enqueue>("enqueue"),
                      InstanceMethod<&CudaConvKernelWrap::describe>("describe"), InstanceMethod<&CudaConvKernelWrap::release>("release"),
                      InstanceMethod<&CudaConvKernelWrap::useWeightCopyOf>("useWeightCopyOf")});
}

// useWeightCopyOf(forward: ConvKernel): this bwd-data kernel reads the weight copy the same layer's forward
// kernel makes for cuDNN (NHWC, bf16) instead of converting the weights again (conv_cuda.h).
Napi::Value CudaConvKernelWrap::useWeightCopyOf(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    CudaConvKernelWrap* forward = unwrapArg<CudaConvKernelWrap>(info, 0, "forward");
    live().useWeightCopyOf(forward->live());
    return info.Env().Undefined();
  });
}

CudaConvKernel& CudaConvKernelWrap::live() const {
  if (!kernel_) throw Error("ERR_INVALID_STATE", "ConvKernel: released (release() was called)");
  return *kernel_;
}

// release(): its workspace and weight copy (device memory V8 does not see) go
// now, or with the last graph that captured it; enqueue and describe throw afterwards.
Napi::Value CudaConvKernelWrap::release(const Napi::CallbackInfo& info) {
  kernel_.reset();
  return info.Env().Undefined();
}

// new ConvKernel(shape, pass, variant, layer?, {dtype?: 'fp32' | 'tf32' | 'bf16', layout?: 'nchw' | 'nhwc', device?: number}):
// prepared on that GPU (workspace, library handle, autotuning), enqueued on its streams only.
CudaConvKernelWrap::CudaConvKernelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaConvKernelWrap>(info) {
  cudaGuarded(info.Env(), [&] {
    const ConvShape shape = convShapeArg(info[0]);
    ConvPass pass = parseConvPass(stringArg(info, 1, "pass"));
    std::string variant = stringArg(info, 2, "variant");
    std::string layer = info.Length() > 3 && !info[3].IsUndefined() ? stringArg(info, 3, "layer") : "";
    ConvMath math = ConvMath::Fp32;
    bool nhwc = false;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      if (!info[4].IsObject()) throw Error("ERR_INVALID_ARG", "ConvKernel: options must be an object {dtype?, layout?, device?}");
      Napi::Value dtype = info[4].As<Napi::Object>().Get("dtype");
      if (!dtype.IsUndefined()) {
        std::string d = dtype.ToString().Utf8Value();
        if (d == "tf32") math = ConvMath::Tf32;
        else if (d == "bf16") math = ConvMath::Bf16;
        else if (d != "fp32") throw Error("ERR_INVALID_ARG", "ConvKernel: dtype '" + d + "': allowed fp32, tf32, bf16");
      }
      Napi::Value layout = info[4].As<Napi::Object>().Get("layout");
      if (!layout.IsUndefined()) {
        std::string l = layout.ToString().Utf8Value();
        if (l == "nhwc") nhwc = true;
        else if (l != "nchw") throw Error("ERR_INVALID_ARG", "ConvKernel: layout '" + l + "': allowed nchw, nhwc");
      }
    }
    kernel_ = makeCudaConvKernel(shape, pass, variant, layer, math, nhwc, deviceOption(info, 4, "ConvKernel"));
  });
}

Napi::Value CudaConvKernelWrap::describe(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value { return describeKernel(info.Env(), live()); });
}

Napi::Value CudaConvKernelWrap::describeKernel(Napi::Env env, const CudaConvKernel& k) {
  Napi::Object o = Napi::Object::New(env);
  const ConvShape& sh = k.shape();
  o.Set("variant", k.variant());
  o.Set("pass", convPassName(k.pass()));
  o.Set("layer", k.layer());
  o.Set("implementation", k.implementation());
  o.Set("precision", k.precision());
  o.Set("layout", k.layout());
  o.Set("device", k.device());
  o.Set("flops", sh.flops());
  o.Set("bytes", k.info().bytes);  // as its timeline records count it (dtype, weight conversions)
  o.Set("workspaceBytes", double(k.workspaceBytes()));
  o.Set("xLength", double(sh.xSize()));
  o.Set("wLength", double(sh.wSize()));
  o.Set("yLength", double(sh.ySize()));
  return o;
}

// enqueue(stream, x, w, y): roles per pass as in cpu/conv_shape.h.
Napi::Value CudaConvKernelWrap::enqueue(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaStreamWrap* stream = unwrapArg<CudaStreamWrap>(info, 0, "stream");
    CudaMemoryPtr x = unwrapArg<CudaBufferWrap>(info, 1, "x")->memory(env);
    CudaMemoryPtr w = unwrapArg<CudaBufferWrap>(info, 2, "w")->memory(env);
    CudaMemoryPtr y = unwrapArg<CudaBufferWrap>(info, 3, "y")->memory(env);
    const ConvShape& sh = live().shape();
    auto check = [&](const CudaMemoryPtr& b, int64_t need, const char* role, bool bf16) {
      if (int64_t(b->size()) != need) {
        throw Error("ERR_INVALID_ARG", std::string("conv ") + convPassName(kernel_->pass()) + " " + sh.describe() +
                                           ": buffer '" + role + "' holds " + std::to_string(b->size()) +
                                           " values, the shape needs " + std::to_string(need));
      }
      if (b->bf16() != bf16) {
        throw Error("ERR_INVALID_ARG", std::string("conv ") + convPassName(kernel_->pass()) + " " + sh.describe() + ": buffer '" + role + "' holds " +
                                           (b->bf16() ? "bf16" : "fp32") + " values, this kernel takes " + (bf16 ? "bf16" : "fp32"));
      }
    };
    // The activations are bf16 with dtype bf16; the weights (and their gradient) are always fp32.
    check(x, sh.xSize(), "x", kernel_->bf16());
    check(w, sh.wSize(), "w", false);
    check(y, sh.ySize(), "y", kernel_->bf16());
    const CudaStream& s = *stream->stream();
    if (s.device() != kernel_->device()) {
      throw Error("ERR_INVALID_ARG", kernel_->context() + ": prepared on GPU " + std::to_string(kernel_->device()) + ", enqueued on stream '" + s.name() +
                                         "' of GPU " + std::to_string(s.device()) + " (prepare one kernel per GPU: options.device)");
    }
    const auto context = [&] { return kernel_->context(); };
    checkSameDevice(*x, s, context, [] { return "x"; });
    checkSameDevice(*w, s, context, [] { return "w"; });
    checkSameDevice(*y, s, context, [] { return "y"; });
    std::shared_ptr<CudaConvKernel> kernel = kernel_;
    stream->stream()->timed(kernel->info(), [&] { kernel->launch(x->data(), w->data(), y->data(), stream->stream()->get()); });
    if (s.capturing()) {  // the graph's nodes hold these addresses (and the kernel's workspace)
      for (std::shared_ptr<void> h : {std::shared_ptr<void>(kernel), std::shared_ptr<void>(x), std::shared_ptr<void>(w), std::shared_ptr<void>(y)}) holdForCapture(std::move(h));
    }
    return env.Undefined();
  });
}

}  // namespace stepscope
