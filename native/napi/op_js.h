// An op kernel's description and a backend's op table as JS values: the same
// shape from both addons (the CPU's OpKernel and the CUDA one have the same
// accessors).
#pragma once
#include <napi.h>

#include <vector>

#include "cpu/op_params.h"

namespace stepscope {

// {op, variant, pass, layer, flops, bytes, buffers: [{name, length}]}
template <typename Kernel>
Napi::Object describeOpKernel(Napi::Env env, const Kernel& k) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("op", k.op());
  o.Set("variant", k.variant());
  o.Set("pass", k.pass());
  o.Set("layer", k.layer());
  o.Set("flops", k.flops());
  o.Set("bytes", k.bytes());
  Napi::Array buffers = Napi::Array::New(env, k.buffers().size());
  for (size_t i = 0; i < k.buffers().size(); ++i) {
    Napi::Object b = Napi::Object::New(env);
    b.Set("name", k.buffers()[i].name);
    b.Set("length", double(k.buffers()[i].length));
    buffers.Set(uint32_t(i), b);
  }
  o.Set("buffers", buffers);
  return o;
}

// [{op, name, description}]
inline Napi::Array opVariantsToJs(Napi::Env env, const std::vector<OpVariantInfo>& variants) {
  Napi::Array out = Napi::Array::New(env, variants.size());
  for (size_t i = 0; i < variants.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("op", variants[i].op);
    o.Set("name", variants[i].variant);
    o.Set("description", variants[i].description);
    out.Set(uint32_t(i), o);
  }
  return out;
}

}  // namespace stepscope
