// Conv variant `direct`: loops straight over the convolution sum, ordered so
// that the innermost loop runs along an image row (contiguous at stride 1)
// and vectorizes. No workspace, no data reorganisation; threads split the
// independent output planes.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/conv_kernel.h"

namespace stepscope {
namespace {

void forward(const ConvShape& sh, const ConvTensors& t) {
  const float *x = t.x, *w = t.w;
  float* y = t.y;
  const int P = sh.p(), Q = sh.q(), st = sh.stride;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < sh.n; ++n)
    for (int k = 0; k < sh.k; ++k) {
      float* yPlane = y + (int64_t(n) * sh.k + k) * P * Q;
      std::memset(yPlane, 0, sizeof(float) * P * Q);
      for (int c = 0; c < sh.c; ++c) {
        const float* xPlane = x + (int64_t(n) * sh.c + c) * sh.h * sh.w;
        for (int r = 0; r < sh.r; ++r)
          for (int s = 0; s < sh.s; ++s) {
            const float wv = w[((int64_t(k) * sh.c + c) * sh.r + r) * sh.s + s];
            int q0, q1;
            validOutputColumns(sh, s, &q0, &q1);
            for (int p = 0; p < P; ++p) {
              int h = p * st - sh.pad + r;
              if (h < 0 || h >= sh.h) continue;
              float* yRow = yPlane + p * Q;
              const float* xRow = xPlane + h * sh.w - sh.pad + s;
#pragma omp simd
              for (int q = q0; q < q1; ++q) yRow[q] += wv * xRow[q * st];
            }
          }
      }
    }
}

void backwardData(const ConvShape& sh, const ConvTensors& t) {
  float* dx = t.x;
  const float *w = t.w, *dy = t.y;
  const int P = sh.p(), Q = sh.q(), st = sh.stride;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < sh.n; ++n)
    for (int c = 0; c < sh.c; ++c) {
      float* dxPlane = dx + (int64_t(n) * sh.c + c) * sh.h * sh.w;
      std::memset(dxPlane, 0, sizeof(float) * sh.h * sh.w);
      for (int k = 0; k < sh.k; ++k) {
        const float* dyPlane = dy + (int64_t(n) * sh.k + k) * P * Q;
        for (int r = 0; r < sh.r; ++r)
          for (int s = 0; s < sh.s; ++s) {
            const float wv = w[((int64_t(k) * sh.c + c) * sh.r + r) * sh.s + s];
            int q0, q1;
            validOutputColumns(sh, s, &q0, &q1);
            for (int p = 0; p < P; ++p) {
              int h = p * st - sh.pad + r;
              if (h < 0 || h >= sh.h) continue;
              float* dxRow = dxPlane + h * sh.w - sh.pad + s;
              const float* dyRow = dyPlane + p * Q;
#pragma omp simd
              for (int q = q0; q < q1; ++q) dxRow[q * st] += wv * dyRow[q];
            }
          }
      }
    }
}

void backwardFilter(const ConvShape& sh, const ConvTensors& t) {
  const float *x = t.x, *dy = t.y;
  float* dw = t.w;
  const int P = sh.p(), Q = sh.q(), st = sh.stride;
#pragma omp parallel for collapse(2) schedule(static)
  for (int k = 0; k < sh.k; ++k)
    for (int c = 0; c < sh.c; ++c)
      for (int r = 0; r < sh.r; ++r)
        for (int s = 0; s < sh.s; ++s) {
          int q0, q1;
          validOutputColumns(sh, s, &q0, &q1);
          double total = 0;  // float partials per row, summed in double across rows
          for (int n = 0; n < sh.n; ++n) {
            const float* xPlane = x + (int64_t(n) * sh.c + c) * sh.h * sh.w;
            const float* dyPlane = dy + (int64_t(n) * sh.k + k) * P * Q;
            for (int p = 0; p < P; ++p) {
              int h = p * st - sh.pad + r;
              if (h < 0 || h >= sh.h) continue;
              const float* xRow = xPlane + h * sh.w - sh.pad + s;
              const float* dyRow = dyPlane + p * Q;
              float acc = 0;
#pragma omp simd reduction(+ : acc)
              for (int q = q0; q < q1; ++q) acc += dyRow[q] * xRow[q * st];
              total += acc;
            }
          }
          dw[((int64_t(k) * sh.c + c) * sh.r + r) * sh.s + s] = float(total);
        }
}

}  // namespace

std::unique_ptr<ConvKernel> makeDirectConv(const ConvShape& shape, ConvPass pass, const std::string& layer) {
  return makeFunctionConv(shape, pass, "direct", layer, {forward, backwardData, backwardFilter});
}

}  // namespace stepscope
