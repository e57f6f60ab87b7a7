#include "data/pipeline.h"

#include <algorithm>
#include <fstream>
#include <mutex>

#include "core/error.h"
#include "core/timeline.h"
#include "data/augment.h"
#include "data/jpeg_codec.h"
#include "data/synth_image.h"

namespace stepscope {

namespace {

class RawJpegSource : public SampleSource {
 public:
  RawJpegSource(std::vector<std::string> files, std::vector<int> labels) : files_(std::move(files)), labels_(std::move(labels)) {
    if (files_.size() != labels_.size()) throw Error("ERR_INVALID_ARG", "files and labels differ in length");
  }
  size_t size() const override { return files_.size(); }
  int label(size_t i) const override { return labels_[i]; }
  std::string describe(size_t i) const override { return "file '" + files_[i] + "'"; }
  void checkIndex(int64_t i) const override {
    if (i < 0 || size_t(i) >= files_.size()) {
      throw Error("ERR_DATA_INDEX", "sample index " + std::to_string(i) + " is past the end of the dataset (" +
                                        std::to_string(files_.size()) + " images)");
    }
  }
  RgbImage stored(size_t i) const override {
    checkIndex(int64_t(i));
    return decodeJpeg(readFile(files_[i]), files_[i]);
  }
  // Crop in source coordinates first, so only the crop is decoded, at the
  // coarsest DCT scale that still leaves `out` pixels across it.
  void prepare(size_t i, uint64_t seed, uint64_t epoch, int out, float* dst) const override {
    const std::vector<uint8_t> data = readFile(files_[i]);
    const JpegSize s = jpegSize(data, files_[i]);
    const CropBox box = sampleAugment(seed, epoch, i, s.height, s.width);
    const DecodedWindow win = decodeJpegWindow(data, files_[i], box.top, box.left, box.height, box.width,
                                               dctScaleFor(box.height, box.width, out));
    const RgbView view{win.image.pixels.data(), win.image.height, win.image.width, size_t(win.image.width) * 3};
    resampleNormalize(view, box.top * win.scaleY - win.y0, box.left * win.scaleX - win.x0, box.height * win.scaleY,
                      box.width * win.scaleX, out, box.flip, dst);
  }

 private:
  std::vector<std::string> files_;
  std::vector<int> labels_;
};

class RecordsSource : public SampleSource {
 public:
  explicit RecordsSource(const std::string& path) : reader_(path) {}
  size_t size() const override { return reader_.size(); }
  int label(size_t i) const override { return int(reader_.entry(i).label); }
  std::string describe(size_t i) const override { return "records file '" + reader_.path() + "', record " + std::to_string(i); }
  void checkIndex(int64_t i) const override {
    if (i < 0) throw Error("ERR_DATA_INDEX", "records file '" + reader_.path() + "': record index " + std::to_string(i) + " is negative");
    reader_.entry(size_t(i));
  }
  RgbImage stored(size_t i) const override { return reader_.read(i); }
  int classes() const override { return int(reader_.classes()); }
  void prepare(size_t i, uint64_t seed, uint64_t epoch, int out, float* dst) const override {
    const RgbImage img = reader_.read(i);
    const CropBox box = sampleAugment(seed, epoch, i, img.height, img.width);
    const RgbView view{img.pixels.data(), img.height, img.width, size_t(img.width) * 3};
    resampleNormalize(view, box.top, box.left, box.height, box.width, out, box.flip, dst);
  }

