// Runs the per-element arithmetic of the CUDA backend's non-convolution ops
// (cuda/op_index.h) on the host, arranged as the kernels arrange it (batch
// norm by bn_schedule.h's tiles and vectors, every element once; per output, per input, the cuBLAS calls emulated column-major),
// against the CPU backend's reference kernels (cpu/*.cc, `reference`
// variant) on fresh random data: batch norm forward and backward with and
// without the fused ReLU, max-pool forward and backward (the gather against
// the CPU's scatter) on several window shapes, average pooling, the NCHW and
// NHWC layouts of those (the NHWC data transposed from the reference's, the
// results transposed back), the weight transposes KCRS <-> KRSC, the bf16
// rounding of core/bf16.h against a reference (nearest, ties to even), softmax cross-entropy
// (and a bad label), SGD, the local communicator's average and the FC layer. Prints one JSON object; exit 1 if
// any error exceeds its tolerance. No GPU needed.
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "cpu/op_kernel.h"
#include "cuda/bn_schedule.h"
#include "cuda/fast_divider.h"
#include "cuda/op_index.h"
#include "cuda/sgd_spans.h"

using namespace stepscope;
using namespace stepscope::cudaops;

namespace {

std::vector<float> randomVector(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (auto& e : v) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    e = lo + (hi - lo) * float((seed >> 40) & 0xFFFFFF) / float(1 << 24);
  }
  return v;
}

// Max |a - b| / (1 + max |b|) over the values; NaN anywhere in a counts as infinite.
double relErr(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 1;
  for (float x : b) scale = std::max(scale, double(std::fabs(x)));
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (!std::isnan(a[i])) worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / scale);
  }
  return worst;
}

struct Result {
  std::string name;
  double err;
  double tol;
};
std::vector<Result> results;
void record(const std::string& name, double err, double tol = 1e-5) { results.push_back({name, err, tol}); }

std::vector<float*> ptrs(std::vector<std::vector<float>>& bufs) {
  std::vector<float*> p;
  for (auto& b : bufs) p.push_back(b.data());
  return p;
}

// The CPU reference kernel of an op on the given buffers (outputs poisoned first with NaN by the caller).
void cpuReference(const std::string& op, const std::map<std::string, double>& params, std::vector<std::vector<float>>& bufs) {
  OpParams p(params, op);
  std::unique_ptr<OpKernel> k;
  if (op.rfind("batchnorm", 0) == 0) k = makeBatchNorm(op, false, p, "check");
  else if (op.find("pool") != std::string::npos) k = makePool(op, false, p, "check");
  else if (op.rfind("fc-", 0) == 0) k = makeLinear(op, false, p, "check");
  else if (op == "softmax-xent") k = makeLoss(op, false, p, "check");
  else if (op == "allreduce-local") k = makeComm(op, false, p, "check");
  else k = makeSgd(op, false, p, "check");
  k->run(ptrs(bufs));
}

std::vector<float> poisoned(size_t n) { return std::vector<float>(n, NAN); }

// An [n, c, s] tensor moved from one layout to another (op_index.h's
// actIndex and actPos): NCHW data into the kernels' layout, and back.
std::vector<float> relayout(const std::vector<float>& v, long long c, long long s, bool fromNhwc, bool toNhwc) {
  std::vector<float> out(v.size());
  for (long long i = 0; i < (long long)v.size(); ++i) {
    const ActPos p = actPos(fromNhwc, i, c, s);
    out[actIndex(toNhwc, p.n, p.c, p.s, c, s)] = v[i];
  }
  return out;
}
std::vector<float> inLayout(const std::vector<float>& nchw, long long c, long long s, bool nhwc) { return relayout(nchw, c, s, false, nhwc); }
std::vector<float> toNchw(const std::vector<float>& v, long long c, long long s, bool nhwc) { return relayout(v, c, s, nhwc, false); }
const char* layoutName(bool nhwc) { return nhwc ? " nhwc" : ""; }

// ---- batch norm, replayed with ops_batchnorm.cu's schedule (bn_schedule.h).

