#include "data/records.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "data/sample_rng.h"

namespace stepscope {

uint64_t hash64(const uint8_t* data, size_t size) {
  constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t lane[4] = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL, 0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL};
  size_t i = 0;
  for (; i + 32 <= size; i += 32) {
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, data + i + 8 * l, 8);
      lane[l] = (lane[l] ^ w) * kPrime;
    }
  }
  for (; i < size; ++i) lane[0] = (lane[0] ^ data[i]) * kPrime;
  return mix64(mix64(lane[0] ^ mix64(lane[1])) ^ mix64(lane[2] + mix64(lane[3])) ^ uint64_t(size));
}

namespace {

template <typename T>
void put(uint8_t* p, T v) { std::memcpy(p, &v, sizeof v); }
template <typename T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw Error("ERR_BAD_RECORDS", "records file '" + path + "': " + what);
}

void writeAll(FILE* f, const void* p, size_t n, const std::string& path) {
  if (n && std::fwrite(p, 1, n, f) != n) throw Error("ERR_IO", "cannot write '" + path + "': " + std::strerror(errno));
}

bool preadAll(int fd, void* p, size_t n, uint64_t offset) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    const ssize_t got = ::pread(fd, b, n, off_t(offset));
    if (got <= 0) return false;
    b += got;
    n -= size_t(got);
    offset += uint64_t(got);
  }
  return true;
}

}  // namespace

RecordsWriter::RecordsWriter(const std::string& path, uint32_t classes, uint32_t shorterSide)
    : path_(path), tmp_(path + ".tmp"), classes_(classes), shorterSide_(shorterSide) {
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (!file_) throw Error("ERR_IO", "cannot create '" + tmp_ + "': " + std::strerror(errno));
  uint8_t header[kRecordsHeaderBytes] = {};
  writeAll(file_, header, sizeof header, tmp_);  // rewritten by finish()
}

RecordsWriter::~RecordsWriter() {
  if (file_) {  // not finished: leave nothing behind
    std::fclose(file_);
    std::remove(tmp_.c_str());
  }
}

void RecordsWriter::add(const RgbImage& image, uint32_t label) {
  RecordEntry e;
  e.offset = offset_;
  e.size = image.pixels.size();
  e.height = uint32_t(image.height);
  e.width = uint32_t(image.width);
  e.label = label;
  e.checksum = hash64(image.pixels.data(), image.pixels.size());
  writeAll(file_, image.pixels.data(), image.pixels.size(), tmp_);
  offset_ += e.size;
  index_.push_back(e);
}

uint64_t RecordsWriter::finish() {
  std::vector<uint8_t> index(index_.size() * kRecordsEntryBytes);
  for (size_t i = 0; i < index_.size(); ++i) {
    uint8_t* p = index.data() + i * kRecordsEntryBytes;
    const RecordEntry& e = index_[i];
    put(p, e.offset);
    put(p + 8, e.size);
    put(p + 16, e.height);
    put(p + 20, e.width);
    put(p + 24, e.label);
    put(p + 28, uint32_t(0));
    put(p + 32, e.checksum);
  }
  writeAll(file_, index.data(), index.size(), tmp_);
  const uint64_t fileSize = offset_ + index.size();
  uint8_t header[kRecordsHeaderBytes] = {};
  std::memcpy(header, kRecordsMagic, 8);
  put(header + 8, kRecordsVersion);
  put(header + 12, uint32_t(index_.size()));
  put(header + 16, classes_);
  put(header + 20, shorterSide_);
  put(header + 24, offset_);
  put(header + 32, hash64(index.data(), index.size()));
  put(header + 40, fileSize);
  put(header + 56, hash64(header, 56));
  if (std::fseek(file_, 0, SEEK_SET) != 0) throw Error("ERR_IO", "cannot seek in '" + tmp_ + "'");
  writeAll(file_, header, sizeof header, tmp_);
  const bool ok = std::fflush(file_) == 0 && ::fsync(fileno(file_)) == 0;
  std::fclose(file_);
  file_ = nullptr;
  if (!ok || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    throw Error("ERR_IO", "cannot write '" + path_ + "': " + std::strerror(errno));
  }
  return fileSize;
}

