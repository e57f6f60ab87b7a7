// Module init of the CUDA addon (stepscope_cuda.node): cudaInfo (device,
// driver, libraries, or why there is no device), setDevice, the conv variant
// table, the timeline, and the classes of wrap_*.cc. Loading needs no driver.
#include <napi.h>

#include <nvtx3/nvToolsExt.h>

#include "cuda/addon_cuda.h"
#include "cuda/device.h"
#include "cuda/peak_cuda.h"
#include "napi/op_js.h"
#include "napi/timeline_js.h"

namespace stepscope {
namespace {

std::string cudaVersionText(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

Napi::Value cudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceStatus d = deviceStatus();
  LibraryVersions v = libraryVersions();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", d.available);
  if (!d.available) o.Set("reason", d.reason);
  o.Set("deviceCount", d.count);
  if (d.available) {
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", d.device);
    dev.Set("name", d.name);
    dev.Set("computeCapability", std::to_string(d.ccMajor) + "." + std::to_string(d.ccMinor));
    dev.Set("memoryBytes", d.memoryBytes);
    dev.Set("multiprocessors", d.smCount);
    o.Set("device", dev);
    const auto all = allDeviceProperties();
    Napi::Array devices = Napi::Array::New(env, all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      Napi::Object g = Napi::Object::New(env);
      g.Set("index", all[i].index);
      g.Set("name", all[i].name);
      g.Set("computeCapability", std::to_string(all[i].ccMajor) + "." + std::to_string(all[i].ccMinor));
      g.Set("memoryBytes", all[i].memoryBytes);
      g.Set("multiprocessors", all[i].smCount);
      devices.Set(uint32_t(i), g);
    }
    o.Set("devices", devices);
  }
  o.Set("driverVersion", d.driverVersion > 0 ? Napi::Value(Napi::String::New(env, cudaVersionText(d.driverVersion))) : env.Null());
  o.Set("runtimeVersion", cudaVersionText(d.runtimeVersion));
  Napi::Object cudnn = Napi::Object::New(env);
  cudnn.Set("found", v.cudnnReason.empty());
  if (v.cudnnReason.empty()) {
    cudnn.Set("version", v.cudnn);
    cudnn.Set("cudart", v.cudnnCudart);
  } else {
    cudnn.Set("reason", v.cudnnReason);
  }
  o.Set("cudnn", cudnn);
  o.Set("cublas", v.cublas);
  Napi::Object nccl = Napi::Object::New(env);
  nccl.Set("found", v.ncclReason.empty());
  if (v.ncclReason.empty()) nccl.Set("version", v.nccl);
  else nccl.Set("reason", v.ncclReason);
  o.Set("nccl", nccl);
  o.Set("compiler", STEPSCOPE_CUDA_COMPILER);
  o.Set("architectures", STEPSCOPE_CUDA_ARCHS);
  return o;
}

Napi::Value convVariants(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto variants = cudaConvVariants();
  Napi::Array out = Napi::Array::New(env, variants.size());
  for (size_t i = 0; i < variants.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", variants[i].name);
    o.Set("description", variants[i].description);
    Napi::Array passes = Napi::Array::New(env, variants[i].passes.size());
    for (size_t j = 0; j < variants[i].passes.size(); ++j) passes.Set(uint32_t(j), variants[i].passes[j]);
    o.Set("passes", passes);
    out.Set(uint32_t(i), o);
  }
  return out;
}

Napi::Value opVariants(const Napi::CallbackInfo& info) { return opVariantsToJs(info.Env(), cudaOpVariants()); }

Napi::Value waitsDrain(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value { return waitRecordsToJs(info.Env(), drainWaits()); });
}

// memoryStats(device?): of the process, or of one GPU.
int statsDevice(const Napi::CallbackInfo& info, const char* what) {
  return info.Length() < 1 || info[0].IsUndefined() ? -1 : deviceIndex(info[0], std::string(what) + "(device)");
}

Napi::Value memoryStats(const Napi::CallbackInfo& info) {
  const CudaMemoryStats s = cudaGuarded(info.Env(), [&] { return cudaMemoryStats(statsDevice(info, "memoryStats")); });
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytesInUse", double(s.bytesInUse));
  o.Set("peakBytes", double(s.peakBytes));
  o.Set("cachedBytes", 0.0);
  o.Set("scratchBytes", double(s.scratchBytes));
  o.Set("peakTotalBytes", double(s.peakTotalBytes));
  return o;
}

Napi::Value resetPeakMemory(const Napi::CallbackInfo& info) {
  cudaGuarded(info.Env(), [&] { resetCudaPeakMemory(statsDevice(info, "resetPeakMemory")); });
  return info.Env().Undefined();
}

Napi::Value timelineDrain(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value { return kernelRecordsToJs(info.Env(), drainTimeline()); });
}

Napi::Value timelineClearValue(const Napi::CallbackInfo& info) {
  clearTimeline();
  return info.Env().Undefined();
}