// Calls f(tile, channel, k) for each element k the partials kernels sum, as their threads walk them.
template <typename F>
void forEachPartialElement(const bn::BnGeometry& g, F&& f) {
  for (int t = 0; t < g.tiles; ++t) {
    for (int ch = 0; ch < g.c; ++ch) {
      if (g.nhwc) {
        for (int ty = 0; ty < bn::kRows; ++ty) {
          for (long long r = bn::nhwcFirstRow(t, ty); r < g.m; r += bn::nhwcRowStride(g)) f(t, ch, r * g.c + ch);
        }
        continue;
      }
      for (int tid = 0; tid < bn::kThreads; ++tid) {
        for (long long i = bn::nchwFirst(g, t, tid); i < bn::nchwTileEnd(g, t); i += bn::nchwStride(g)) {
          const long long k = bn::nchwOffset(g, ch, i);
          for (int e = 0; e < (g.vec ? kVec : 1); ++e) f(t, ch, k + e);
        }
      }
    }
  }
}

// Calls f(e, channel) for each element e the apply kernels write, with the channel they find for it.
template <typename F>
void forEachAppliedElement(const bn::BnGeometry& g, F&& f) {
  const int width = g.vec ? kVec : 1;
  for (long long e = 0; e < g.total; e += width) {
    const int ch = bn::channelOf(g, e);
    for (int k = 0; k < width; ++k) f(e + k, ch + k * bn::vectorChannelStep(g));
  }
}

// Each element visited exactly once, and (apply) given its own channel: at
// ResNet-50's sizes too, where the data would be too big to run the formulas.
void checkBnCoverage(int n, int c, long long hw, bool nhwc, bool vec, bool narrow) {
  bn::BnGeometry g = bn::bnGeometry(n, c, hw, nhwc);
  g.vec = vec;
  g.narrow = narrow;  // false: the 64-bit path, checked on a small shape
  const std::string tag = "batchnorm schedule n" + std::to_string(n) + " c" + std::to_string(c) + " hw" + std::to_string(hw) +
                          layoutName(nhwc) + (vec ? " vec" : "") + (narrow ? "" : " wide");
  std::vector<uint8_t> seen(size_t(g.total), 0);
  long long wrongChannel = 0, misses = 0;
  forEachPartialElement(g, [&](int, int ch, long long k) {
    ++seen[size_t(k)];
    wrongChannel += actPos(nhwc, k, c, hw).c != ch;
  });
  for (uint8_t v : seen) misses += v != 1;
  std::fill(seen.begin(), seen.end(), 0);
  forEachAppliedElement(g, [&](long long e, int ch) {
    ++seen[size_t(e)];
    wrongChannel += actPos(nhwc, e, c, hw).c != ch;
  });
  for (uint8_t v : seen) misses += v != 1;
  record(tag + " elements not visited once or in another channel", double(misses + wrongChannel), 0);
}

