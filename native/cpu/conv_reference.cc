// Conv variant `reference`: the test oracle. Every output element is gathered
// independently with double accumulation, in a fixed order, so the result is
// deterministic and as exact as fp32 inputs allow. Slow by design.
#include <cstdint>

#include "cpu/conv_kernel.h"

namespace stepscope {
namespace {

void forward(const ConvShape& sh, const ConvTensors& t) {
  const float *x = t.x, *w = t.w;
  float* y = t.y;
  const int P = sh.p(), Q = sh.q();
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < sh.n; ++n)
    for (int k = 0; k < sh.k; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double acc = 0;
          for (int c = 0; c < sh.c; ++c)
            for (int r = 0; r < sh.r; ++r) {
              int h = p * sh.stride - sh.pad + r;
              if (h < 0 || h >= sh.h) continue;
              for (int s = 0; s < sh.s; ++s) {
                int ww = q * sh.stride - sh.pad + s;
                if (ww < 0 || ww >= sh.w) continue;
                acc += double(x[((int64_t(n) * sh.c + c) * sh.h + h) * sh.w + ww]) *
                       double(w[((int64_t(k) * sh.c + c) * sh.r + r) * sh.s + s]);
              }
            }
          y[((int64_t(n) * sh.k + k) * P + p) * Q + q] = float(acc);
        }
}

void backwardData(const ConvShape& sh, const ConvTensors& t) {
  float* dx = t.x;
  const float *w = t.w, *dy = t.y;
  const int P = sh.p(), Q = sh.q();
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < sh.n; ++n)
    for (int c = 0; c < sh.c; ++c)
      for (int h = 0; h < sh.h; ++h)
        for (int ww = 0; ww < sh.w; ++ww) {
          double acc = 0;
          for (int k = 0; k < sh.k; ++k)
            for (int r = 0; r < sh.r; ++r) {
              int ph = h + sh.pad - r;
              if (ph < 0 || ph % sh.stride != 0 || ph / sh.stride >= P) continue;
              int p = ph / sh.stride;
              for (int s = 0; s < sh.s; ++s) {
                int qw = ww + sh.pad - s;
                if (qw < 0 || qw % sh.stride != 0 || qw / sh.stride >= Q) continue;
                int q = qw / sh.stride;
                acc += double(dy[((int64_t(n) * sh.k + k) * P + p) * Q + q]) *
                       double(w[((int64_t(k) * sh.c + c) * sh.r + r) * sh.s + s]);
              }
            }
          dx[((int64_t(n) * sh.c + c) * sh.h + h) * sh.w + ww] = float(acc);
        }
}

void backwardFilter(const ConvShape& sh, const ConvTensors& t) {
  const float *x = t.x, *dy = t.y;
  float* dw = t.w;
  const int P = sh.p(), Q = sh.q();
#pragma omp parallel for collapse(2) schedule(static)
  for (int k = 0; k < sh.k; ++k)
    for (int c = 0; c < sh.c; ++c)
      for (int r = 0; r < sh.r; ++r)
        for (int s = 0; s < sh.s; ++s) {
          double acc = 0;
          for (int n = 0; n < sh.n; ++n)
            for (int p = 0; p < P; ++p) {
              int h = p * sh.stride - sh.pad + r;
              if (h < 0 || h >= sh.h) continue;
              for (int q = 0; q < Q; ++q) {
                int ww = q * sh.stride - sh.pad + s;
                if (ww < 0 || ww >= sh.w) continue;
                acc += double(dy[((int64_t(n) * sh.k + k) * P + p) * Q + q]) *
                       double(x[((int64_t(n) * sh.c + c) * sh.h + h) * sh.w + ww]);
              }
            }
          dw[((int64_t(k) * sh.c + c) * sh.r + r) * sh.s + s] = float(acc);
        }
}

}  // namespace

std::unique_ptr<ConvKernel> makeReferenceConv(const ConvShape& shape, ConvPass pass, const std::string& layer) {
  return makeFunctionConv(shape, pass, "reference", layer, {forward, backwardData, backwardFilter});
}

}  // namespace stepscope
