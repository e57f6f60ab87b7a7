#include "data/jpeg_codec.h"

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "core/error.h"

#ifdef STEPSCOPE_HAVE_JPEG
#include <jpeglib.h>
#include <jerror.h>
#endif

namespace stepscope {

std::vector<uint8_t> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error("ERR_IO", "cannot open '" + path + "': " + std::strerror(errno));
  const std::streamsize size = in.tellg();
  std::vector<uint8_t> data(size_t(std::max<std::streamsize>(size, 0)));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(data.data()), size)) {
    throw Error("ERR_IO", "cannot read '" + path + "'");
  }
  return data;
}

// Only 1/8, 2/8, 4/8 (and 8/8): libjpeg-turbo has SIMD inverse DCTs for
// those; 3/8, 5/8, 6/8, 7/8 run its plain-C scaled IDCTs (12x12, 14x14 for
// subsampled chroma) and were measured slower than a full-size decode.
int dctScaleFor(int boxH, int boxW, int target) {
  for (int num = 1; num < 8; num *= 2) {
    // libjpeg rounds scaled sizes up; floor here keeps a safety margin.
    if (std::floor(boxH * num / 8.0) >= target && std::floor(boxW * num / 8.0) >= target) return num;
  }
  return 8;
}

#ifdef STEPSCOPE_HAVE_JPEG

bool jpegAvailable() { return true; }
std::string jpegVersion() {
#ifdef LIBJPEG_TURBO_VERSION
#define STEPSCOPE_STR2(x) #x
#define STEPSCOPE_STR(x) STEPSCOPE_STR2(x)
  return "libjpeg-turbo " STEPSCOPE_STR(LIBJPEG_TURBO_VERSION) " (API " + std::to_string(JPEG_LIB_VERSION) + ")";
#else
  return "libjpeg (API " + std::to_string(JPEG_LIB_VERSION) + ")";
#endif
}

namespace {

// libjpeg's error manager, with error_exit (and the premature-end warning,
// which libjpeg would otherwise pad over with grey) jumping back to us.
struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void onError(j_common_ptr cinfo) {
  auto* mgr = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, mgr->message);
  longjmp(mgr->jump, 1);
}

void onMessage(j_common_ptr cinfo, int level) {
  // level -1: a warning about corrupt data. Damaged entropy-coded data (a bad
  // Huffman or arithmetic code, a lost restart marker, a premature end) means
  // garbage pixels: an error for us. Harmless ones pass: extraneous bytes
  // before a marker, an unknown JFIF revision or Adobe transform, a bad ICC profile.
  if (level != -1) return;
  switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_BOGUS_PROGRESSION:
      onError(cinfo);
      break;
    default:
      break;
  }
}

void install(ErrorManager& mgr, j_common_ptr cinfo) {
  cinfo->err = jpeg_std_error(&mgr.pub);
  mgr.pub.error_exit = onError;
  mgr.pub.emit_message = onMessage;
  mgr.pub.output_message = [](j_common_ptr) {};
  mgr.message[0] = 0;
}

// A libjpeg codec object destroyed whichever way its scope is left: a return,
// an exception (a failed allocation of ours), or libjpeg's longjmp back to the
// setjmp after which the caller threw. Held by unique_ptr: on the heap, so what
// libjpeg writes into it after setjmp (the output buffer's address) stays
// well-defined after a longjmp, unlike a non-volatile local.
struct Decompressor {
  jpeg_decompress_struct cinfo;
  ErrorManager mgr;
  bool created = false;
  Decompressor() { install(mgr, reinterpret_cast<j_common_ptr>(&cinfo)); }
  ~Decompressor() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
  // After setjmp(mgr.jump): creating may fail (out of memory) and jump there.
  void create() {
    jpeg_create_decompress(&cinfo);
    created = true;
  }
};