void checkBatchNorm(int n, int c, int hw, bool relu, bool nhwc, bool vec) {
  const size_t N = size_t(n) * c * hw;
  const std::string tag = "batchnorm n" + std::to_string(n) + " c" + std::to_string(c) + " hw" + std::to_string(hw) + (relu ? " relu" : "") +
                          layoutName(nhwc) + (vec ? " vec" : "");
  bn::BnGeometry g = bn::bnGeometry(n, c, hw, nhwc);
  g.vec = vec;
  const auto xRef = randomVector(N, 11 + N, -2.f, 3.f), gamma = randomVector(c, 12, 0.5f, 1.5f), beta = randomVector(c, 13);
  const auto rm = randomVector(c, 14), rv = randomVector(c, 15, 0.5f, 2.f);
  const std::map<std::string, double> params{{"n", n}, {"c", c}, {"hw", hw}, {"relu", relu ? 1 : 0}};
  // CPU reference forward.
  std::vector<std::vector<float>> f{xRef, gamma, beta, rm, rv, poisoned(N), poisoned(c), poisoned(c)};
  cpuReference("batchnorm-fwd", params, f);
  const auto x = inLayout(xRef, c, hw, nhwc);  // what the kernels read; their results go back to NCHW
  // The partials per (tile, channel), the finalize's totals per channel, the apply.
  const size_t partials = size_t(g.tiles) * c;
  std::vector<double> p0(partials, 0), p1(partials, 0);
  forEachPartialElement(g, [&](int t, int ch, long long k) {
    p0[bn::partialAt(g, t, ch)] += x[k];
    p1[bn::partialAt(g, t, ch)] += double(x[k]) * x[k];
  });
  std::vector<float> y(N), mean(c), invstd(c), runMean = rm, runVar = rv, scale(c), shift(c);
  for (int ch = 0; ch < c; ++ch) {
    double s = 0, q = 0;
    for (int t = 0; t < g.tiles; ++t) s += p0[bn::partialAt(g, t, ch)], q += p1[bn::partialAt(g, t, ch)];
    const BnStats st = bnStatsFromSums(s, q, double(g.m), 1e-5);
    mean[ch] = float(st.mean), invstd[ch] = float(st.invstd);
    bnRunningUpdate(&runMean[ch], &runVar[ch], st, double(g.m), 0.1);
    scale[ch] = float(gamma[ch] * st.invstd), shift[ch] = float(beta[ch] - gamma[ch] * st.mean * st.invstd);
  }
  forEachAppliedElement(g, [&](long long e, int ch) { y[e] = bnForwardValue(x[e], scale[ch], shift[ch], relu); });
  record(tag + " fwd y", relErr(toNchw(y, c, hw, nhwc), f[5]));
  record(tag + " fwd save_mean", relErr(mean, f[6]));
  record(tag + " fwd save_invstd", relErr(invstd, f[7]));
  record(tag + " fwd running stats", std::max(relErr(runMean, f[3]), relErr(runVar, f[4])));
  // Backward from the forward's saved statistics and output.
  const auto dyRef = randomVector(N, 17 + N);
  std::vector<std::vector<float>> b{xRef, gamma, f[6], f[7], dyRef, poisoned(N), poisoned(c), poisoned(c)};
  if (relu) b.push_back(f[5]);
  cpuReference("batchnorm-bwd", params, b);
  const auto dy = inLayout(dyRef, c, hw, nhwc), yFwd = inLayout(f[5], c, hw, nhwc);
  const std::vector<float>&savedMean = f[6], &savedInvStd = f[7];
  std::fill(p0.begin(), p0.end(), 0), std::fill(p1.begin(), p1.end(), 0);
  forEachPartialElement(g, [&](int t, int ch, long long k) {
    const float gk = bnGrad(dy[k], relu ? yFwd[k] : 1.0f, relu);
    p0[bn::partialAt(g, t, ch)] += gk;
    p1[bn::partialAt(g, t, ch)] += double(gk) * (double(x[k]) - savedMean[ch]);
  });
  std::vector<float> dx(N), dgamma(c), dbeta(c);
  std::vector<BnBackwardCoefficients> co(c);
  for (int ch = 0; ch < c; ++ch) {
    double sg = 0, sgx = 0;
    for (int t = 0; t < g.tiles; ++t) sg += p0[bn::partialAt(g, t, ch)], sgx += p1[bn::partialAt(g, t, ch)];
    const double sumGXhat = sgx * savedInvStd[ch];
    dbeta[ch] = float(sg), dgamma[ch] = float(sumGXhat);
    co[ch] = bnBackwardCoefficients(gamma[ch], savedInvStd[ch], double(g.m), sg, sumGXhat);
  }
  forEachAppliedElement(g, [&](long long e, int ch) {
    dx[e] = co[ch].a * bnGrad(dy[e], relu ? yFwd[e] : 1.0f, relu) + co[ch].bias + co[ch].slope * (x[e] - savedMean[ch]);
  });
  record(tag + " bwd dx", relErr(toNchw(dx, c, hw, nhwc), b[5]), 1e-4);
  record(tag + " bwd dgamma", relErr(dgamma, b[6]), 1e-4);
  record(tag + " bwd dbeta", relErr(dbeta, b[7]), 1e-4);
}

