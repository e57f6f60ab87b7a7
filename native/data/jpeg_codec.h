// JPEG decoding and encoding with libjpeg-turbo. Any libjpeg error (corrupt
// or truncated data, not a JPEG) becomes a thrown stepscope::Error naming the
// file (ERR_BAD_IMAGE), through a longjmp out of libjpeg's error_exit: never
// libjpeg's default exit(). Without libjpeg (STEPSCOPE_HAVE_JPEG unset) every
// function throws ERR_UNAVAILABLE.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace stepscope {

bool jpegAvailable();
std::string jpegVersion();

// 8-bit RGB, HWC, rows of width*3 bytes.
struct RgbImage {
  int height = 0, width = 0;
  std::vector<uint8_t> pixels;
};

// The whole file (ERR_IO naming it when it cannot be read).
std::vector<uint8_t> readFile(const std::string& path);

struct JpegSize {
  int height, width;
};
JpegSize jpegSize(const std::vector<uint8_t>& data, const std::string& name);

// A decoded window of the image at DCT scale scaleNum/8: `image` holds
// scaled rows [y0, y0+rows) and columns [x0, x0+cols); scaleY/scaleX map
// source pixel coordinates to scaled ones.
struct DecodedWindow {
  RgbImage image;
  int y0 = 0, x0 = 0;
  double scaleY = 1, scaleX = 1;
};

// Decodes only what covers the source box [top, top+height) x [left, left+width)
// (plus a one-pixel margin for bilinear taps), at scale scaleNum/8 (1..8):
// rows above are skipped, columns cropped to the iMCU grid, rows below never read.
DecodedWindow decodeJpegWindow(const std::vector<uint8_t>& data, const std::string& name, int top, int left, int height,
                               int width, int scaleNum);

// The largest DCT reduction (scaleNum/8) that keeps a box of boxH x boxW at least `target` pixels on each side.
int dctScaleFor(int boxH, int boxW, int target);

// The whole image at full size.
RgbImage decodeJpeg(const std::vector<uint8_t>& data, const std::string& name);

std::vector<uint8_t> encodeJpeg(const RgbImage& image, int quality);

}  // namespace stepscope
