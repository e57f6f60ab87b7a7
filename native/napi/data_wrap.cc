#include "napi/data_wrap.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "data/augment.h"
#include "data/jpeg_codec.h"
#include "napi/buffer_wrap.h"
#include "napi/util.h"

namespace stepscope {

namespace {

std::vector<std::string> stringArray(Napi::Value v, const char* what) {
  if (!v.IsArray()) throw Error("ERR_INVALID_ARG", std::string(what) + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) throw Error("ERR_INVALID_ARG", std::string(what) + "[" + std::to_string(i) + "] must be a string");
    out[i] = e.As<Napi::String>().Utf8Value();
  }
  return out;
}

std::vector<int> intArray(Napi::Value v, const char* what, int lo, int hi) {
  if (!v.IsArray()) throw Error("ERR_INVALID_ARG", std::string(what) + " must be an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1e300;
    if (!(d >= lo && d <= hi) || d != double(int64_t(d))) {
      throw Error("ERR_INVALID_ARG", std::string(what) + "[" + std::to_string(i) + "] must be an integer from " +
                                         std::to_string(lo) + " to " + std::to_string(hi));
    }
    out[i] = int(d);
  }
  return out;
}

int intOption(const Napi::Object& o, const char* name, int lo, int hi, int fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  const int n = intProp(o, name, "options");
  if (n < lo || n > hi) {
    throw Error("ERR_INVALID_ARG", std::string("options.") + name + " " + std::to_string(n) + " is out of range " +
                                       std::to_string(lo) + ".." + std::to_string(hi));
  }
  return n;
}

bool skipOption(const Napi::Object& o) {
  Napi::Value v = o.Get("onBadImage");
  if (v.IsUndefined()) return false;
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s != "skip" && s != "fail") throw Error("ERR_INVALID_ARG", "options.onBadImage must be 'skip' or 'fail'");
  return s == "skip";
}

Napi::Object objectArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsObject()) throw Error("ERR_INVALID_ARG", std::string(what) + " must be an object");
  return info[i].As<Napi::Object>();
}

Napi::Array skippedArray(Napi::Env env, const std::vector<SkippedSample>& skipped) {
  Napi::Array a = Napi::Array::New(env, skipped.size());
  for (size_t i = 0; i < skipped.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", double(skipped[i].index));
    o.Set("source", skipped[i].source);
    o.Set("message", skipped[i].message);
    a.Set(uint32_t(i), o);
  }
  return a;
}

Napi::Object imageObject(Napi::Env env, const RgbImage& img) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("height", img.height);
  o.Set("width", img.width);
  o.Set("pixels", Napi::Buffer<uint8_t>::Copy(env, img.pixels.data(), img.pixels.size()));
  return o;
}

// Rejects instead of throwing: a promise-returning function reports bad arguments that way.
template <typename F>
Napi::Value promising(Napi::Env env, F&& body) {
  try {
    return guarded(env, std::forward<F>(body));
  } catch (const Napi::Error& e) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
}

}  // namespace

Napi::Function DataLoaderWrap::define(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {InstanceMethod<&DataLoaderWrap::load>("load"), InstanceMethod<&DataLoaderWrap::record>("sample"),
                      InstanceAccessor<&DataLoaderWrap::length>("length"),
                      InstanceAccessor<&DataLoaderWrap::threads>("threads"),
                      InstanceAccessor<&DataLoaderWrap::classes>("classes"),
                      InstanceMethod<&DataLoaderWrap::labels>("labels")});
}

