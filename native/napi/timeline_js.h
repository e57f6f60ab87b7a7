// Timeline records as the JS objects of binding.d.ts (KernelRecord,
// WaitRecord); shared by the CPU and the CUDA addon.
#pragma once
#include <napi.h>

#include <vector>

#include "core/timeline.h"

namespace stepscope {

inline Napi::Array kernelRecordsToJs(Napi::Env env, const std::vector<KernelRecord>& records) {
  Napi::Array out = Napi::Array::New(env, records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const KernelRecord& r = records[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("op", r.info.op);
    o.Set("variant", r.info.variant);
    o.Set("layer", r.info.layer);
    o.Set("pass", r.info.pass);
    o.Set("stream", r.streamId);
    o.Set("streamName", r.streamName);
    o.Set("startNs", double(r.startNs));
    o.Set("endNs", double(r.endNs));
    o.Set("flops", r.info.flops);
    o.Set("bytes", r.info.bytes);
    out.Set(uint32_t(i), o);
  }
  return out;
}

inline Napi::Array waitRecordsToJs(Napi::Env env, const std::vector<WaitRecord>& waits) {
  Napi::Array out = Napi::Array::New(env, waits.size());
  for (size_t i = 0; i < waits.size(); ++i) {
    const WaitRecord& w = waits[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("stream", w.streamId);
    o.Set("streamName", w.streamName);
    o.Set("sourceStream", w.sourceStream);
    o.Set("startNs", double(w.startNs));
    o.Set("endNs", double(w.endNs));
    o.Set("firedNs", double(w.firedNs));
    out.Set(uint32_t(i), o);
  }
  return out;
}

}  // namespace stepscope
