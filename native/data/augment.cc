#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/sample_rng.h"

namespace stepscope {

const float kImageNetMean[3] = {0.485f, 0.456f, 0.406f};
const float kImageNetStd[3] = {0.229f, 0.224f, 0.225f};

// torchvision.transforms.RandomResizedCrop.get_params, draw for draw.
CropBox sampleAugment(uint64_t seed, uint64_t epoch, uint64_t index, int height, int width) {
  SampleRng rng(seed, epoch, index);
  CropBox box;
  const double area = double(height) * double(width);
  const double logLo = std::log(3.0 / 4.0), logHi = std::log(4.0 / 3.0);
  bool found = false;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    const double target = area * rng.uniform(0.08, 1.0);
    const double ratio = std::exp(rng.uniform(logLo, logHi));
    const int w = int(std::lround(std::sqrt(target * ratio)));
    const int h = int(std::lround(std::sqrt(target / ratio)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      box.top = int(rng.integer(0, height - h + 1));
      box.left = int(rng.integer(0, width - w + 1));
      box.height = h;
      box.width = w;
      found = true;
    }
  }
  if (!found) {  // the centre crop with the ratio clamped into range
    const double inRatio = double(width) / double(height);
    int w = width, h = height;
    if (inRatio < 3.0 / 4.0) h = int(std::lround(w / (3.0 / 4.0)));
    else if (inRatio > 4.0 / 3.0) w = int(std::lround(h * (4.0 / 3.0)));
    h = std::min(h, height);
    w = std::min(w, width);
    box = {(height - h) / 2, (width - w) / 2, h, w, false};
  }
  box.flip = rng.uniform() < 0.5;
  return box;
}

namespace {

// Source index pairs and weights along one axis (half-pixel centres, clamped).
struct Taps {
  std::vector<int> i0, i1;
  std::vector<float> w1;
};

Taps taps(double start, double length, int out, int limit) {
  Taps t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.w1.resize(out);
  const double step = length / out;
  for (int o = 0; o < out; ++o) {
    double s = start + (o + 0.5) * step - 0.5;
    s = std::min(std::max(s, 0.0), double(limit - 1));
    const int a = int(s);
    t.i0[o] = a;
    t.i1[o] = std::min(a + 1, limit - 1);
    t.w1[o] = float(s - a);
  }
  return t;
}

// The two hot loops, compiled for the baseline and for AVX2/AVX-512, picked
// at load time (GCC's target_clones: an ifunc resolved once).
__attribute__((target_clones("avx512f", "avx2", "default"))) void gatherRow(const uint8_t* rc, const int* ia, const int* ib,
                                                                         const float* wa, const float* wb, float bias,
                                                                         int out, float* d) {
  for (int ox = 0; ox < out; ++ox) d[ox] = float(rc[ia[ox]]) * wa[ox] + float(rc[ib[ox]]) * wb[ox] + bias;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void blendRows(const float* __restrict t, const float* __restrict b,
                                                                         float wy, int out, float* __restrict d) {
  for (int ox = 0; ox < out; ++ox) d[ox] = t[ox] + wy * (b[ox] - t[ox]);
}

}  // namespace

// Separable: each source row the crop touches is interpolated horizontally
// once (normalized, mirrored by reversing the taps) into three float rows,
// kept while consecutive output rows share it (crops smaller than the output
// reuse each row several times); the vertical blend is then contiguous and
// vectorizes.
void resampleNormalize(const RgbView& src, double y0, double x0, double boxH, double boxW, int out, bool flip, float* dst) {
  const Taps ty = taps(y0, boxH, out, src.rows);
  Taps tx = taps(x0, boxW, out, src.cols);
  if (flip) {
    std::reverse(tx.i0.begin(), tx.i0.end());
    std::reverse(tx.i1.begin(), tx.i1.end());
    std::reverse(tx.w1.begin(), tx.w1.end());
  }
  float scale[3], bias[3];
  for (int c = 0; c < 3; ++c) {  // (v/255 - mean)/std as one multiply-add
    scale[c] = 1.0f / (255.0f * kImageNetStd[c]);
    bias[c] = -kImageNetMean[c] / kImageNetStd[c];
  }
  const size_t plane = size_t(out) * out;
  std::vector<float> cache(size_t(out) * 6);
  float* rows[2] = {cache.data(), cache.data() + size_t(out) * 3};  // each: 3 channel rows of `out`
  int cached[2] = {-1, -1};
  // Per column: byte offsets of the two taps and their weights, with the
  // normalization's scale folded in (two multiply-adds per value).
  std::vector<int> ia(out), ib(out);
  std::vector<float> wa(size_t(out) * 3), wb(size_t(out) * 3);
  for (int ox = 0; ox < out; ++ox) {
    ia[ox] = tx.i0[ox] * 3;
    ib[ox] = tx.i1[ox] * 3;
    for (int c = 0; c < 3; ++c) {
      wa[size_t(c) * out + ox] = (1.0f - tx.w1[ox]) * scale[c];
      wb[size_t(c) * out + ox] = tx.w1[ox] * scale[c];
    }
  }
  auto horizontal = [&](int sy, float* h) {
    const uint8_t* r = src.data + size_t(sy) * src.stride;
    for (int c = 0; c < 3; ++c) {
      gatherRow(r + c, ia.data(), ib.data(), wa.data() + size_t(c) * out, wb.data() + size_t(c) * out, bias[c], out,
                h + size_t(c) * out);
    }
  };
  auto row = [&](int sy) -> const float* {
    for (int k = 0; k < 2; ++k)
      if (cached[k] == sy) return rows[k];
    // Replace the slot not holding the other row this output row needs.
    const int k = cached[0] == -1 ? 0 : cached[1] == -1 ? 1 : (cached[0] < cached[1] ? 0 : 1);
    horizontal(sy, rows[k]);
    cached[k] = sy;
    return rows[k];
  };
  for (int oy = 0; oy < out; ++oy) {
    const float* top = row(ty.i0[oy]);
    const float* bot = row(ty.i1[oy]);
    const float wy = ty.w1[oy];
    for (int c = 0; c < 3; ++c) blendRows(top + c * out, bot + c * out, wy, out, dst + c * plane + size_t(oy) * out);
  }
}

void resizeRgb(const RgbView& src, int outH, int outW, uint8_t* dst) {
  const Taps ty = taps(0, src.rows, outH, src.rows), tx = taps(0, src.cols, outW, src.cols);
  for (int oy = 0; oy < outH; ++oy) {
    const uint8_t* r0 = src.data + size_t(ty.i0[oy]) * src.stride;
    const uint8_t* r1 = src.data + size_t(ty.i1[oy]) * src.stride;
    const float wy = ty.w1[oy];
    uint8_t* d = dst + size_t(oy) * outW * 3;
    for (int ox = 0; ox < outW; ++ox) {
      const int a = tx.i0[ox] * 3, b = tx.i1[ox] * 3;
      const float wx = tx.w1[ox];
      for (int c = 0; c < 3; ++c) {
        const float top = r0[a + c] + wx * (float(r0[b + c]) - float(r0[a + c]));
        const float bot = r1[a + c] + wx * (float(r1[b + c]) - float(r1[a + c]));
        d[ox * 3 + c] = uint8_t(std::min(255.0f, std::max(0.0f, top + wy * (bot - top) + 0.5f)));
      }
    }
  }
}

}  // namespace stepscope