// FastDivider against '/' and '%': every divisor up to 4096 and the
// ResNet-50 dimensions, edge dividends (0, around multiples, 2^31 - 1) and random ones.
void checkFastDivider() {
  long long wrong = 0;
  std::vector<uint32_t> divisors;
  for (uint32_t d = 1; d <= 4096; ++d) divisors.push_back(d);
  for (uint32_t d : {12544u, 3136u, 784u, 196u, 49u, 2048u, 1000u, 65535u, 65536u, 65537u, 1u << 28, (1u << 31) - 1, 1u << 31}) divisors.push_back(d);
  uint64_t seed = 99;
  for (uint32_t d : divisors) {
    const cudaops::FastDivider div(d);
    auto check = [&](uint32_t v) {
      if (v >= (1u << 31)) return;
      wrong += div.div(v) != v / d || div.mod(v) != v % d;
    };
    for (uint32_t v : {0u, 1u, d - 1, d, d + 1, 2 * d - 1, (1u << 31) - 1, (1u << 31) - 1 - ((1u << 31) - 1) % d, (1u << 31) - 2 - ((1u << 31) - 1) % d}) check(v);
    for (int r = 0; r < 64; ++r) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      check(uint32_t(seed >> 33));  // below 2^31
    }
  }
  record("fast divider: quotients or remainders that differ from / and %", double(wrong), 0);
}

void checkMaxPool(int n, int c, int h, int w, int k, int stride, int pad, bool nhwc) {
  PoolDims d{h, w, k, stride, pad, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1, nhwc ? c : 1};
  const std::string tag = "maxpool " + std::to_string(h) + "x" + std::to_string(w) + " k" + std::to_string(k) + " s" + std::to_string(stride) + " p" + std::to_string(pad) + layoutName(nhwc);
  const long long planes = (long long)n * c, in = (long long)h * w, out = (long long)d.p * d.q;
  const std::map<std::string, double> params{{"n", n}, {"c", c}, {"h", h}, {"w", w}, {"k", k}, {"stride", stride}, {"pad", pad}};
  const auto xRef = randomVector(size_t(planes * in), 21 + h * w);
  std::vector<std::vector<float>> f{xRef, poisoned(size_t(planes * out)), poisoned(size_t(planes * out))};
  cpuReference("maxpool-fwd", params, f);
  // As ops_pool.cu: outputs in memory order, each reading its plane with the layout's step.
  const auto x = inLayout(xRef, c, in, nhwc);
  std::vector<float> y(size_t(planes * out)), arg(size_t(planes * out));
  for (long long i = 0; i < planes * out; ++i) {
    const ActPos o = actPos(nhwc, i, c, out);
    maxpoolForwardAt(d, x.data() + actIndex(nhwc, o.n, o.c, 0, c, in), int(o.s), &y[i], &arg[i]);
  }
  record(tag + " fwd y", relErr(toNchw(y, c, out, nhwc), f[1]), 0);
  record(tag + " fwd argmax", relErr(toNchw(arg, c, out, nhwc), f[2]), 0);
  const auto dyRef = randomVector(size_t(planes * out), 23 + h * w);
  std::vector<std::vector<float>> b{dyRef, f[2], poisoned(size_t(planes * in))};
  cpuReference("maxpool-bwd", params, b);
  const auto dy = inLayout(dyRef, c, out, nhwc), argL = inLayout(f[2], c, out, nhwc);
  std::vector<float> dx(size_t(planes * in));
  for (long long i = 0; i < planes * in; ++i) {
    const ActPos p = actPos(nhwc, i, c, in);
    const long long origin = actIndex(nhwc, p.n, p.c, 0, c, out);
    dx[i] = maxpoolBackwardAt(d, dy.data() + origin, argL.data() + origin, int(p.s));
  }
  record(tag + " bwd dx (gather against scatter)", relErr(toNchw(dx, c, in, nhwc), b[2]), 1e-6);
}

void checkAvgPool(int n, int c, int hw, bool nhwc) {
  const std::string tag = "avgpool n" + std::to_string(n) + " c" + std::to_string(c) + " hw" + std::to_string(hw) + layoutName(nhwc);
  const long long planes = (long long)n * c;
  const std::map<std::string, double> params{{"n", n}, {"c", c}, {"hw", hw}};
  const auto xRef = randomVector(size_t(planes * hw), 41 + hw);
  std::vector<std::vector<float>> f{xRef, poisoned(size_t(planes))};
  cpuReference("avgpool-fwd", params, f);
  const auto x = inLayout(xRef, c, hw, nhwc);
  std::vector<float> y(static_cast<size_t>(planes));
  for (long long plane = 0; plane < planes; ++plane) {  // as avgpoolForward: a plane's values by actIndex, summed in double
    double s = 0;
    for (long long i = 0; i < hw; ++i) s += x[actIndex(nhwc, plane / c, plane % c, i, c, hw)];
    y[plane] = float(s / double(hw));
  }
  record(tag + " fwd y", relErr(y, f[1]), 1e-6);
  const auto dy = randomVector(size_t(planes), 43 + hw);
  std::vector<std::vector<float>> b{dy, poisoned(size_t(planes * hw))};
  cpuReference("avgpool-bwd", params, b);
  std::vector<float> dx(size_t(planes * hw));
  for (long long i = 0; i < planes * hw; ++i) {
    const ActPos p = actPos(nhwc, i, c, hw);
    dx[i] = float(double(dy[p.n * c + p.c]) / double(hw));
  }
  record(tag + " bwd dx", relErr(toNchw(dx, c, hw, nhwc), b[1]), 1e-6);
}

