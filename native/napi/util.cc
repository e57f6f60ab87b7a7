#include "napi/util.h"

#include <cmath>
#include <new>

namespace stepscope {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  return error;
}

static int toInt(Napi::Env env, Napi::Value v, const std::string& what) {
  if (!v.IsNumber()) throw makeError(env, "ERR_INVALID_ARG", what + " must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < -2147483648.0 || d > 2147483647.0) {
    throw makeError(env, "ERR_INVALID_ARG", what + " must be a 32-bit integer, got " + std::to_string(d));
  }
  return int(d);
}

int intArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  return toInt(info.Env(), info[index], std::string("argument '") + name + "'");
}

int intProp(const Napi::Object& obj, const char* name, const char* what) {
  return toInt(obj.Env(), obj.Get(name), std::string(what) + "." + name);
}

std::string optionalStringArg(const Napi::CallbackInfo& info, size_t index) {
  return info.Length() > index && info[index].IsString() ? info[index].As<Napi::String>().Utf8Value() : "";
}

std::string stringArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsString()) {
    throw makeError(info.Env(), "ERR_INVALID_ARG", std::string("argument '") + name + "' must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

namespace {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> result)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        result_(std::move(result)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      code_ = e.code();
      message_ = e.what();
      details_ = e.details();  // a CUDA error's status and layer, as a synchronous call's error carries them
    } catch (const std::bad_alloc&) {
      code_ = "ERR_OUT_OF_MEMORY";
      message_ = "out of memory";
    } catch (const std::exception& e) {
      code_ = "ERR_NATIVE";
      message_ = e.what();
    } catch (...) {
      code_ = "ERR_NATIVE";
      message_ = "unknown native exception";
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (!code_.empty()) {
      Napi::Error error = makeError(env, code_, message_);
      for (const auto& [key, value] : details_) error.Value().Set(key, value);
      deferred_.Reject(error.Value());
      return;
    }
    // Nothing may escape OnOK (node-addon-api would terminate): every failure rejects the promise.
    try {
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const Error& e) {
      deferred_.Reject(makeError(env, e.code(), e.what()).Value());
    } catch (const std::bad_alloc&) {
      deferred_.Reject(makeError(env, "ERR_OUT_OF_MEMORY", "out of memory").Value());
    } catch (const std::exception& e) {
      deferred_.Reject(makeError(env, "ERR_NATIVE", e.what()).Value());
    } catch (...) {
      deferred_.Reject(makeError(env, "ERR_NATIVE", "unknown native exception").Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::vector<std::pair<std::string, std::string>> details_;
  std::string code_, message_;
};

}  // namespace

Napi::Promise runAsync(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> result) {
  auto* worker = new PromiseWorker(env, std::move(work), std::move(result));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace stepscope
