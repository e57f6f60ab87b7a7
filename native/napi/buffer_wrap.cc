#include "napi/buffer_wrap.h"

#include <algorithm>
#include <cstring>

#include "napi/stream_wrap.h"
#include "napi/util.h"

namespace stepscope {

Napi::Function BufferWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceAccessor<&BufferWrap::length>("length"), InstanceMethod<&BufferWrap::write>("write"),
                      InstanceMethod<&BufferWrap::read>("read"), InstanceMethod<&BufferWrap::view>("view"),
                      InstanceMethod<&BufferWrap::fill>("fill"),
                      InstanceMethod<&BufferWrap::fillUniform>("fillUniform"),
                      InstanceMethod<&BufferWrap::release>("release"),
                      InstanceAccessor<&BufferWrap::released>("released")});
}

BufferWrap::BufferWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BufferWrap>(info) {
  guarded(info.Env(), [&] {
    if (!info[0].IsNumber()) throw Error("ERR_INVALID_ARG", "Buffer(length): length must be a positive integer");
    double length = info[0].As<Napi::Number>().DoubleValue();
    if (!(length >= 1) || length != double(size_t(length)) || length > double(DeviceBuffer::kMaxCount)) {
      throw Error("ERR_INVALID_ARG", "Buffer(length): length " + std::to_string(length) +
                                         " is not allowed: an integer from 1 to " + std::to_string(DeviceBuffer::kMaxCount));
    }
    int streamId = -1;
    if (info.Length() > 1 && !info[1].IsUndefined()) streamId = unwrapArg<StreamWrap>(info, 1, "stream")->stream()->id();
    buffer_ = std::make_shared<DeviceBuffer>(size_t(length), streamId);
    tagObject<BufferWrap>(info.Env(), info.This().As<Napi::Object>());
  });
}

DeviceBuffer& BufferWrap::live() {
  if (!buffer_) throw Error("ERR_INVALID_ARG", "the buffer was released");
  buffer_->waitUntilHostSafe();
  return *buffer_;
}

Napi::Value BufferWrap::length(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), buffer_ ? double(buffer_->size()) : 0.0);
}

// Drops this handle's memory now instead of at garbage collection. With a
// stream: a stream-ordered free (see core/buffer.h); without: the memory
// returns when queued work that holds the buffer has run.
Napi::Value BufferWrap::release(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    // (Not once viewed: a view keeps the memory, which goes when the view does.)
    if (buffer_ && !viewed_ && info.Length() > 0 && !info[0].IsUndefined()) {
      const StreamPtr& stream = unwrapArg<StreamWrap>(info, 0, "stream")->stream();
      auto event = std::make_shared<Event>();
      const uint64_t generation = stream->record(event);
      buffer_->freeAsync(stream->id(), event, generation);
    }
    buffer_.reset();
    return info.Env().Undefined();
  });
}

Napi::Value BufferWrap::released(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !buffer_); }

static size_t offsetArg(const Napi::CallbackInfo& info, size_t index, size_t limit) {
  if (info.Length() <= index || info[index].IsUndefined()) return 0;
  if (!info[index].IsNumber()) throw Error("ERR_INVALID_ARG", "offset and count must be non-negative integers");
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (v < 0 || v != double(size_t(v)) || v > double(limit)) {
    throw Error("ERR_INVALID_ARG", "offset " + std::to_string(v) + " is out of range 0.." + std::to_string(limit));
  }
  return size_t(v);
}

Napi::Value BufferWrap::write(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw Error("ERR_INVALID_ARG", "Buffer.write(data, offset?): data must be a Float32Array");
    }
    auto data = info[0].As<Napi::Float32Array>();
    size_t offset = offsetArg(info, 1, live().size());
    if (data.ElementLength() > live().size() - offset) {
      throw Error("ERR_INVALID_ARG", "Buffer.write: " + std::to_string(data.ElementLength()) + " values at offset " +
                                         std::to_string(offset) + " overrun the buffer of " +
                                         std::to_string(live().size()));
    }
    std::memcpy(live().data() + offset, data.Data(), data.ElementLength() * sizeof(float));
    return info.Env().Undefined();
  });
}

Napi::Value BufferWrap::read(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    size_t offset = offsetArg(info, 0, live().size());
    size_t count = live().size() - offset;
    if (info.Length() > 1 && !info[1].IsUndefined()) count = std::min(count, offsetArg(info, 1, count));
    auto out = Napi::Float32Array::New(info.Env(), count);
    std::memcpy(out.Data(), live().data() + offset, count * sizeof(float));
    return out;
  });
}

// view(): a Float32Array over the buffer's own memory, no copy (a batch handed
// to the CUDA addon, which copies it to the device, without a 19 MB copy per
// step in between). The array keeps the memory alive, also after release().
Napi::Value BufferWrap::view(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    DeviceBuffer& b = live();
    auto* keep = new BufferPtr(buffer_);
    viewed_ = true;
    // V8 is told of the memory the view keeps alive, so that garbage collection weighs it.
    const int64_t bytes = int64_t(b.size() * sizeof(float));
    Napi::ArrayBuffer memory = Napi::ArrayBuffer::New(
        info.Env(), b.data(), size_t(bytes),
        [bytes](Napi::Env env, void*, BufferPtr* held) {
          Napi::MemoryManagement::AdjustExternalMemory(env, -bytes);
          delete held;
        },
        keep);
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), bytes);
    return Napi::Float32Array::New(info.Env(), b.size(), memory, 0);
  });
}

Napi::Value BufferWrap::fill(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsNumber()) throw Error("ERR_INVALID_ARG", "Buffer.fill(value): value must be a number (NaN allowed)");
    std::fill_n(live().data(), live().size(), info[0].As<Napi::Number>().FloatValue());
    return info.Env().Undefined();
  });
}

Napi::Value BufferWrap::fillUniform(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
      throw Error("ERR_INVALID_ARG", "Buffer.fillUniform(seed, lo, hi): all three must be numbers");
    }
    double seed = info[0].As<Napi::Number>().DoubleValue();
    float lo = info[1].As<Napi::Number>().FloatValue(), hi = info[2].As<Napi::Number>().FloatValue();
    if (!(hi > lo)) throw Error("ERR_INVALID_ARG", "Buffer.fillUniform: hi must be greater than lo");
    ::stepscope::fillUniform(live(), uint64_t(int64_t(seed)), lo, hi);
    return info.Env().Undefined();
  });
}

}  // namespace stepscope