// measurePeak(trials = 3): a promise of the GPU's measured peaks (peak_cuda.h).
Napi::Value measurePeak(const Napi::CallbackInfo& info) {
  const int trials = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 3;
  if (trials < 1 || trials > 1000) {
    throw makeError(info.Env(), "ERR_INVALID_ARG", "measurePeak(trials): trials " + std::to_string(trials) + " is not in 1..1000");
  }
  auto peak = std::make_shared<CudaPeak>();
  return runAsync(
      info.Env(), [peak, trials] { *peak = measureCudaPeak(trials); },
      [peak](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("fp32Gflops", peak->fp32Gflops);
        o.Set("tf32Gflops", peak->tf32Gflops);
        o.Set("bf16Gflops", peak->bf16Gflops);
        o.Set("bandwidthGBs", peak->bandwidthGBs);
        o.Set("gemmSize", peak->gemmSize);
        o.Set("trials", peak->trials);
        return o;
      });
}

// setDevice(index): this process's GPU, before any stream or buffer (one rank per GPU).
Napi::Value setDevice(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsNumber()) throw Error("ERR_INVALID_ARG", "setDevice(index): index must be a number");
    selectDevice(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  });
}

// nvtxRangePush(name) / nvtxRangePop(): the step's phases as NVTX ranges
// around their kernels' (each kernel has its own: cuda_stream.cc).
Napi::Value nvtxPush(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    nvtxRangePushA(stringArg(info, 0, "name").c_str());
    return info.Env().Undefined();
  });
}

Napi::Value nvtxPop(const Napi::CallbackInfo& info) {
  nvtxRangePop();
  return info.Env().Undefined();
}

// nvtxRangeStart(name): id / nvtxRangeEnd(id): ranges that need not nest,
// for replicas on several GPUs enqueued in turn from one thread (a stack of
// pushes would interleave them).
Napi::Value nvtxStart(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), double(nvtxRangeStartA(stringArg(info, 0, "name").c_str())));
  });
}

Napi::Value nvtxEnd(const Napi::CallbackInfo& info) {
  return cudaGuarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsNumber()) throw Error("ERR_INVALID_ARG", "nvtxRangeEnd(id): id must be the number nvtxRangeStart returned");
    nvtxRangeEnd(nvtxRangeId_t(info[0].As<Napi::Number>().DoubleValue()));
    return info.Env().Undefined();
  });
}

Napi::Value nowNsValue(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(nowNs())); }

}  // namespace

Napi::Object initCuda(Napi::Env env, Napi::Object exports) {
  auto* data = new CudaAddonData();
  env.SetInstanceData<CudaAddonData>(data);
  Napi::Function buffer = CudaBufferWrap::define(env), stream = CudaStreamWrap::define(env), event = CudaEventWrap::define(env),
                 conv = CudaConvKernelWrap::define(env), op = CudaOpKernelWrap::define(env), graph = CudaGraphWrap::define(env);
  data->buffer = Napi::Persistent(buffer);
  data->stream = Napi::Persistent(stream);
  data->event = Napi::Persistent(event);
  data->convKernel = Napi::Persistent(conv);
  data->opKernel = Napi::Persistent(op);
  data->graph = Napi::Persistent(graph);
  exports.Set("Buffer", buffer);
  exports.Set("Stream", stream);
  exports.Set("Event", event);
  exports.Set("ConvKernel", conv);
  exports.Set("OpKernel", op);
  exports.Set("Graph", graph);
  exports.Set("HostPin", defineHostPin(env));
  exports.Set("nvtxRangePush", Napi::Function::New(env, nvtxPush));
  exports.Set("nvtxRangePop", Napi::Function::New(env, nvtxPop));
  exports.Set("nvtxRangeStart", Napi::Function::New(env, nvtxStart));
  exports.Set("nvtxRangeEnd", Napi::Function::New(env, nvtxEnd));
  Napi::Function nccl = CudaNcclWrap::define(env);
  data->nccl = Napi::Persistent(nccl);
  exports.Set("NcclCommunicator", nccl);
  exports.Set("setDevice", Napi::Function::New(env, setDevice));
  exports.Set("measurePeak", Napi::Function::New(env, measurePeak));
  exports.Set("opVariants", Napi::Function::New(env, opVariants));
  exports.Set("cudaInfo", Napi::Function::New(env, cudaInfo));
  exports.Set("convVariants", Napi::Function::New(env, convVariants));
  exports.Set("timelineDrain", Napi::Function::New(env, timelineDrain));
  exports.Set("waitsDrain", Napi::Function::New(env, waitsDrain));
  exports.Set("memoryStats", Napi::Function::New(env, memoryStats));
  exports.Set("resetPeakMemory", Napi::Function::New(env, resetPeakMemory));
  exports.Set("timelineClear", Napi::Function::New(env, timelineClearValue));
  exports.Set("nowNs", Napi::Function::New(env, nowNsValue));
  return exports;
}

}  // namespace stepscope

static Napi::Object InitStepscopeCuda(Napi::Env env, Napi::Object exports) { return stepscope::initCuda(env, exports); }

NODE_API_MODULE(stepscope_cuda, InitStepscopeCuda)
