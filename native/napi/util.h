// Small helpers shared by the N-API wrappers: typed errors, argument checks,
// and promises resolved from work on the libuv thread pool.
#pragma once
#include <napi.h>

#include <functional>
#include <string>

#include "core/error.h"

namespace stepscope {

// A JS Error with .code, e.g. ERR_BAD_SHAPE.
Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);

// Runs body and turns any C++ exception into a thrown JS error with a code.
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Error& e) {
    throw makeError(env, e.code(), e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw makeError(env, "ERR_OUT_OF_MEMORY", "out of memory");
  } catch (const std::exception& e) {
    throw makeError(env, "ERR_NATIVE", e.what());
  }
}

int intArg(const Napi::CallbackInfo& info, size_t index, const char* name);
int intProp(const Napi::Object& obj, const char* name, const char* what);
std::string stringArg(const Napi::CallbackInfo& info, size_t index, const char* name);

// Returns a promise; `work` runs on the thread pool, `result` on the JS thread.
Napi::Promise runAsync(Napi::Env env, std::function<void()> work,
                       std::function<Napi::Value(Napi::Env)> result = nullptr);

// Unwraps an ObjectWrap argument after checking that it is one.
template <typename T>
T* unwrapArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(T::constructor(info.Env()))) {
    throw makeError(info.Env(), "ERR_INVALID_ARG", std::string("argument '") + name + "' must be a " + T::kClassName);
  }
  return T::Unwrap(v.As<Napi::Object>());
}

}  // namespace stepscope