// new DataLoader(source, { threads, size, onBadImage }): source is
// { kind: 'raw', files, labels } or { kind: 'records', path }. Opening
// records validates the header and index here (throws naming the file).
DataLoaderWrap::DataLoaderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DataLoaderWrap>(info) {
  guarded(info.Env(), [&] {
    Napi::Object src = objectArg(info, 0, "source"), opts = objectArg(info, 1, "options");
    const std::string kind = src.Get("kind").IsString() ? src.Get("kind").As<Napi::String>().Utf8Value() : "";
    const int threads = intOption(opts, "threads", 1, 256, 1), size = intOption(opts, "size", 8, 4096, 224);
    std::unique_ptr<SampleSource> source;
    if (kind == "raw") {
      source = rawJpegSource(stringArray(src.Get("files"), "source.files"), intArray(src.Get("labels"), "source.labels", 0, 1 << 30));
    } else if (kind == "records") {
      if (!src.Get("path").IsString()) throw Error("ERR_INVALID_ARG", "source.path must be a string");
      source = recordsSource(src.Get("path").As<Napi::String>().Utf8Value());
    } else {
      throw Error("ERR_INVALID_ARG", "source.kind must be 'raw' or 'records'");
    }
    classes_ = source->classes();
    loader_ = std::make_shared<DataLoader>(std::move(source), threads, size, skipOption(opts));
  });
}

Napi::Value DataLoaderWrap::length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(loader_->size())); }
Napi::Value DataLoaderWrap::threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), loader_->threads()); }
Napi::Value DataLoaderWrap::classes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), classes_); }

Napi::Value DataLoaderWrap::labels(const Napi::CallbackInfo& info) {
  const SampleSource& s = loader_->source();
  Napi::Array a = Napi::Array::New(info.Env(), s.size());
  for (size_t i = 0; i < s.size(); ++i) a.Set(uint32_t(i), s.label(i));
  return a;
}

namespace {
// The memory this process may use: the machine's, or its control group's
// limit when lower (a container's; cgroup v2, then v1). 0: unknown.
double usableMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), pageBytes = sysconf(_SC_PAGESIZE);
  double bytes = pages > 0 && pageBytes > 0 ? double(pages) * double(pageBytes) : 0;
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    double limit = 0;
    if (in >> limit && limit > 0 && (bytes == 0 || limit < bytes)) bytes = limit;  // "max" (none) reads as nothing
  }
  return bytes;
}

// A batch's input is allocated whole before it loads. One over half of the
// memory this process may use is refused here: Linux would grant it and the
// OOM killer would end the process while the workers fill it, losing every output.
void checkBatchFits(size_t samples, size_t sampleLength) {
  static const double usable = usableMemoryBytes();  // read once: not on every batch
  if (usable <= 0) return;  // unknown: allocate and see
  const double gib = double(1u << 30);
  const double bytes = double(samples) * double(sampleLength) * sizeof(float);
  if (bytes <= usable / 2) return;
  char text[240];
  std::snprintf(text, sizeof text,
                "load: a batch of %zu samples of %zu floats is %.1f GiB, more than half of the memory this process may use (%.1f GiB): load fewer indices at once",
                samples, sampleLength, bytes / gib, usable / gib);
  throw Error("ERR_INVALID_ARG", text);
}
}  // namespace