// The weights' transposes around cuDNN's NHWC convolutions (ops_layout.cu):
// KCRS -> KRSC is NCHW -> NHWC of [k, c, rs]; KRSC -> KCRS reads by krscIndex.
void checkWeightTransposes(int k, int c, int rs) {
  const auto w = randomVector(size_t(k) * c * rs, 51);
  const auto krsc = inLayout(w, c, rs, true);
  double err = 0;
  for (long long kk = 0; kk < k; ++kk)
    for (long long cc = 0; cc < c; ++cc)
      for (long long r = 0; r < rs; ++r) err = std::max(err, std::fabs(double(krsc[krscIndex(kk, cc, r, c, rs)]) - w[(kk * c + cc) * rs + r]));
  std::vector<float> back(w.size());
  for (long long i = 0; i < (long long)w.size(); ++i) {
    const ActPos p = actPos(false, i, c, rs);
    back[i] = krsc[krscIndex(p.n, p.c, p.s, c, rs)];
  }
  record("weights KCRS -> KRSC k" + std::to_string(k) + " c" + std::to_string(c) + " rs" + std::to_string(rs), err, 0);
  record("weights KRSC -> KCRS round trip", relErr(back, w), 0);
}

// bf16 rounding (core/bf16.h) against the definition: of the two bf16 values
// around f, the nearer; on a tie the one with an even last bit; NaN stays NaN.
void checkBf16Rounding() {
  auto reference = [](float f) -> float {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::isnan(f)) return NAN;
    if (std::isinf(f)) return f;
    const uint32_t lowBits = u & 0xFFFF0000u, highBits = lowBits + 0x10000u;  // magnitudes below and above (the sign stays)
    float lo, hi;
    std::memcpy(&lo, &lowBits, 4);
    std::memcpy(&hi, &highBits, 4);
    // Above the largest bf16 the upper neighbour is infinity, which IEEE rounding places at 2^128.
    const double hiValue = std::isinf(hi) ? std::copysign(std::ldexp(1.0, 128), double(f)) : double(hi);
    const double dl = std::fabs(double(f) - lo), dh = std::fabs(hiValue - f);
    if (dl < dh || (dl == dh && ((lowBits >> 16) & 1u) == 0)) return lo;
    return hi;
  };
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -1.0f, 1.00390625f /* 1 + 2^-8: a tie */, 1.01171875f /* 1 + 3 * 2^-8: a tie, odd */,
                               1.0f + 1.0f / 512, 3.4028235e38f, -3.4028235e38f, 1e-40f, -1e-40f, INFINITY, -INFINITY, NAN};
  const auto random = randomVector(100000, 61, -1.0f, 1.0f);
  for (size_t i = 0; i < random.size(); ++i) values.push_back(random[i] * std::pow(2.0f, float(int(i % 200) - 100)));
  double mismatches = 0, worst = 0;
  for (float f : values) {
    const float got = fromBf16(toBf16(f)), want = reference(f);
    const bool same = (std::isnan(got) && std::isnan(want)) || std::memcmp(&got, &want, 4) == 0;
    if (!same) mismatches += 1;
    if (std::isfinite(f) && std::isfinite(got) && f != 0.0f && std::fabs(f) > 1e-37f) worst = std::max(worst, std::fabs(double(got) - f) / std::fabs(f));
  }
  record("bf16 rounding: nearest, ties to even (" + std::to_string(values.size()) + " values, mismatches)", mismatches, 0);
  record("bf16 rounding: relative error <= 2^-8 (half a unit of the 8-bit significand)", worst > std::ldexp(1.0, -8) ? worst : 0, 0);
}