 private:
  RecordsReader reader_;
};

}  // namespace

std::unique_ptr<SampleSource> rawJpegSource(std::vector<std::string> files, std::vector<int> labels) {
  return std::make_unique<RawJpegSource>(std::move(files), std::move(labels));
}

std::unique_ptr<SampleSource> recordsSource(const std::string& path) { return std::make_unique<RecordsSource>(path); }

DataLoader::DataLoader(std::unique_ptr<SampleSource> source, int threads, int size, bool skipBad)
    : source_(std::move(source)), pool_(threads), size_(size), skipBad_(skipBad) {
  if (source_->size() == 0) throw Error("ERR_INVALID_ARG", "the dataset is empty");
}

Batch DataLoader::load(const std::vector<int64_t>& indices, uint64_t epoch, uint64_t seed, float* into) {
  for (int64_t i : indices) source_->checkIndex(i);
  const uint64_t start = nowNs();
  const size_t plane = size_t(3) * size_ * size_, n = source_->size();
  Batch batch;
  batch.inputLength = indices.size() * plane;
  if (!into) {
    batch.input.reset(new float[batch.inputLength]);
    into = batch.input.get();
  }
  batch.labels.resize(indices.size());
  // Per slot: what went wrong (in try order); the first error of a slot when not skipping.
  std::vector<std::vector<SkippedSample>> skipped(indices.size());
  std::vector<uint64_t> busy(indices.size(), 0);
  pool_.run(indices.size(), [&](size_t slot) {
    const uint64_t t0 = nowNs();
    // A bad sample is replaced by the next one in the dataset: deterministic, whatever the threads.
    const size_t tries = skipBad_ ? std::min<size_t>(n, 32) : 1;
    for (size_t k = 0; k < tries; ++k) {
      const size_t index = size_t(indices[slot] + int64_t(k)) % n;
      try {
        source_->prepare(index, seed, epoch, size_, into + slot * plane);
        batch.labels[slot] = float(source_->label(index));
        break;
      } catch (const Error& e) {
        skipped[slot].push_back({int64_t(index), source_->describe(index), e.what(), e.code()});
        if (k + 1 == tries) skipped[slot].back().index = -1 - int64_t(index);  // marks the slot as failed
      } catch (const std::exception& e) {
        skipped[slot].push_back({int64_t(index), source_->describe(index), e.what(), "ERR_BAD_IMAGE"});
        if (k + 1 == tries) skipped[slot].back().index = -1 - int64_t(index);  // marks the slot as failed
      }
    }
    busy[slot] = nowNs() - t0;
  });
  for (size_t slot = 0; slot < indices.size(); ++slot) {
    for (const SkippedSample& s : skipped[slot]) {
      if (s.index < 0) {
        throw Error(s.code, skipBad_ ? s.message + " (and the " + std::to_string(skipped[slot].size() - 1) +
                                                    " samples after it were bad too)"
                                              : s.message + " (use --on-bad-image skip to skip such images)");
      }
      batch.skipped.push_back(s);
    }
    batch.threadNs += busy[slot];
  }
  batch.busyNs = nowNs() - start;
  return batch;
}

RgbImage decodeResized(const std::vector<uint8_t>& data, const std::string& name, int shorter) {
  const JpegSize s = jpegSize(data, name);
  const int small = std::min(s.height, s.width);
  const DecodedWindow win = decodeJpegWindow(data, name, 0, 0, s.height, s.width, dctScaleFor(small, small, shorter));
  RgbImage out;
  // torchvision's Resize(int): the shorter side becomes `shorter`, the longer one is truncated.
  if (s.height <= s.width) {
    out.height = shorter;
    out.width = int(int64_t(shorter) * s.width / s.height);
  } else {
    out.width = shorter;
    out.height = int(int64_t(shorter) * s.height / s.width);
  }
  out.pixels.resize(size_t(out.height) * out.width * 3);
  const RgbView view{win.image.pixels.data(), win.image.height, win.image.width, size_t(win.image.width) * 3};
  resizeRgb(view, out.height, out.width, out.pixels.data());
  return out;
}

PackResult packRecords(const std::vector<std::string>& files, const std::vector<int>& labels, int classes,
                       const std::string& out, int shorter, int threads, bool skipBad) {
  WorkerPool pool(threads);
  RecordsWriter writer(out, uint32_t(classes), uint32_t(shorter));
  PackResult result;
  const size_t chunk = size_t(std::max(1, threads)) * 8;
  for (size_t begin = 0; begin < files.size(); begin += chunk) {
    const size_t count = std::min(chunk, files.size() - begin);
    std::vector<RgbImage> images(count);
    std::vector<std::string> errors(count);
    pool.run(count, [&](size_t k) {
      try {
        images[k] = decodeResized(readFile(files[begin + k]), files[begin + k], shorter);
      } catch (const std::exception& e) {
        errors[k] = e.what();
        if (errors[k].empty()) errors[k] = "unknown error";
      }
    });
    for (size_t k = 0; k < count; ++k) {  // in order: record i is the i-th good file
      if (!errors[k].empty()) {
        if (!skipBad) throw Error("ERR_BAD_IMAGE", errors[k] + " (use --on-bad-image skip to skip such images)");
        result.skipped.push_back({int64_t(begin + k), "file '" + files[begin + k] + "'", errors[k], "ERR_BAD_IMAGE"});
        continue;
      }
      writer.add(images[k], uint32_t(labels[begin + k]));
      ++result.records;
    }
  }
  if (result.records == 0) throw Error("ERR_BAD_IMAGE", "no readable image to pack into '" + out + "'");
  result.bytes = writer.finish();
  return result;
}

void makeImages(const std::vector<std::string>& files, const std::vector<int>& labels, int classes, uint64_t seed,
                int threads, int quality, uint64_t first) {
  WorkerPool pool(threads);
  std::mutex mutex;
  std::string firstError;
  pool.run(files.size(), [&](size_t i) {
    try {
      const std::vector<uint8_t> jpeg = encodeJpeg(syntheticImage(seed, first + i, labels[i], classes), quality);
      std::ofstream f(files[i], std::ios::binary);
      f.write(reinterpret_cast<const char*>(jpeg.data()), std::streamsize(jpeg.size()));
      if (!f) throw Error("ERR_IO", "cannot write '" + files[i] + "'");
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex);
      if (firstError.empty()) firstError = e.what();
    }
  });
  if (!firstError.empty()) throw Error("ERR_IO", firstError);
}

}  // namespace stepscope