struct Compressor {
  jpeg_compress_struct cinfo;
  ErrorManager mgr;
  bool created = false;
  unsigned char* buffer = nullptr;  // jpeg_mem_dest's output, grown (moved) by libjpeg
  unsigned long size = 0;
  Compressor() { install(mgr, reinterpret_cast<j_common_ptr>(&cinfo)); }
  ~Compressor() {
    if (created) jpeg_destroy_compress(&cinfo);
    free(buffer);  // the destination manager leaves its buffer to the caller
  }
  void create() {
    jpeg_create_compress(&cinfo);
    created = true;
  }
};

[[noreturn]] void fail(const std::string& name, const char* message) {
  throw Error("ERR_BAD_IMAGE", "'" + name + "' is not a readable JPEG: " + message);
}

// A header may claim up to 65500 x 65500 pixels (libjpeg's limit) in a few
// bytes: beyond this many the decode (and its buffers) is refused rather than
// attempted.
constexpr uint64_t kMaxPixels = 300'000'000;  // 108-megapixel photos pass

// After jpeg_read_header: refuses an image larger than kMaxPixels.
void checkPixels(jpeg_decompress_struct& cinfo, const std::string& name) {
  const uint64_t pixels = uint64_t(cinfo.image_width) * cinfo.image_height;
  if (pixels <= kMaxPixels) return;
  const std::string why = std::to_string(cinfo.image_width) + " x " + std::to_string(cinfo.image_height) +
                          " pixels, more than the 300 megapixels decoded";
  fail(name, why.c_str());
}

// A JPEG ends with the EOI marker (FF D9). Truncation that stops inside rows
// we never decode would otherwise pass unseen; trailing bytes after EOI are
// tolerated up to 4 KiB.
void checkComplete(const std::vector<uint8_t>& data, const std::string& name) {
  if (data.size() < 4 || data[0] != 0xFF || data[1] != 0xD8) fail(name, "no JPEG start-of-image marker (not a JPEG file)");
  const size_t from = data.size() > 4096 ? data.size() - 4096 : 2;
  for (size_t i = data.size() - 1; i > from; --i) {
    if (data[i - 1] == 0xFF && data[i] == 0xD9) return;
  }
  fail(name, "truncated: no end-of-image marker");
}

// CMYK/YCCK JPEGs (Adobe, inverted) to RGB.
void cmykToRgb(const uint8_t* in, uint8_t* out, int n) {
  for (int i = 0; i < n; ++i) {
    const int k = in[4 * i + 3];
    for (int c = 0; c < 3; ++c) out[3 * i + c] = uint8_t((in[4 * i + c] * k + 127) / 255);
  }
}

}  // namespace

JpegSize jpegSize(const std::vector<uint8_t>& data, const std::string& name) {
  checkComplete(data, name);
  auto d = std::make_unique<Decompressor>();
  jpeg_decompress_struct& cinfo = d->cinfo;
  if (setjmp(d->mgr.jump)) fail(name, d->mgr.message);
  d->create();
  jpeg_mem_src(&cinfo, data.data(), (unsigned long)data.size());
  jpeg_read_header(&cinfo, TRUE);
  checkPixels(cinfo, name);
  return JpegSize{int(cinfo.image_height), int(cinfo.image_width)};
}

