// The params object of `new OpKernel(op, variant, params, layer)` as
// OpParams: numbers and booleans (true = 1), anything else an error naming
// the field. Both addons use it.
#pragma once
#include <napi.h>

#include <map>
#include <string>

#include "core/error.h"
#include "cpu/op_params.h"

namespace stepscope {

inline OpParams opParamsArg(const Napi::CallbackInfo& info, size_t index, const std::string& op) {
  if (!info[index].IsObject()) throw Error("ERR_INVALID_ARG", "OpKernel(op, variant, params): params must be an object");
  Napi::Object o = info[index].As<Napi::Object>();
  std::map<std::string, double> values;
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = keys.Get(i).ToString().Utf8Value();
    Napi::Value v = o.Get(key);
    if (v.IsBoolean()) values[key] = v.As<Napi::Boolean>().Value() ? 1 : 0;
    else if (v.IsNumber()) values[key] = v.As<Napi::Number>().DoubleValue();
    else throw Error("ERR_INVALID_ARG", op + ": parameter '" + key + "' must be a number or a boolean");
  }
  return OpParams(values, op);
}

}  // namespace stepscope
