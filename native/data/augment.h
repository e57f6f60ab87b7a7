// The training augmentations of the ImageNet recipe: RandomResizedCrop
// (torchvision's parameter draw: scale 0.08-1, ratio 3/4-4/3, 10 tries, then
// a centre crop), a random horizontal flip, and the bilinear resample of the
// crop that writes normalized float32 planes (NCHW) in one pass.
#pragma once
#include <cstddef>
#include <cstdint>

namespace stepscope {

struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
  bool flip = false;
};

// The crop and flip of sample `index` in `epoch` for an image of height x width.
CropBox sampleAugment(uint64_t seed, uint64_t epoch, uint64_t index, int height, int width);

// ImageNet's mean and std per RGB channel, as torchvision's Normalize uses them.
extern const float kImageNetMean[3];
extern const float kImageNetStd[3];

// A window of an 8-bit RGB (HWC) image: `rows` x `cols` pixels, `stride`
// bytes per row. The crop is the box [y0, y0+boxH) x [x0, x0+boxW) in the
// window's pixel coordinates (fractional: the box may come from a scaled decode).
struct RgbView {
  const uint8_t* data;
  int rows, cols;
  size_t stride;
};

// Bilinear resample (half-pixel centres, edge clamp) of the box to out x out,
// mirrored when flip, normalized ((v/255 - mean) / std), written as three
// planes of out*out floats at dst, dst + out*out, dst + 2*out*out.
void resampleNormalize(const RgbView& src, double y0, double x0, double boxH, double boxW, int out, bool flip, float* dst);

// Bilinear resize of a whole RGB image to outH x outW, 8-bit HWC (records).
void resizeRgb(const RgbView& src, int outH, int outW, uint8_t* dst);

}  // namespace stepscope
