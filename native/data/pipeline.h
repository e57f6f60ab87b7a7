// The input pipeline: a source of samples (raw JPEG files or packed records)
// and a loader that prepares batches on its worker pool. Each sample's crop
// and flip come from (seed, epoch, sample index) alone, so a batch is the
// same whatever the thread count. Also: packing records, making ImageFolders.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/records.h"
#include "data/worker_pool.h"

namespace stepscope {

class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual size_t size() const = 0;
  virtual int label(size_t i) const = 0;
  // "file '...'" or "records file '...', record N": named in skip reports.
  virtual std::string describe(size_t i) const = 0;
  // Sample i cropped, flipped and normalized into 3 planes of out*out floats; throws naming the sample.
  virtual void prepare(size_t i, uint64_t seed, uint64_t epoch, int out, float* dst) const = 0;
  // ERR_DATA_INDEX naming the index when i is past the end.
  virtual void checkIndex(int64_t i) const = 0;
  // Sample i before augmentation: the decoded file, or the stored record.
  virtual RgbImage stored(size_t i) const = 0;
  // Classes recorded in the source (records), 0 when unknown (raw).
  virtual int classes() const { return 0; }
};

// An ImageFolder's files and labels (the scan is done in TypeScript).
std::unique_ptr<SampleSource> rawJpegSource(std::vector<std::string> files, std::vector<int> labels);
std::unique_ptr<SampleSource> recordsSource(const std::string& path);

struct SkippedSample {
  int64_t index;
  std::string source, message, code;
};

struct Batch {
  std::unique_ptr<float[]> input;  // batch x 3 x size x size
  size_t inputLength = 0;
  std::vector<float> labels;
  std::vector<SkippedSample> skipped;
  uint64_t busyNs = 0;    // wall time preparing this batch
  uint64_t threadNs = 0;  // summed over the samples (all threads)
};

class DataLoader {
 public:
  DataLoader(std::unique_ptr<SampleSource> source, int threads, int size, bool skipBad);
  size_t size() const { return source_->size(); }
  int threads() const { return pool_.threads(); }
  const SampleSource& source() const { return *source_; }
  // Thread-safe; blocks the calling (libuv) thread while the pool works.
  // With `into` (indices.size() * 3 * size * size floats), the batch is
  // written there and Batch::input stays empty.
  Batch load(const std::vector<int64_t>& indices, uint64_t epoch, uint64_t seed, float* into = nullptr);
  size_t sampleLength() const { return size_t(3) * size_ * size_; }

 private:
  std::unique_ptr<SampleSource> source_;
  WorkerPool pool_;
  int size_;
  bool skipBad_;
};

// Decode and resize so the shorter side is `shorter` (torchvision's Resize(int)), using DCT scaling first.
RgbImage decodeResized(const std::vector<uint8_t>& data, const std::string& name, int shorter);

struct PackResult {
  uint64_t records = 0, bytes = 0;
  std::vector<SkippedSample> skipped;
};
PackResult packRecords(const std::vector<std::string>& files, const std::vector<int>& labels, int classes,
                       const std::string& out, int shorter, int threads, bool skipBad);

// Writes files[i] as synthetic image i of class labels[i] (JPEG, quality).
void makeImages(const std::vector<std::string>& files, const std::vector<int>& labels, int classes, uint64_t seed,
                int threads, int quality,
                uint64_t first = 0);

}  // namespace stepscope