// load(indices, epoch, seed, into?): a promise of { input (unless into), labels, skipped, busyNs, threadNs }.
Napi::Value DataLoaderWrap::load(const Napi::CallbackInfo& info) {
  return promising(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw Error("ERR_INVALID_ARG", "load(indices, epoch, seed): indices must be an array");
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<int64_t> indices(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value v = a.Get(i);
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d < 9e15) || d != double(int64_t(d))) throw Error("ERR_INVALID_ARG", "load: indices must be non-negative integers");
      indices[i] = int64_t(d);
    }
    if (indices.empty()) throw Error("ERR_INVALID_ARG", "load: indices is empty");
    const int epoch = intArg(info, 1, "epoch"), seed = intArg(info, 2, "seed");
    // Optionally into a Buffer (the step's input of a later iteration): no copy at all.
    BufferPtr target;
    if (info.Length() > 3 && !info[3].IsUndefined()) {
      target = unwrapArg<BufferWrap>(info, 3, "into")->buffer();
      if (!target) throw Error("ERR_INVALID_ARG", "load: the target buffer was released");
      if (target->size() != indices.size() * loader_->sampleLength()) {
        throw Error("ERR_INVALID_ARG", "load: the target buffer holds " + std::to_string(target->size()) + " values, the batch " +
                                           std::to_string(indices.size() * loader_->sampleLength()));
      }
    }
    if (!target) checkBatchFits(indices.size(), loader_->sampleLength());
    auto loader = loader_;
    auto batch = std::make_shared<Batch>();
    return runAsync(
        info.Env(),
        [loader, batch, indices, epoch, seed, target] {
          if (target) target->waitUntilHostSafe();
          *batch = loader->load(indices, uint64_t(epoch), uint64_t(seed), target ? target->data() : nullptr);
        },
        [batch](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          if (batch->input) {
            // The batch's memory becomes the ArrayBuffer's, without a copy.
            float* data = batch->input.release();
            Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, batch->inputLength * sizeof(float),
                                                          [](Napi::Env, void* p) { delete[] static_cast<float*>(p); });
            o.Set("input", Napi::Float32Array::New(env, batch->inputLength, ab, 0));
          }
          Napi::Float32Array labels = Napi::Float32Array::New(env, batch->labels.size());
          std::copy(batch->labels.begin(), batch->labels.end(), labels.Data());
          o.Set("labels", labels);
          o.Set("skipped", skippedArray(env, batch->skipped));
          o.Set("busyNs", double(batch->busyNs));
          o.Set("threadNs", double(batch->threadNs));
          return o;
        });
  });
}

// sample(i): sample i before augmentation ({ height, width, pixels: RGB HWC }); sync, for tests and tools.
Napi::Value DataLoaderWrap::record(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const int i = intArg(info, 0, "index");
    loader_->source().checkIndex(i);
    Napi::Object o = imageObject(info.Env(), loader_->source().stored(size_t(i)));
    o.Set("label", loader_->source().label(size_t(i)));
    return o;
  });
}

namespace {

// jpegDecode(path, shorter?): the whole image, or resized so its shorter side is `shorter` (as data pack stores it).
Napi::Value jpegDecode(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string path = stringArg(info, 0, "path");
    const std::vector<uint8_t> data = readFile(path);
    if (info.Length() > 1 && !info[1].IsUndefined()) return imageObject(info.Env(), decodeResized(data, path, intArg(info, 1, "shorter")));
    return imageObject(info.Env(), decodeJpeg(data, path));
  });
}

// jpegEncode(path, { height, width, pixels }, quality): writes an RGB image as a JPEG file.
Napi::Value jpegEncode(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string path = stringArg(info, 0, "path");
    Napi::Object o = objectArg(info, 1, "image");
    RgbImage img;
    img.height = intProp(o, "height", "image");
    img.width = intProp(o, "width", "image");
    const int quality = intArg(info, 2, "quality");
    Napi::Value p = o.Get("pixels");
    if (img.height < 1 || img.width < 1 || img.height > 65500 || img.width > 65500 || !p.IsTypedArray() ||
        p.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        p.As<Napi::Uint8Array>().ElementLength() != size_t(img.height) * img.width * 3) {
      throw Error("ERR_INVALID_ARG", "image.pixels must be a Uint8Array of height*width*3 bytes");
    }
    if (quality < 1 || quality > 100) throw Error("ERR_INVALID_ARG", "quality must be from 1 to 100");
    Napi::Uint8Array px = p.As<Napi::Uint8Array>();
    img.pixels.assign(px.Data(), px.Data() + px.ElementLength());
    const std::vector<uint8_t> jpeg = encodeJpeg(img, quality);
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(jpeg.data()), std::streamsize(jpeg.size()));
    if (!f) throw Error("ERR_IO", "cannot write '" + path + "'");
    return Napi::Number::New(info.Env(), double(jpeg.size()));
  });
}

