#include "data/synth_image.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/sample_rng.h"

namespace stepscope {

namespace {

// Smooth value noise with cells of `cell` pixels, added to `out` times amp.
void addNoise(std::vector<float>& out, int h, int w, double cell, float amp, SampleRng& rng) {
  const int gh = int(h / cell) + 3, gw = int(w / cell) + 3;
  std::vector<float> grid(size_t(gh) * gw);
  for (float& g : grid) g = float(rng.uniform(-1.0, 1.0));
  std::vector<int> xi(w);
  std::vector<float> xf(w);
  for (int x = 0; x < w; ++x) {
    const double s = x / cell;
    xi[x] = int(s);
    const float t = float(s - xi[x]);
    xf[x] = t * t * (3 - 2 * t);
  }
  for (int y = 0; y < h; ++y) {
    const double s = y / cell;
    const int yi = int(s);
    float t = float(s - yi);
    t = t * t * (3 - 2 * t);
    const float* g0 = grid.data() + size_t(yi) * gw;
    const float* g1 = g0 + gw;
    float* o = out.data() + size_t(y) * w;
    for (int x = 0; x < w; ++x) {
      const int i = xi[x];
      const float a = g0[i] + xf[x] * (g0[i + 1] - g0[i]);
      const float b = g1[i] + xf[x] * (g1[i + 1] - g1[i]);
      o[x] += amp * (a + t * (b - a));
    }
  }
}

}  // namespace

RgbImage syntheticImage(uint64_t seed, uint64_t index, int label, int classes) {
  SampleRng rng(seed, 0x5e7a11ULL, index);
  int w = int(std::lround(500 * rng.uniform(0.8, 1.2))), h = int(std::lround(375 * rng.uniform(0.8, 1.2)));
  if (rng.uniform() < 0.2) std::swap(w, h);  // some portraits
  const size_t n = size_t(h) * w;
  std::vector<float> lum(n, 0.0f), chromaA(n, 0.0f), chromaB(n, 0.0f);
  // 1/f: amplitude proportional to the wavelength, from a third of the image down to 2 px.
  for (double cell = std::max(h, w) / 3.0; cell >= 2.0; cell /= 2.0) addNoise(lum, h, w, cell, float(0.35 * cell / 128.0 + 0.05), rng);
  for (double cell = std::max(h, w) / 2.0; cell >= 16.0; cell /= 2.0) {
    addNoise(chromaA, h, w, cell, float(0.25 * cell / 256.0), rng);
    addNoise(chromaB, h, w, cell, float(0.25 * cell / 256.0), rng);
  }
  // Objects: soft-edged ellipses of their own tone and texture.
  const int objects = 2 + int(rng.integer(0, 5));
  for (int k = 0; k < objects; ++k) {
    const double cy = rng.uniform(0, h), cx = rng.uniform(0, w);
    const double ry = rng.uniform(0.05, 0.35) * h, rx = rng.uniform(0.05, 0.35) * w, angle = rng.uniform(0, M_PI);
    const float tone = float(rng.uniform(-0.5, 0.5)), ca = float(rng.uniform(-0.3, 0.3)), cb = float(rng.uniform(-0.3, 0.3));
    const double c = std::cos(angle), s = std::sin(angle), soft = rng.uniform(0.02, 0.3);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const double dy = y - cy, dx = x - cx;
        const double u = (dx * c + dy * s) / rx, v = (-dx * s + dy * c) / ry;
        const double r = std::sqrt(u * u + v * v);
        if (r > 1 + soft) continue;
        const float m = r < 1 - soft ? 1.0f : float((1 + soft - r) / (2 * soft));
        const size_t i = size_t(y) * w + x;
        lum[i] += m * tone;
        chromaA[i] += m * ca;
        chromaB[i] += m * cb;
      }
    }
  }
  // Hard edges: half-planes shifted in brightness (horizons, walls).
  const int edges = int(rng.integer(1, 4));
  for (int k = 0; k < edges; ++k) {
    const double angle = rng.uniform(0, 2 * M_PI), c = std::cos(angle), s = std::sin(angle);
    const double d = rng.uniform(-0.3, 0.3) * (h + w) / 2;
    const float shift = float(rng.uniform(-0.25, 0.25));
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        if ((x - w / 2.0) * c + (y - h / 2.0) * s > d) lum[size_t(y) * w + x] += shift;
  }
  // Sensor grain: photographs are never smooth at the pixel level (and JPEG
  // sizes, hence decode cost, come out near ImageNet's ~110 KB).
  const float grain = float(rng.uniform(0.08, 0.16));
  for (size_t i = 0; i < n; ++i) lum[i] += grain * float(int(mix64(i ^ (index << 32)) & 1023) - 512) / 512.0f;
  // The class's palette: a base hue and brightness.
  const double hue = 2 * M_PI * (label + 0.5) / std::max(1, classes);
  const float baseA = float(0.25 * std::cos(hue)), baseB = float(0.25 * std::sin(hue)), baseL = float(rng.uniform(0.35, 0.6));
  RgbImage img;
  img.height = h;
  img.width = w;
  img.pixels.resize(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const float l = baseL + 0.5f * lum[i], a = baseA + chromaA[i], b = baseB + chromaB[i];
    // Opponent colour (luminance, red-green, yellow-blue) to RGB: channels share l.
    const float rgb[3] = {l + 0.6f * a + 0.2f * b, l - 0.4f * a + 0.2f * b, l - 0.1f * a - 0.8f * b};
    for (int ch = 0; ch < 3; ++ch) img.pixels[3 * i + ch] = uint8_t(std::lround(255 * std::min(1.0f, std::max(0.0f, rgb[ch]))));
  }
  return img;
}

}  // namespace stepscope
