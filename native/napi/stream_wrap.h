// JS classes Stream and Event over core/stream.h and core/event.h.
#pragma once
#include <napi.h>

#include "core/stream.h"
#include "napi/addon_data.h"

namespace stepscope {

class EventWrap : public Napi::ObjectWrap<EventWrap> {
 public:
  static constexpr const char* kClassName = "Event";
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return addonData(env).event.Value(); }

  explicit EventWrap(const Napi::CallbackInfo& info);
  const EventPtr& event() const { return event_; }

 private:
  Napi::Value complete(const Napi::CallbackInfo& info);
  Napi::Value timestampNs(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);

  EventPtr event_;
};

class StreamWrap : public Napi::ObjectWrap<StreamWrap> {
 public:
  static constexpr const char* kClassName = "Stream";
  static constexpr napi_type_tag kTypeTag = {0x73746570736370ULL, 0x53747265ULL};
  static Napi::Function define(Napi::Env env);
  static Napi::Function constructor(Napi::Env env) { return addonData(env).stream.Value(); }

  explicit StreamWrap(const Napi::CallbackInfo& info);
  const StreamPtr& stream() const { return stream_; }

 private:
  Napi::Value id(const Napi::CallbackInfo& info);
  Napi::Value name(const Napi::CallbackInfo& info);
  Napi::Value pending(const Napi::CallbackInfo& info);
  Napi::Value record(const Napi::CallbackInfo& info);
  Napi::Value wait(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);

  StreamPtr stream_;
};

}  // namespace stepscope
