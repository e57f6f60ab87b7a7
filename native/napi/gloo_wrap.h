// JS class GlooCommunicator: connect() (a promise), allreduce(stream, buffer, scale, layer).
#pragma once
#include <napi.h>

#include "comm/gloo_comm.h"
#include "napi/addon_data.h"

namespace stepscope {

class GlooWrap : public Napi::ObjectWrap<GlooWrap> {
 public:
  static constexpr const char* kClassName = "GlooCommunicator";
  static Napi::Function define(Napi::Env env);
  explicit GlooWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value connect(const Napi::CallbackInfo& info);
  Napi::Value allreduce(const Napi::CallbackInfo& info);
  GlooPtr comm_;
};

}  // namespace stepscope
