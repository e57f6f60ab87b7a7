// An op kernel's description and a backend's op table as JS values: the same
// shape from both addons (the CPU's OpKernel and the CUDA one have the same
// accessors).
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "core/error.h"

#include "cpu/op_params.h"

namespace stepscope {

// {op, variant, pass, layer, flops, bytes, buffers: [{name, length, dtype?: 'bf16'}]}
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
    if (k.buffers()[i].bf16) b.Set("dtype", "bf16");  // absent: fp32
    buffers.Set(uint32_t(i), b);
  }
  o.Set("buffers", buffers);
  return o;
}

// enqueue(stream, buffers): as many buffers as the kernel takes...
template <typename Kernel>
void checkOpBufferCount(const Kernel& k, uint32_t count) {
  const auto& spec = k.buffers();
  if (count == spec.size()) return;
  std::string names;
  for (const auto& s : spec) names += (names.empty() ? "" : ", ") + s.name;
  throw Error("ERR_INVALID_ARG", k.op() + " " + k.pass() + ": got " + std::to_string(count) + " buffers, needs " +
                                     std::to_string(spec.size()) + " (" + names + ")");
}

// ...and each of the length the kernel declares.
template <typename Kernel>
void checkOpBufferLength(const Kernel& k, size_t i, int64_t length) {
  const BufferSpec& spec = k.buffers()[i];
  if (length == spec.length) return;
  throw Error("ERR_INVALID_ARG", k.op() + " " + k.pass() + (k.layer().empty() ? "" : " " + k.layer()) + ": buffer '" + spec.name +
                                     "' holds " + std::to_string(length) + " values, needs " + std::to_string(spec.length));
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
