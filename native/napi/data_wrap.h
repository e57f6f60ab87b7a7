// The input pipeline's JS surface: class DataLoader (batches as promises,
// prepared on the loader's own worker pool) and the functions behind
// `stepscope data` (packRecords, makeImages) and the tests (jpegDecode,
// jpegEncode, augmentParams).
#pragma once
#include <napi.h>

#include <memory>

#include "data/pipeline.h"

namespace stepscope {

class DataLoaderWrap : public Napi::ObjectWrap<DataLoaderWrap> {
 public:
  static constexpr const char* kClassName = "DataLoader";
  static Napi::Function define(Napi::Env env);
  explicit DataLoaderWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value record(const Napi::CallbackInfo& info);
  Napi::Value length(const Napi::CallbackInfo& info);
  Napi::Value threads(const Napi::CallbackInfo& info);
  Napi::Value classes(const Napi::CallbackInfo& info);
  Napi::Value labels(const Napi::CallbackInfo& info);

  // Shared with in-flight loads, so a dropped handle cannot free it under them.
  std::shared_ptr<DataLoader> loader_;
  int classes_ = 0;
};

// Adds the data functions to the module's exports.
void defineDataFunctions(Napi::Env env, Napi::Object exports);

}  // namespace stepscope
