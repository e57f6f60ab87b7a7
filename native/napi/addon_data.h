// Per-environment state of the addon (constructors of the wrapped classes),
// kept as instance data so the addon also works in worker threads.
#pragma once
#include <napi.h>

namespace stepscope {

struct AddonData {
  Napi::FunctionReference buffer;
  Napi::FunctionReference stream;
  Napi::FunctionReference event;
  Napi::FunctionReference convKernel;
  Napi::FunctionReference opKernel;
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace stepscope
