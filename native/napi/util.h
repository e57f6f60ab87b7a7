// Small helpers shared by the N-API wrappers: typed errors, argument checks,
// and promises resolved from work on the libuv thread pool.
#pragma once
#include <napi.h>

#include <functional>
#include <type_traits>
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
// Argument `index` when it is a string, else "" (an optional name, such as a kernel record's layer).
std::string optionalStringArg(const Napi::CallbackInfo& info, size_t index);

// Returns a promise; `work` runs on the thread pool, `result` on the JS thread.
Napi::Promise runAsync(Napi::Env env, std::function<void()> work,
                       std::function<Napi::Value(Napi::Env)> result = nullptr);

// Classes on the enqueue path (Buffer, Stream) carry a type tag, set in their
// constructor: checking it is one N-API call, where InstanceOf walks the
// prototype chain (a host cost paid for every buffer of every kernel).
template <typename T, typename = void>
struct HasTypeTag : std::false_type {};
template <typename T>
struct HasTypeTag<T, std::void_t<decltype(T::kTypeTag)>> : std::true_type {};

template <typename T>
void tagObject(Napi::Env env, Napi::Object object) {
  napi_status status = napi_type_tag_object(env, object, &T::kTypeTag);
  if (status != napi_ok) throw Error("ERR_NATIVE", std::string("cannot tag a new ") + T::kClassName);
}

// True when v is an object of class T.
template <typename T>
bool isInstance(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) return false;
  if constexpr (HasTypeTag<T>::value) {
    bool tagged = false;
    return napi_check_object_type_tag(env, v, &T::kTypeTag, &tagged) == napi_ok && tagged;
  } else {
    return v.As<Napi::Object>().InstanceOf(T::constructor(env));
  }
}

// Unwraps an ObjectWrap argument after checking that it is one.
template <typename T>
T* unwrapArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value v = info[index];
  if (!isInstance<T>(info.Env(), v)) {
    throw makeError(info.Env(), "ERR_INVALID_ARG", std::string("argument '") + name + "' must be a " + T::kClassName);
  }
  return T::Unwrap(v.As<Napi::Object>());
}

}  // namespace stepscope