// augmentParams(seed, epoch, index, height, width): the crop box and flip a sample gets.
Napi::Value augmentParams(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const int seed = intArg(info, 0, "seed"), epoch = intArg(info, 1, "epoch"), index = intArg(info, 2, "index");
    const int h = intArg(info, 3, "height"), w = intArg(info, 4, "width");
    if (h < 1 || w < 1) throw Error("ERR_INVALID_ARG", "augmentParams: height and width must be positive");
    const CropBox b = sampleAugment(uint64_t(seed), uint64_t(epoch), uint64_t(index), h, w);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("top", b.top);
    o.Set("left", b.left);
    o.Set("height", b.height);
    o.Set("width", b.width);
    o.Set("flip", b.flip);
    return o;
  });
}

// packRecords({ files, labels, classes, out, size, threads, onBadImage }): a promise of { records, bytes, skipped }.
Napi::Value packRecordsAsync(const Napi::CallbackInfo& info) {
  return promising(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = objectArg(info, 0, "options");
    auto files = std::make_shared<std::vector<std::string>>(stringArray(o.Get("files"), "options.files"));
    auto labels = std::make_shared<std::vector<int>>(intArray(o.Get("labels"), "options.labels", 0, 1 << 30));
    if (files->size() != labels->size()) throw Error("ERR_INVALID_ARG", "options.files and options.labels differ in length");
    if (!o.Get("out").IsString()) throw Error("ERR_INVALID_ARG", "options.out must be a string");
    const std::string out = o.Get("out").As<Napi::String>().Utf8Value();
    const int classes = intOption(o, "classes", 1, 1 << 30, 1), size = intOption(o, "size", 8, 4096, 256);
    const int threads = intOption(o, "threads", 1, 256, 1);
    const bool skip = skipOption(o);
    auto result = std::make_shared<PackResult>();
    return runAsync(
        info.Env(), [=] { *result = packRecords(*files, *labels, classes, out, size, threads, skip); },
        [result](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("records", double(result->records));
          r.Set("bytes", double(result->bytes));
          r.Set("skipped", skippedArray(env, result->skipped));
          return r;
        });
  });
}

// makeImages({ files, labels, classes, seed, threads, quality, first }): a promise; writes synthetic
// JPEGs; files[i] is image `first + i` of the seed's sequence (so a folder can be written in chunks).
Napi::Value makeImagesAsync(const Napi::CallbackInfo& info) {
  return promising(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = objectArg(info, 0, "options");
    auto files = std::make_shared<std::vector<std::string>>(stringArray(o.Get("files"), "options.files"));
    auto labels = std::make_shared<std::vector<int>>(intArray(o.Get("labels"), "options.labels", 0, 1 << 30));
    if (files->size() != labels->size()) throw Error("ERR_INVALID_ARG", "options.files and options.labels differ in length");
    const int classes = intOption(o, "classes", 1, 1 << 30, 1), seed = intOption(o, "seed", 0, 2147483647, 1);
    const int threads = intOption(o, "threads", 1, 256, 1), quality = intOption(o, "quality", 1, 100, 90);
    const int first = intOption(o, "first", 0, 2147483647, 0);
    return runAsync(info.Env(), [=] { makeImages(*files, *labels, classes, uint64_t(seed), threads, quality, uint64_t(first)); });
  });
}

}  // namespace

void defineDataFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("DataLoader", DataLoaderWrap::define(env));
  exports.Set("jpegDecode", Napi::Function::New(env, jpegDecode));
  exports.Set("jpegEncode", Napi::Function::New(env, jpegEncode));
  exports.Set("augmentParams", Napi::Function::New(env, augmentParams));
  exports.Set("packRecords", Napi::Function::New(env, packRecordsAsync));
  exports.Set("makeImages", Napi::Function::New(env, makeImagesAsync));
}

}  // namespace stepscope