// One row as the loss kernel's warp computes it (op_index.h's lane split), the lanes run in turn.
double softmaxXentRow(const float* row, int classes, float label, int n, float* grad) {
  float mx = -INFINITY;
  for (int lane = 0; lane < kLossLanes; ++lane) mx = std::max(mx, rowMaxPart(row, classes, lane));
  double sum = 0;
  for (int lane = 0; lane < kLossLanes; ++lane) sum += rowExpSumPart(row, classes, lane, mx);
  const double logSum = std::log(sum) + mx;
  for (int lane = 0; lane < kLossLanes; ++lane) rowGradPart(row, classes, lane, logSum, label, n, grad);
  return rowLossTerm(row, classes, logSum, label);
}

void checkSoftmax(int n, int classes) {
  const std::string tag = "softmax-xent n" + std::to_string(n) + " classes" + std::to_string(classes);
  const auto logits = randomVector(size_t(n) * classes, 31, -4.f, 4.f);
  std::vector<float> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = float((i * 7 + 3) % classes);
  std::vector<std::vector<float>> f{logits, labels, poisoned(1), poisoned(size_t(n) * classes)};
  cpuReference("softmax-xent", {{"n", n}, {"classes", classes}}, f);
  std::vector<float> grad(size_t(n) * classes);
  double total = 0;
  for (int i = 0; i < n; ++i) total += softmaxXentRow(logits.data() + size_t(i) * classes, classes, labels[i], n, grad.data() + size_t(i) * classes);
  record(tag + " loss", relErr({float(total / n)}, f[2]), 1e-6);
  record(tag + " dlogits", relErr(grad, f[3]), 1e-6);
  // A label outside 0..classes-1: the CPU throws; the device writes NaN (the loss shows it).
  std::vector<float> row(classes);
  const double bad = softmaxXentRow(logits.data(), classes, float(classes), n, row.data());
  record(tag + " bad label gives NaN", std::isnan(bad) && std::isnan(row[0]) ? 0.0 : INFINITY, 0);
  // ... and the loss kernel leaves the first bad row for the host, which
  // reports it with the CPU's own message (label_check.h).
  record(tag + " good labels leave no bad-label word", firstBadLabelWord(labels.data(), n, classes) == -1 ? 0.0 : INFINITY, 0);
  for (const float wrong : {float(classes), -1.0f, 0.5f, NAN, 1e30f}) {
    std::vector<float> badLabels = labels;
    badLabels[n - 1] = wrong;
    if (n > 2) badLabels[1] = wrong;  // the first bad row is reported
    const long long word = firstBadLabelWord(badLabels.data(), n, classes);
    std::string cpuMessage;
    try {
      std::vector<std::vector<float>> g{logits, badLabels, poisoned(1), poisoned(size_t(n) * classes)};
      cpuReference("softmax-xent", {{"n", n}, {"classes", classes}}, g);
    } catch (const std::exception& e) {
      cpuMessage = e.what();
    }
    const bool same = word != -1 && !cpuMessage.empty() && badLabelMessage(word, classes) == cpuMessage;
    if (!same) std::fprintf(stderr, "label %g: device '%s', CPU '%s'\n", double(wrong), word == -1 ? "(none)" : badLabelMessage(word, classes).c_str(), cpuMessage.c_str());
    char name[32];
    std::snprintf(name, sizeof name, "%g", double(wrong));
    record(tag + " bad label " + name + " reported as the CPU does", same ? 0.0 : INFINITY, 0);
  }
}

void checkSgd(int size) {
  auto param = randomVector(size, 41), buf = randomVector(size, 42);
  const auto grad = randomVector(size, 43);
  std::vector<std::vector<float>> f{param, grad, buf};
  cpuReference("sgd", {{"size", size}, {"lr", 0.1}, {"momentum", 0.9}, {"weightDecay", 1e-4}}, f);
  for (long long i = 0; i < size; ++i) sgdAt(param.data(), grad.data(), buf.data(), i, 0.1f, 0.9f, 1e-4f);
  record("sgd param", relErr(param, f[0]), 1e-6);
  record("sgd momentum buffer", relErr(buf, f[2]), 1e-6);
}

