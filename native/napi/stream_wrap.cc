#include "napi/stream_wrap.h"

#include "napi/util.h"

namespace stepscope {

Napi::Function EventWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceAccessor<&EventWrap::complete>("complete"),
                      InstanceAccessor<&EventWrap::timestampNs>("timestampNs"),
                      InstanceMethod<&EventWrap::synchronize>("synchronize")});
}

EventWrap::EventWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<EventWrap>(info), event_(std::make_shared<Event>()) {}

Napi::Value EventWrap::complete(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), event_->isComplete());
}

Napi::Value EventWrap::timestampNs(const Napi::CallbackInfo& info) {
  int64_t t = event_->timestampNs();
  return t < 0 ? info.Env().Null() : Napi::Number::New(info.Env(), double(t));
}

Napi::Value EventWrap::synchronize(const Napi::CallbackInfo& info) {
  EventPtr event = event_;
  uint64_t generation = event->latestGeneration();
  return runAsync(info.Env(), [event, generation] { event->waitFor(generation); });
}

Napi::Function StreamWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceAccessor<&StreamWrap::id>("id"), InstanceAccessor<&StreamWrap::name>("name"),
                      InstanceAccessor<&StreamWrap::pending>("pending"), InstanceMethod<&StreamWrap::record>("record"),
                      InstanceMethod<&StreamWrap::wait>("wait"),
                      InstanceMethod<&StreamWrap::synchronize>("synchronize")});
}

StreamWrap::StreamWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StreamWrap>(info) {
  guarded(info.Env(), [&] {
    std::string name = info.Length() > 0 && !info[0].IsUndefined() ? stringArg(info, 0, "name") : "stream";
    stream_ = std::make_shared<Stream>(name);
    tagObject<StreamWrap>(info.Env(), info.This().As<Napi::Object>());
  });
}

Napi::Value StreamWrap::id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), stream_->id()); }

Napi::Value StreamWrap::name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), stream_->name()); }

Napi::Value StreamWrap::pending(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(stream_->pending()));
}

Napi::Value StreamWrap::record(const Napi::CallbackInfo& info) {
  stream_->record(unwrapArg<EventWrap>(info, 0, "event")->event());
  return info.This();
}

Napi::Value StreamWrap::wait(const Napi::CallbackInfo& info) {
  stream_->wait(unwrapArg<EventWrap>(info, 0, "event")->event());
  return info.This();
}

Napi::Value StreamWrap::synchronize(const Napi::CallbackInfo& info) {
  StreamPtr stream = stream_;
  return runAsync(info.Env(), [stream] { stream->synchronize(); });
}

}  // namespace stepscope
