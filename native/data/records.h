// Pre-packed records: decoded images stored as uint8 HWC, so training only
// reads, crops, flips and normalizes. One file:
//
//   header (64 bytes, little-endian)
//     0  magic "STEPREC\0"      8  u32 version (1)      12 u32 count
//     16 u32 classes            20 u32 shorter side     24 u64 index offset
//     32 u64 index checksum     40 u64 file size        48 u64 reserved (0)
//     56 u64 header checksum (of bytes 0..56)
//   records: pixels, one after another
//   index (at index offset): count entries of 40 bytes
//     u64 offset, u64 size, u32 height, u32 width, u32 label, u32 reserved, u64 checksum of the pixels
//
// Checksums are hash64 (below). Everything is validated on open; a record's
// checksum on every read. Errors name the file (and the record index).
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "data/jpeg_codec.h"

namespace stepscope {

constexpr char kRecordsMagic[8] = {'S', 'T', 'E', 'P', 'R', 'E', 'C', '\0'};
constexpr uint32_t kRecordsVersion = 1;
constexpr size_t kRecordsHeaderBytes = 64;
constexpr size_t kRecordsEntryBytes = 40;

// A 64-bit hash over 64-bit words in four independent lanes (fast enough to
// check every record on every read), then mixed with the length.
uint64_t hash64(const uint8_t* data, size_t size);

struct RecordEntry {
  uint64_t offset = 0, size = 0;
  uint32_t height = 0, width = 0, label = 0;
  uint64_t checksum = 0;
};

// Writes to `path`.tmp and renames on finish(), so a reader never sees half a file.
class RecordsWriter {
 public:
  RecordsWriter(const std::string& path, uint32_t classes, uint32_t shorterSide);
  ~RecordsWriter();
  void add(const RgbImage& image, uint32_t label);
  // Returns the file's size in bytes.
  uint64_t finish();

 private:
  std::string path_, tmp_;
  FILE* file_ = nullptr;
  uint32_t classes_, shorterSide_;
  uint64_t offset_ = kRecordsHeaderBytes;
  std::vector<RecordEntry> index_;
};

class RecordsReader {
 public:
  explicit RecordsReader(const std::string& path);
  ~RecordsReader();
  RecordsReader(const RecordsReader&) = delete;
  RecordsReader& operator=(const RecordsReader&) = delete;

  size_t size() const { return index_.size(); }
  uint32_t classes() const { return classes_; }
  uint32_t shorterSide() const { return shorterSide_; }
  const std::string& path() const { return path_; }
  const RecordEntry& entry(size_t i) const;  // ERR_DATA_INDEX past the end
  // The pixels of record i, checksum verified (thread-safe: pread).
  RgbImage read(size_t i) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint32_t classes_ = 0, shorterSide_ = 0;
  std::vector<RecordEntry> index_;
};

}  // namespace stepscope