// The group SGD's spans (sgd_spans.h), each element updated by its span's
// block, against the CPU's group kernel: every tensor's every element once.
void checkSgdGroup(const std::vector<int64_t>& sizes) {
  std::map<std::string, double> params{{"tensors", double(sizes.size())}, {"lr", 0.1}, {"momentum", 0.9}, {"weightDecay", 1e-4}};
  std::vector<std::vector<float>> f, mine;
  for (size_t t = 0; t < sizes.size(); ++t) {
    params["size" + std::to_string(t)] = double(sizes[t]);
    for (int k = 0; k < 3; ++k) f.push_back(randomVector(size_t(sizes[t]), 71 + 3 * t + k));
  }
  mine = f;
  cpuReference("sgd", params, f);
  std::vector<std::vector<int>> visits(sizes.size());
  for (size_t t = 0; t < sizes.size(); ++t) visits[t].assign(size_t(sizes[t]), 0);
  for (const SgdSpan& s : sgdSpans(sizes)) {
    float *param = mine[3 * s.tensor].data(), *grad = mine[3 * s.tensor + 1].data(), *buf = mine[3 * s.tensor + 2].data();
    for (int tid = 0; tid < 256; ++tid) {
      for (long long i = s.begin + tid; i < s.end; i += 256) sgdAt(param, grad, buf, i, 0.1f, 0.9f, 1e-4f), ++visits[s.tensor][size_t(i)];
    }
  }
  double err = 0, wrongVisits = 0;
  for (size_t t = 0; t < sizes.size(); ++t) {
    err = std::max({err, relErr(mine[3 * t], f[3 * t]), relErr(mine[3 * t + 2], f[3 * t + 2])});
    for (int v : visits[t]) wrongVisits += v != 1;
  }
  record("sgd group of " + std::to_string(sizes.size()) + " tensors", err, 1e-6);
  record("sgd group of " + std::to_string(sizes.size()) + " tensors: elements not updated once", wrongVisits, 0);
}

void checkAllreduceLocal(int size, int workers) {
  const auto grad = randomVector(size, 61);
  std::vector<std::vector<float>> f{grad, poisoned(size_t(size) * (workers - 1))};
  cpuReference("allreduce-local", {{"size", size}, {"workers", workers}}, f);
  // As ops_comm.cu: the replicas are copies of the gradient, then the average.
  std::vector<float> replicas(size_t(size) * (workers - 1)), out(size);
  for (int r = 0; r < workers - 1; ++r) std::copy(grad.begin(), grad.end(), replicas.begin() + size_t(r) * size);
  for (long long i = 0; i < size; ++i) out[i] = allreduceLocalAt(grad.data(), replicas.data(), size, workers, i);
  record("allreduce-local W" + std::to_string(workers) + " grad", relErr(out, f[0]), 1e-6);
  record("allreduce-local W" + std::to_string(workers) + " replicas", relErr(replicas, f[1]), 0);
}

// C = op(A) op(B), column-major, as cublasSgemm with alpha 1, beta 0.
void sgemmColumnMajor(const FcGemm& g, const float* a, const float* b, float* c) {
  for (int j = 0; j < g.n; ++j)
    for (int i = 0; i < g.m; ++i) {
      double acc = 0;
      for (int l = 0; l < g.k; ++l) {
        const float av = g.transA ? a[l + size_t(i) * g.lda] : a[i + size_t(l) * g.lda];
        const float bv = g.transB ? b[j + size_t(l) * g.ldb] : b[l + size_t(j) * g.ldb];
        acc += double(av) * bv;
      }
      c[i + size_t(j) * g.ldc] = float(acc);
    }
}