RecordsReader::RecordsReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error("ERR_IO", "cannot open '" + path + "': " + std::strerror(errno));
  try {
    struct stat st;
    if (::fstat(fd_, &st) != 0) bad(path, "cannot stat");
    const uint64_t actual = uint64_t(st.st_size);
    uint8_t h[kRecordsHeaderBytes];
    if (actual < kRecordsHeaderBytes || !preadAll(fd_, h, sizeof h, 0)) bad(path, "shorter than the 64-byte header");
    if (std::memcmp(h, kRecordsMagic, 8) != 0) bad(path, "wrong magic: not a stepscope records file (make one with `stepscope data pack`)");
    const uint32_t version = get<uint32_t>(h + 8);
    if (version != kRecordsVersion) {
      bad(path, "version " + std::to_string(version) + " is not supported: this build reads version " + std::to_string(kRecordsVersion));
    }
    if (get<uint64_t>(h + 56) != hash64(h, 56)) bad(path, "header checksum mismatch (the header is corrupt)");
    const uint32_t count = get<uint32_t>(h + 12);
    classes_ = get<uint32_t>(h + 16);
    shorterSide_ = get<uint32_t>(h + 20);
    const uint64_t indexOffset = get<uint64_t>(h + 24), fileSize = get<uint64_t>(h + 40);
    if (fileSize != actual) {
      bad(path, "size " + std::to_string(actual) + " bytes, the header says " + std::to_string(fileSize) + " (truncated or appended to)");
    }
    const uint64_t indexBytes = uint64_t(count) * kRecordsEntryBytes;
    if (indexOffset < kRecordsHeaderBytes || indexOffset + indexBytes != actual) bad(path, "index offset out of range");
    std::vector<uint8_t> index(indexBytes);
    if (!preadAll(fd_, index.data(), index.size(), indexOffset)) bad(path, "cannot read the index");
    if (get<uint64_t>(h + 32) != hash64(index.data(), index.size())) bad(path, "index checksum mismatch (the index is corrupt)");
    index_.resize(count);
    for (uint32_t i = 0; i < count; ++i) {
      const uint8_t* p = index.data() + size_t(i) * kRecordsEntryBytes;
      RecordEntry& e = index_[i];
      e.offset = get<uint64_t>(p);
      e.size = get<uint64_t>(p + 8);
      e.height = get<uint32_t>(p + 16);
      e.width = get<uint32_t>(p + 20);
      e.label = get<uint32_t>(p + 24);
      e.checksum = get<uint64_t>(p + 32);
      if (e.height == 0 || e.width == 0 || e.size != uint64_t(e.height) * e.width * 3 || e.offset < kRecordsHeaderBytes ||
          e.offset + e.size > indexOffset) {
        bad(path, "record " + std::to_string(i) + " has an inconsistent index entry");
      }
    }
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

RecordsReader::~RecordsReader() {
  if (fd_ >= 0) ::close(fd_);
}

const RecordEntry& RecordsReader::entry(size_t i) const {
  if (i >= index_.size()) {
    throw Error("ERR_DATA_INDEX", "records file '" + path_ + "': record index " + std::to_string(i) + " is past the end (" +
                                      std::to_string(index_.size()) + " records)");
  }
  return index_[i];
}

RgbImage RecordsReader::read(size_t i) const {
  const RecordEntry& e = entry(i);
  RgbImage img;
  img.height = int(e.height);
  img.width = int(e.width);
  img.pixels.resize(e.size);
  if (!preadAll(fd_, img.pixels.data(), e.size, e.offset)) {
    throw Error("ERR_BAD_RECORDS", "records file '" + path_ + "': cannot read record " + std::to_string(i));
  }
  if (hash64(img.pixels.data(), img.pixels.size()) != e.checksum) {
    throw Error("ERR_BAD_RECORDS", "records file '" + path_ + "': record " + std::to_string(i) + " checksum mismatch (the data is corrupt)");
  }
  return img;
}

}  // namespace stepscope
