// Module init: the classes (Buffer, Stream, Event, ConvKernel) and the
// functions (timeline, variants, peak, build info) of the CPU addon; the
// input pipeline's (DataLoader, ...) come from napi/data_wrap.
#include <napi.h>
#include <omp.h>

#include "core/timeline.h"
#include "cpu/conv_kernel.h"
#include "cpu/gemm.h"
#include "cpu/peak.h"
#include "napi/addon_data.h"
#include "napi/buffer_wrap.h"
#include "napi/conv_wrap.h"
#include "napi/data_wrap.h"
#include "data/jpeg_codec.h"
#include "napi/op_wrap.h"
#include "napi/gloo_wrap.h"
#include "comm/gloo_comm.h"
#include "cpu/op_kernel.h"
#include "core/buffer.h"
#include "napi/stream_wrap.h"
#include "napi/op_js.h"
#include "napi/timeline_js.h"
#include "napi/util.h"

#ifdef STEPSCOPE_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace stepscope {
namespace {

Napi::Value timelineDrain(const Napi::CallbackInfo& info) { return kernelRecordsToJs(info.Env(), Timeline::global().drain()); }

Napi::Value waitsDrain(const Napi::CallbackInfo& info) { return waitRecordsToJs(info.Env(), Timeline::global().drainWaits()); }

Napi::Value timelineClear(const Napi::CallbackInfo& info) {
  Timeline::global().clear();
  return info.Env().Undefined();
}

Napi::Value nowNsValue(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(nowNs())); }

Napi::Value convVariants(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<ConvVariantInfo> variants = cpuConvVariants();
  Napi::Array out = Napi::Array::New(env, variants.size());
  for (size_t i = 0; i < variants.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", variants[i].name);
    o.Set("description", variants[i].description);
    o.Set("available", variants[i].available);
    if (!variants[i].available) o.Set("unavailableReason", variants[i].unavailableReason);
    out.Set(uint32_t(i), o);
  }
  return out;
}

Napi::Value opVariants(const Napi::CallbackInfo& info) { return opVariantsToJs(info.Env(), cpuOpVariants()); }

Napi::Value memoryStatsValue(const Napi::CallbackInfo& info) {
  MemoryStats m = memoryStats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytesInUse", double(m.bytesInUse));
  o.Set("peakBytes", double(m.peakBytes));
  o.Set("cachedBytes", double(bufferCacheBytes()));
  return o;
}

Napi::Value emptyCacheValue(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(emptyBufferCache()));
}

Napi::Value resetPeakMemoryValue(const Napi::CallbackInfo& info) {
  resetPeakMemory();
  return info.Env().Undefined();
}

Napi::Value measurePeakAsync(const Napi::CallbackInfo& info) {
  int trials = 3;
  try {  // a promise-returning function reports bad arguments by rejecting
    trials = info.Length() > 0 && !info[0].IsUndefined() ? intArg(info, 0, "trials") : 3;
    if (trials < 1 || trials > 100) {
      throw makeError(info.Env(), "ERR_INVALID_ARG",
                      "measurePeak(trials): trials " + std::to_string(trials) + " is out of range 1..100");
    }
  } catch (const Napi::Error& e) {
    auto deferred = Napi::Promise::Deferred::New(info.Env());
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto result = std::make_shared<PeakResult>();
    return runAsync(
        info.Env(), [result, trials] { *result = measurePeak(trials); },
        [result](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("fmaGflops", result->fmaGflops);
          o.Set("bandwidthGBs", result->bandwidthGBs);
          o.Set("threads", result->threads);
          o.Set("fmaKernel", result->fmaKernel);
          return o;
        });
  });
}

Napi::Value buildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", "cpu");
  o.Set("compiler", "g++ " __VERSION__);
  o.Set("threads", omp_get_max_threads());
  o.Set("openmp", _OPENMP);
  o.Set("sgemmKernel", sgemmKernelName());
#ifdef STEPSCOPE_SANITIZE_BUILD
  o.Set("sanitize", true);
#else
  o.Set("sanitize", false);
#endif
  Napi::Object onednn = Napi::Object::New(env);
#ifdef STEPSCOPE_HAVE_ONEDNN
  onednn.Set("found", true);
  onednn.Set("version", onednnVersion());
#else
  onednn.Set("found", false);
  onednn.Set("reason", STEPSCOPE_ONEDNN_BUILD_STATUS);
#endif
  o.Set("onednn", onednn);
  Napi::Object openblas = Napi::Object::New(env);
#ifdef STEPSCOPE_HAVE_OPENBLAS
  openblas.Set("found", true);
  openblas.Set("version", openblas_get_config());
  openblas.Set("threads", openblas_get_num_threads());
#else
  openblas.Set("found", false);
  openblas.Set("reason", STEPSCOPE_OPENBLAS_BUILD_STATUS);
#endif
  o.Set("openblas", openblas);
  Napi::Object gloo = Napi::Object::New(env);
  gloo.Set("found", GlooCommunicator::available());
  if (!GlooCommunicator::available()) gloo.Set("reason", STEPSCOPE_GLOO_BUILD_STATUS);
  o.Set("gloo", gloo);
  Napi::Object jpeg = Napi::Object::New(env);
  jpeg.Set("found", jpegAvailable());
  if (jpegAvailable()) jpeg.Set("version", jpegVersion());
  else jpeg.Set("reason", STEPSCOPE_JPEG_BUILD_STATUS);
  o.Set("jpeg", jpeg);
  return o;
}

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function buffer = BufferWrap::define(env), stream = StreamWrap::define(env), event = EventWrap::define(env),
                 conv = ConvKernelWrap::define(env), op = OpKernelWrap::define(env);
  data->buffer = Napi::Persistent(buffer);
  data->stream = Napi::Persistent(stream);
  data->event = Napi::Persistent(event);
  data->convKernel = Napi::Persistent(conv);
  data->opKernel = Napi::Persistent(op);
  exports.Set("Buffer", buffer);
  exports.Set("Stream", stream);
  exports.Set("Event", event);
  exports.Set("ConvKernel", conv);
  exports.Set("OpKernel", op);
  exports.Set("GlooCommunicator", GlooWrap::define(env));
  exports.Set("opVariants", Napi::Function::New(env, opVariants));
  exports.Set("memoryStats", Napi::Function::New(env, memoryStatsValue));
  exports.Set("resetPeakMemory", Napi::Function::New(env, resetPeakMemoryValue));
  exports.Set("emptyCache", Napi::Function::New(env, emptyCacheValue));
  exports.Set("timelineDrain", Napi::Function::New(env, timelineDrain));
  exports.Set("waitsDrain", Napi::Function::New(env, waitsDrain));
  exports.Set("timelineClear", Napi::Function::New(env, timelineClear));
  exports.Set("nowNs", Napi::Function::New(env, nowNsValue));
  exports.Set("convVariants", Napi::Function::New(env, convVariants));
  exports.Set("measurePeak", Napi::Function::New(env, measurePeakAsync));
  exports.Set("buildInfo", Napi::Function::New(env, buildInfo));
  defineDataFunctions(env, exports);
  return exports;
}

}  // namespace stepscope

static Napi::Object InitStepscope(Napi::Env env, Napi::Object exports) { return stepscope::init(env, exports); }

NODE_API_MODULE(stepscope, InitStepscope)