DecodedWindow decodeJpegWindow(const std::vector<uint8_t>& data, const std::string& name, int top, int left, int height,
                               int width, int scaleNum) {
  checkComplete(data, name);
  DecodedWindow out;
  std::vector<uint8_t> cmykRow;
  auto d = std::make_unique<Decompressor>();
  jpeg_decompress_struct& cinfo = d->cinfo;
  if (setjmp(d->mgr.jump)) fail(name, d->mgr.message);
  d->create();
  jpeg_mem_src(&cinfo, data.data(), (unsigned long)data.size());
  jpeg_read_header(&cinfo, TRUE);
  checkPixels(cinfo, name);
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  cinfo.scale_num = std::min(std::max(scaleNum, 1), 8);
  cinfo.scale_denom = 8;
  jpeg_start_decompress(&cinfo);
  const int imgH = int(cinfo.image_height), imgW = int(cinfo.image_width);
  const int outH = int(cinfo.output_height), outW = int(cinfo.output_width);
  out.scaleY = double(outH) / imgH;
  out.scaleX = double(outW) / imgW;
  // The box in scaled coordinates, widened by a pixel for the bilinear taps.
  int y0 = std::max(0, int(std::floor(top * out.scaleY)) - 1);
  int y1 = std::min(outH, int(std::ceil((top + height) * out.scaleY)) + 1);
  int x0 = std::max(0, int(std::floor(left * out.scaleX)) - 1);
  int x1 = std::min(outW, int(std::ceil((left + width) * out.scaleX)) + 1);
  if (y1 <= y0 || x1 <= x0) throw Error("ERR_INVALID_ARG", "crop box outside the image of '" + name + "'");
  JDIMENSION xoff = JDIMENSION(x0), cols = JDIMENSION(x1 - x0);
  if (cols < JDIMENSION(outW)) jpeg_crop_scanline(&cinfo, &xoff, &cols);  // widens to the iMCU grid
  if (y0 > 0) jpeg_skip_scanlines(&cinfo, JDIMENSION(y0));
  out.y0 = y0;
  out.x0 = int(xoff);
  const int comps = cmyk ? 4 : 3;
  RgbImage& img = out.image;
  img.height = y1 - y0;
  img.width = int(cinfo.output_width);  // = cols after the crop
  img.pixels.resize(size_t(img.height) * img.width * 3);
  if (cmyk) cmykRow.resize(size_t(img.width) * comps);
  for (int r = 0; r < img.height; ++r) {
    uint8_t* dst = img.pixels.data() + size_t(r) * img.width * 3;
    JSAMPROW row = cmyk ? cmykRow.data() : dst;
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) fail(name, "fewer scanlines than the header promises");
    if (cmyk) cmykToRgb(cmykRow.data(), dst, img.width);
  }
  if (y1 == outH) jpeg_finish_decompress(&cinfo);  // reads to EOI: reports trailing corruption
  return out;
}

RgbImage decodeJpeg(const std::vector<uint8_t>& data, const std::string& name) {
  const JpegSize s = jpegSize(data, name);
  return decodeJpegWindow(data, name, 0, 0, s.height, s.width, 8).image;
}

std::vector<uint8_t> encodeJpeg(const RgbImage& image, int quality) {
  auto c = std::make_unique<Compressor>();
  jpeg_compress_struct& cinfo = c->cinfo;
  if (setjmp(c->mgr.jump)) throw Error("ERR_NATIVE", std::string("JPEG encoding failed: ") + c->mgr.message);
  c->create();
  jpeg_mem_dest(&cinfo, &c->buffer, &c->size);
  cinfo.image_width = JDIMENSION(image.width);
  cinfo.image_height = JDIMENSION(image.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(image.pixels.data()) + size_t(cinfo.next_scanline) * image.width * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  return std::vector<uint8_t>(c->buffer, c->buffer + c->size);
}

#else  // no libjpeg in this build

namespace {
[[noreturn]] void unavailable() {
  throw Error("ERR_UNAVAILABLE", "JPEG support is not in this build: install libjpeg62-turbo-dev (Debian) and rebuild");
}
}  // namespace

bool jpegAvailable() { return false; }
std::string jpegVersion() { return ""; }
JpegSize jpegSize(const std::vector<uint8_t>&, const std::string&) { unavailable(); }
DecodedWindow decodeJpegWindow(const std::vector<uint8_t>&, const std::string&, int, int, int, int, int) { unavailable(); }
RgbImage decodeJpeg(const std::vector<uint8_t>&, const std::string&) { unavailable(); }
std::vector<uint8_t> encodeJpeg(const RgbImage&, int) { unavailable(); }

#endif

}  // namespace stepscope
