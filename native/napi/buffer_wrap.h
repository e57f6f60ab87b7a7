// JS class Buffer: device memory of fp32 elements. Reads and writes copy and
// are not stream-ordered: synchronize the streams that use the buffer first.
#pragma once
#include <napi.h>

#include "core/buffer.h"
#include "napi/addon_data.h"

namespace stepscope {

class BufferWrap : public Napi::ObjectWrap<BufferWrap> {
 public:
  static constexpr const char* kClassName = "Buffer";
  static constexpr napi_type_tag kTypeTag = {0x73746570736370ULL, 0x42756666ULL};
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return addonData(env).buffer.Value(); }

  explicit BufferWrap(const Napi::CallbackInfo& info);
  // Null once released.
  const BufferPtr& buffer() const { return buffer_; }

 private:
  Napi::Value length(const Napi::CallbackInfo& info);
  Napi::Value write(const Napi::CallbackInfo& info);
  Napi::Value read(const Napi::CallbackInfo& info);
  Napi::Value view(const Napi::CallbackInfo& info);
  Napi::Value fill(const Napi::CallbackInfo& info);
  Napi::Value fillUniform(const Napi::CallbackInfo& info);
  Napi::Value release(const Napi::CallbackInfo& info);
  Napi::Value released(const Napi::CallbackInfo& info);
  DeviceBuffer& live();  // throws once released

  BufferPtr buffer_;
  bool viewed_ = false;  // a view() holds the memory: release(stream) must not hand the block back early
};

}  // namespace stepscope