void checkLinear(int n, int in, int out) {
  const std::string tag = "fc n" + std::to_string(n) + " in" + std::to_string(in) + " out" + std::to_string(out);
  const auto x = randomVector(size_t(n) * in, 51), w = randomVector(size_t(out) * in, 52), bias = randomVector(out, 53);
  const std::map<std::string, double> params{{"n", n}, {"in", in}, {"out", out}};
  std::vector<std::vector<float>> f{x, w, bias, poisoned(size_t(n) * out)};
  cpuReference("fc-fwd", params, f);
  std::vector<float> y(size_t(n) * out);
  sgemmColumnMajor(fcForwardGemm(n, in, out), w.data(), x.data(), y.data());
  for (size_t i = 0; i < y.size(); ++i) y[i] += bias[i % out];  // addBias
  record(tag + " fwd y", relErr(y, f[3]), 1e-6);
  const auto dy = randomVector(size_t(n) * out, 54);
  std::vector<std::vector<float>> b{x, w, dy, poisoned(size_t(n) * in), poisoned(size_t(out) * in), poisoned(out)};
  cpuReference("fc-bwd", params, b);
  std::vector<float> dx(size_t(n) * in), dw(size_t(out) * in), db(out);
  sgemmColumnMajor(fcBackwardDataGemm(n, in, out), w.data(), dy.data(), dx.data());
  sgemmColumnMajor(fcBackwardFilterGemm(n, in, out), x.data(), dy.data(), dw.data());
  for (int j = 0; j < out; ++j) {  // biasGrad
    double s = 0;
    for (int i = 0; i < n; ++i) s += dy[size_t(i) * out + j];
    db[j] = float(s);
  }
  record(tag + " bwd dx", relErr(dx, b[3]), 1e-6);
  record(tag + " bwd dw", relErr(dw, b[4]), 1e-6);
  record(tag + " bwd db", relErr(db, b[5]), 1e-6);
}

}  // namespace

int main() {
  checkFastDivider();
  for (bool nhwc : {false, true}) {
    for (bool relu : {false, true}) {
      checkBatchNorm(2, 3, 49, relu, nhwc, false);
      checkBatchNorm(3, 16, 9, relu, nhwc, false);
      checkBatchNorm(2, 8, 36, relu, nhwc, true);          // vectors: hw and c multiples of 4
      checkBatchNorm(3, 12, 2000, relu, nhwc, true);      // several tiles (NCHW: 4096 values each; NHWC: 128 rows)
    }
    // Coverage at ResNet-50's sizes (batch 32: the largest and smallest planes) and odd ones, each access width.
    for (bool vec : {false, true}) {
      checkBnCoverage(32, 64, 12544, nhwc, vec, true);
      checkBnCoverage(32, 2048, 49, nhwc, vec && nhwc, true);  // hw 49: NCHW reads one value at a time
      checkBnCoverage(4, 48, 300, nhwc, vec, true);
      checkBnCoverage(3, 12, 2000, nhwc, vec, false);
    }
    checkBnCoverage(2, 40, 40000, nhwc, false, true);  // NHWC's tile cap (m > 512 tiles x 128 rows)
    checkBnCoverage(5, 3, 7, nhwc, false, true);
    checkMaxPool(2, 3, 9, 9, 3, 2, 1, nhwc);   // ResNet-50's pool1 shape class (odd input)
    checkMaxPool(2, 3, 8, 10, 3, 2, 1, nhwc);  // even input
    checkMaxPool(1, 2, 7, 7, 2, 2, 0, nhwc);   // non-overlapping windows
    checkMaxPool(1, 2, 6, 5, 3, 1, 1, nhwc);   // stride 1: every input in up to 9 windows
    checkAvgPool(2, 5, 49, nhwc);
  }
  checkWeightTransposes(8, 3, 49);
  checkBf16Rounding();
  checkWeightTransposes(4, 16, 9);
  checkSoftmax(5, 10);
  checkSoftmax(3, 1000);
  checkSgd(1000);
  checkSgdGroup({1, 140000, 7, 65536, 65537});
  checkAllreduceLocal(1000, 3);
  checkAllreduceLocal(17, 16);
  checkLinear(3, 7, 5);
  checkLinear(4, 64, 10);
  bool ok = true;
  std::printf("{\"checks\": [\n");
  for (size_t i = 0; i < results.size(); ++i) {
    const bool pass = results[i].err <= results[i].tol;
    ok = ok && pass;
    std::printf("  {\"name\": \"%s\", \"error\": %.3g, \"tolerance\": %.3g, \"ok\": %s}%s\n", results[i].name.c_str(),
                std::isinf(results[i].err) ? 1e308 : results[i].err, results[i].tol, pass ? "true" : "false",
                i + 1 < results.size() ? "," : "");
  }
  std::printf("], \"ok\": %s}\n", ok ? "true" : "false");
  return ok ? 0 : 1;
}
