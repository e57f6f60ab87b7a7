// Runs the index arithmetic of our CUDA conv kernels (cuda/conv_index.h) on
// the host, against a double-precision reference written independently
// (scatter loops), for every pass on small shapes of each ResNet-50 shape
// class plus odd ones: direct, im2col + the exact cuBLAS calls of
// im2col-cublas (emulated column-major GEMMs), the implicit GEMM's gathers,
// scatters and split-K ranges, and its block schedule (cuda/igemm_tile.h:
// every thread's gathers into poisoned shared-memory tiles, the stages of the
// pipelined kernel, each warp's fragments, the epilogue), replayed block by
// block for the plain, pipelined, along-m (its tap table) and bf16 (its
// tiles' strides) kernels; the WMMA instructions, copies and barriers
// themselves need a device.
// Prints one JSON object; exit 1 if any error exceeds 1e-5. No GPU needed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/conv_index.h"
#include "cuda/igemm_tile.h"

using namespace stepscope::cudaconv;

namespace {

struct Tensors {
  std::vector<float> x, w, y;
};

int outSize(int size, int k, int stride, int pad) { return (size + 2 * pad - k) / stride + 1; }

std::vector<float> randomVector(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (auto& e : v) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    e = float((seed >> 40) & 0xFFFFFF) / float(1 << 23) - 1.0f;  // [-1, 1)
  }
  return v;
}

size_t xLen(const Dims& d) { return size_t(d.n) * d.c * d.h * d.w; }
size_t wLen(const Dims& d) { return size_t(d.k) * d.c * d.r * d.s; }
size_t yLen(const Dims& d) { return size_t(d.n) * d.k * d.p * d.q; }

// The reference: every (n, k, p, q, c, r, s) term once, scattered, in double.
void reference(const Dims& d, int pass, const Tensors& t, std::vector<double>& out) {
  out.assign(pass == 0 ? yLen(d) : pass == 1 ? xLen(d) : wLen(d), 0.0);
  for (int n = 0; n < d.n; ++n)
    for (int k = 0; k < d.k; ++k)
      for (int p = 0; p < d.p; ++p)
        for (int q = 0; q < d.q; ++q)
          for (int c = 0; c < d.c; ++c)
            for (int r = 0; r < d.r; ++r)
              for (int s = 0; s < d.s; ++s) {
                const int h = p * d.stride - d.pad + r, ww = q * d.stride - d.pad + s;
                if (h < 0 || h >= d.h || ww < 0 || ww >= d.w) continue;
                const size_t xi = ((size_t(n) * d.c + c) * d.h + h) * d.w + ww;
                const size_t wi = ((size_t(k) * d.c + c) * d.r + r) * d.s + s;
                const size_t yi = ((size_t(n) * d.k + k) * d.p + p) * d.q + q;
                if (pass == 0) out[yi] += double(t.x[xi]) * t.w[wi];
                if (pass == 1) out[xi] += double(t.y[yi]) * t.w[wi];
                if (pass == 2) out[wi] += double(t.y[yi]) * t.x[xi];
              }
}

double relErr(const std::vector<float>& out, const std::vector<double>& ref) {
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    maxDiff = std::fmax(maxDiff, std::fabs(out[i] - ref[i]));
    maxRef = std::fmax(maxRef, std::fabs(ref[i]));
  }
  return maxRef == 0 ? maxDiff : maxDiff / maxRef;
}

std::vector<float>& output(Tensors& t, int pass) { return pass == 0 ? t.y : pass == 1 ? t.x : t.w; }

void runDirect(const Dims& d, int pass, Tensors& t) {
  auto& out = output(t, pass);
  for (size_t i = 0; i < out.size(); ++i) {
    if (pass == 0) out[i] = directForwardAt(d, t.x.data(), t.w.data(), (long long)i);
    if (pass == 1) out[i] = directBackwardDataAt(d, t.w.data(), t.y.data(), (long long)i);
    if (pass == 2) {
      float acc = 0;
      for (long long term = 0; term < (long long)d.n * d.p * d.q; ++term) acc += directBackwardFilterTerm(d, t.x.data(), t.y.data(), (long long)i, term);
      out[i] = acc;
    }
  }
}

// cuBLAS semantics, column-major: C = op(A) op(B) + beta C.
void gemm(bool ta, bool tb, int m, int n, int k, const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double acc = 0;
      for (int l = 0; l < k; ++l) {
        const float a = ta ? A[l + size_t(i) * lda] : A[i + size_t(l) * lda];
        const float b = tb ? B[j + size_t(l) * ldb] : B[l + size_t(j) * ldb];
        acc += double(a) * b;
      }
      C[i + size_t(j) * ldc] = float(acc + (beta == 0 ? 0.0 : double(beta) * C[i + size_t(j) * ldc]));
    }
}

void runIm2col(const Dims& d, int pass, Tensors& t) {
  std::vector<float> col(size_t(d.n) * d.c * d.r * d.s * d.p * d.q);
  if (pass != 1)
    for (size_t i = 0; i < col.size(); ++i) col[i] = im2colAt(d, t.x.data(), (long long)i);
  const GemmCall g = im2colGemm(pass, d);
  auto ptr = [&](Operand o) { return o == Operand::X ? t.x.data() : o == Operand::W ? t.w.data() : o == Operand::Y ? t.y.data() : col.data(); };
  for (int n = 0; n < g.batch; ++n) {
    if (g.perImageAccumulate) {
      gemm(g.transA, g.transB, g.m, g.n, g.k, ptr(g.a) + n * g.strideA, g.lda, ptr(g.b) + n * g.strideB, g.ldb, n == 0 ? 0.f : 1.f, ptr(g.c), g.ldc);
    } else {
      gemm(g.transA, g.transB, g.m, g.n, g.k, ptr(g.a) + n * g.strideA, g.lda, ptr(g.b) + n * g.strideB, g.ldb, 0.f, ptr(g.c) + n * g.strideC, g.ldc);
    }
  }
  if (pass == 1)
    for (size_t i = 0; i < t.x.size(); ++i) t.x[i] = col2imAt(d, col.data(), (long long)i);
}

// As the kernel does it: `splits` chunks of k (multiples of 16), each added into a zeroed output.
template <typename Problem>
void runGemmProblem(const Problem& prob, int splits) {
  for (int m = 0; m < prob.M(); ++m)
    for (int n = 0; n < prob.N(); ++n) prob.out()[prob.outIndex(m, n)] = splits > 1 ? 0.f : NAN;
  for (int z = 0; z < splits; ++z) {
    int begin, end;
    splitRange(prob.K(), splits, 16, z, &begin, &end);
    for (int m = 0; m < prob.M(); ++m)
      for (int n = 0; n < prob.N(); ++n) {
        double acc = 0;
        // The kernel's own split of the gathers: row and column once, kk per step.
        const auto row = prob.row(m);
        const auto col = prob.col(n);
        for (int k = begin; k < end; ++k) acc += double(gatherA(prob, row, prob.kA(k))) * gatherB(prob, prob.kB(k), col);
        float& o = prob.out()[prob.outIndex(m, n)];
        o = splits > 1 ? o + float(acc) : float(acc);
      }
  }
}

// The along-m kernel's gathers for A, element by element: the row's taps
// once, kk's from the layer's table (problems with taps: fwd, bwd-data).
template <typename Problem>
void runTapProblem(const Problem& prob) {
  std::vector<Tap> taps(size_t(prob.K()));
  fillTapTable(prob, taps.data());
  for (int m = 0; m < prob.M(); ++m) {
    const TapRow row = prob.tapRow(m);
    for (int n = 0; n < prob.N(); ++n) {
      const auto col = prob.col(n);
      double acc = 0;
      for (int k = 0; k < prob.K(); ++k) {
        const float* a = prob.aTapAt(row, taps[k]);
        acc += double(a ? *a : 0.f) * gatherB(prob, prob.kB(k), col);
      }
      prob.out()[prob.outIndex(m, n)] = float(acc);
    }
  }
}

// The kernel's blocks replayed with igemm_tile.h's schedule: each thread's
// gathers land in shared-memory tiles poisoned with NaN before every step
// (a slot nobody writes poisons the result), each warp multiplies its
// fragments from where the kernel loads them, the tile is staged as the
// epilogue stages it and scattered (added, with a split-K). The barriers
// are replayed as epochs: a stage read before a barrier separates it from
// its gather, or refilled before a barrier separates it from its last
// reader, is a race on the device and counted as a hazard here.
enum class Schedule { Plain, Pipelined, LoadBeforeBarrier };
// A mutant, to show the replay can fail: thread `dropThread`'s gathers
// skipped, or each step gathered into the stage after its own.
struct Mutation {
  int dropThread = -1;
  int stageShift = 0;
};

// The pipelined loop with its gather moved ahead of the barrier: a race
// (the refilled stage is the one other warps may still be multiplying).
template <typename Load, typename CloseGroup, typename Landed, typename Multiply>
void loadBeforeBarrierSteps(int steps, Load&& load, CloseGroup&&, Landed&& landed, Multiply&& multiply) {
  using namespace igemm;
  for (int s = 0; s < kStages - 1 && s < steps; ++s) load(s);
  for (int s = 0; s < steps; ++s) {
    if (s + kStages - 1 < steps) load(s + kStages - 1);
    landed();
    multiply(s);
  }
}

// AlongM: the along-m kernel's gathers (A along m through the tap table,
// stored column-major); the kernel takes them for problems with taps only.
// Pad and MmaK: the tiles' row padding and the MMA's depth, the tf32
// kernels' by default (the bf16 kernel: kPadBf16, 16; the replay keeps the
// values in fp32, so it checks where they go, not their rounding).
template <bool AlongM, typename Problem, int Pad = igemm::kPadFp32, int MmaK = 8>
long long replayBlocks(const Problem& prob, int splits, Schedule schedule, Mutation mutation = {}) {
  using namespace igemm;
  constexpr int LDA = ldA(Pad), LDAM = ldAm(Pad), LDB = ldB(Pad);
  constexpr int kATile = AlongM ? kStep * LDAM : kTile * LDA;
  std::vector<Tap> taps;
  if constexpr (AlongM) {
    taps.resize(size_t(prob.K()));
    fillTapTable(prob, taps.data());
  }
  for (int m = 0; m < prob.M(); ++m)
    for (int n = 0; n < prob.N(); ++n) prob.out()[prob.outIndex(m, n)] = splits > 1 ? 0.f : NAN;  // the kernel's memset, or poison
  const int blocksM = (prob.M() + kTile - 1) / kTile, blocksN = (prob.N() + kTile - 1) / kTile;
  std::vector<std::vector<float>> As(kStages, std::vector<float>(kATile)), Bs(kStages, std::vector<float>(kStep * LDB));
  std::vector<float> Cs(kTile * kLdC);
  long long hazards = 0;
  for (int bz = 0; bz < splits; ++bz)
    for (int bx = 0; bx < blocksM; ++bx)
      for (int by = 0; by < blocksN; ++by) {
        const int m0 = bx * kTile, n0 = by * kTile;
        int kBegin, kEnd;
        splitRange(prob.K(), splits, kStep, bz, &kBegin, &kEnd);
        std::vector<std::conditional_t<AlongM, TapGather<Problem>, ThreadGather<Problem>>> threads(kThreads);
        for (int tid = 0; tid < kThreads; ++tid) {
          if constexpr (AlongM) beginTapGather(prob, m0, n0, tid, threads[tid]);
          else beginGather(prob, m0, n0, tid, threads[tid]);
        }
        std::vector<double> acc(kTile * kTile, 0.0);  // [row][col] of the tile, each warp's fragments
        int epoch = 0;                                // barriers so far
        std::vector<int> gatheredAt(kStages, -1), readAt(kStages, -1);
        auto load = [&](int step, int stage) {
          if (readAt[stage] >= epoch) ++hazards;  // refilled while a warp may still read it
          gatheredAt[stage] = epoch;
          std::fill(As[stage].begin(), As[stage].end(), NAN);
          std::fill(Bs[stage].begin(), Bs[stage].end(), NAN);
          auto store = [&](int aSlot, const float* a, int bSlot, const float* b) {
            As[stage][aSlot] = a ? *a : 0.f;
            Bs[stage][bSlot] = b ? *b : 0.f;
          };
          for (int tid = 0; tid < kThreads; ++tid) {
            if (tid == mutation.dropThread) continue;
            if constexpr (AlongM) tapGatherStep(prob, threads[tid], taps.data(), stepStart(kBegin, step), kEnd, tid, LDAM, LDB, store);
            else gatherStep(prob, threads[tid], stepStart(kBegin, step), kEnd, tid, LDA, LDB, store);
          }
        };
        // A's element (r, k) of warp's fragment fi at sub-step kk, as multiplyStep loads it:
        // row-major ((r, k) at r * ld + k from the fragment's start), or col_major along m (k * ld + r).
        auto aAt = [&](int warp, int fi, int kk, int r, int k) {
          return AlongM ? aFragmentAlongM(warp, fi, kk, LDAM) + k * LDAM + r : aFragment(warp, fi, kk, LDA) + r * LDA + k;
        };
        auto multiply = [&](int stage) {  // each warp's fragments (B row-major: (k, c) at k * ld + c)
          if (gatheredAt[stage] >= epoch) ++hazards;  // read before a barrier made the gather visible
          readAt[stage] = epoch;
          for (int warp = 0; warp < kThreads / 32; ++warp)
            for (int fi = 0; fi < 2; ++fi)
              for (int fj = 0; fj < 2; ++fj)
                for (int kk = 0; kk < kStep; kk += MmaK)
                  for (int r = 0; r < kFragment; ++r)
                    for (int c = 0; c < kFragment; ++c) {
                      double sum = 0;
                      for (int k = 0; k < MmaK; ++k)
                        sum += double(As[stage][aAt(warp, fi, kk, r, k)]) * Bs[stage][bFragment(warp, fj, kk, LDB) + k * LDB + c];
                      acc[(warpRow(warp) + fi * kFragment + r) * kTile + warpCol(warp) + fj * kFragment + c] += sum;
                    }
        };
        auto barrier = [&] { ++epoch; };
        const int steps = stepsIn(kBegin, kEnd);
        if (schedule == Schedule::Plain) {
          plainSteps(steps, [&](int s) { load(s, 0); }, barrier, [&](int) { multiply(0); });
        } else if (schedule == Schedule::Pipelined) {
          pipelinedSteps(steps, [&](int s) { load(s, stageOf(s + mutation.stageShift)); }, [] {}, barrier, [&](int s) { multiply(stageOf(s)); });
        } else {
          loadBeforeBarrierSteps(steps, [&](int s) { load(s, stageOf(s)); }, [] {}, barrier, [&](int s) { multiply(stageOf(s)); });
        }
        // The epilogue: fragments stored in the output's order at cFragment, read back at stagedAt.
        constexpr bool AlongN = Problem::kOutAlongN;
        std::fill(Cs.begin(), Cs.end(), NAN);
        for (int warp = 0; warp < kThreads / 32; ++warp)
          for (int fi = 0; fi < 2; ++fi)
            for (int fj = 0; fj < 2; ++fj)
              for (int r = 0; r < kFragment; ++r)
                for (int c = 0; c < kFragment; ++c)
                  Cs[cFragment<AlongN>(warp, fi, fj) + fragmentElement<AlongN>(r, c)] =
                      float(acc[(warpRow(warp) + fi * kFragment + r) * kTile + warpCol(warp) + fj * kFragment + c]);
        for (int e = 0; e < kTile * kTile; ++e) {
          const int i = epilogueRow<AlongN>(e), j = epilogueCol<AlongN>(e), m = m0 + i, n = n0 + j;
          if (m >= prob.M() || n >= prob.N()) continue;
          float& o = prob.out()[prob.outIndex(m, n)];
          o = splits > 1 ? o + Cs[stagedAt<AlongN>(i, j)] : Cs[stagedAt<AlongN>(i, j)];
        }
      }
  return hazards;
}

template <typename Run>
void onProblem(const Dims& d, int pass, Tensors& t, Run&& run) {
  if (pass == 0) run(ForwardProblem{d, t.x.data(), t.w.data(), t.y.data()});
  if (pass == 1) run(BackwardDataProblem{d, t.x.data(), t.w.data(), t.y.data()});
  if (pass == 2) run(BackwardFilterProblem{d, t.x.data(), t.w.data(), t.y.data()});
}

void runImplicitGemm(const Dims& d, int pass, Tensors& t, int splits) {
  onProblem(d, pass, t, [&](const auto& prob) { runGemmProblem(prob, splits); });
}

// The replay's hazards (races on the device), 0 for a sound schedule.
// alongM: the along-m kernel (its taps where the problem has them).
long long replayImplicitGemm(const Dims& d, int pass, Tensors& t, int splits, Schedule schedule, Mutation mutation = {}, bool alongM = false) {
  long long hazards = 0;
  onProblem(d, pass, t, [&](const auto& prob) {
    using Problem = std::decay_t<decltype(prob)>;
    if constexpr (Problem::kHasTaps) {
      if (alongM) {
        hazards = replayBlocks<true>(prob, splits, schedule, mutation);
        return;
      }
    }
    hazards = replayBlocks<false>(prob, splits, schedule, mutation);
  });
  return hazards;
}

// The bf16 kernel's blocks: the plain schedule with bf16 tiles' strides and a k-16 MMA.
void replayBf16Blocks(const Dims& d, int pass, Tensors& t) {
  onProblem(d, pass, t, [&](const auto& prob) { replayBlocks<false, std::decay_t<decltype(prob)>, igemm::kPadBf16, 16>(prob, 1, Schedule::Plain); });
}

void runTapGemm(const Dims& d, int pass, Tensors& t) {
  onProblem(d, pass, t, [&](const auto& prob) {
    if constexpr (std::decay_t<decltype(prob)>::kHasTaps) runTapProblem(prob);
    else runGemmProblem(prob, 1);  // bwd-filter: the along-m kernel gathers as the pipelined one
  });
}

}  // namespace

int main() {
  // n, c, h, w, k, r, s, stride, pad: ResNet-50's classes (7x7/2, 1x1/1, 1x1/2, 3x3/1, 3x3/2) and odd sizes.
  const int shapes[][9] = {{2, 3, 19, 19, 8, 7, 7, 2, 3}, {2, 8, 9, 9, 16, 1, 1, 1, 0}, {2, 8, 9, 9, 16, 1, 1, 2, 0},
                           {2, 8, 9, 9, 8, 3, 3, 1, 1},  {2, 8, 10, 10, 8, 3, 3, 2, 1}, {1, 5, 7, 11, 6, 3, 3, 2, 1},
                           {3, 4, 6, 5, 7, 3, 3, 1, 1},
                           // several blocks each way, 12..40 K steps (more than the stages), a partial last step
                           {2, 20, 12, 12, 70, 3, 3, 1, 1}};
  const char* passes[] = {"fwd", "bwd-data", "bwd-filter"};
  const char* variants[] = {"direct", "im2col-cublas", "implicit-gemm", "implicit-gemm split-K 3", "implicit-gemm blocks",
                            "implicit-gemm blocks split-K 3", "implicit-gemm-pipelined blocks", "implicit-gemm-pipelined blocks split-K 3",
                            "implicit-gemm taps", "implicit-gemm-along-m blocks", "implicit-gemm-along-m blocks split-K 3",
                            "implicit-gemm-bf16 blocks"};
  const int variantCount = int(sizeof variants / sizeof variants[0]);
  double worst = 0;
  long long hazards = 0;  // of the sound schedules: must stay 0
  std::string rows;
  for (const auto& sh : shapes) {
    Dims d{sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7], sh[8], 0, 0};
    d.p = outSize(d.h, d.r, d.stride, d.pad);
    d.q = outSize(d.w, d.s, d.stride, d.pad);
    for (int pass = 0; pass < 3; ++pass) {
      Tensors base{randomVector(xLen(d), 1), randomVector(wLen(d), 2), randomVector(yLen(d), 3)};
      std::vector<double> ref;
      reference(d, pass, base, ref);
      for (int v = 0; v < variantCount; ++v) {
        Tensors t = base;
        std::fill(output(t, pass).begin(), output(t, pass).end(), NAN);
        if (v == 0) runDirect(d, pass, t);
        if (v == 1) runIm2col(d, pass, t);
        if (v == 2) runImplicitGemm(d, pass, t, 1);
        if (v == 3) runImplicitGemm(d, pass, t, 3);
        if (v >= 4 && v <= 7) hazards += replayImplicitGemm(d, pass, t, v % 2 ? 3 : 1, v >= 6 ? Schedule::Pipelined : Schedule::Plain);
        if (v == 8) runTapGemm(d, pass, t);
        if (v == 9 || v == 10) hazards += replayImplicitGemm(d, pass, t, v == 10 ? 3 : 1, Schedule::Pipelined, {}, true);
        if (v == 11) replayBf16Blocks(d, pass, t);
        const double err = relErr(output(t, pass), ref);
        worst = std::fmax(worst, err);
        char row[256];
        std::snprintf(row, sizeof row, "%s{\"shape\":\"n%d c%d %dx%d k%d %dx%d/%d pad %d\",\"pass\":\"%s\",\"variant\":\"%s\",\"maxRelErr\":%.3g}",
                      rows.empty() ? "" : ",", d.n, d.c, d.h, d.w, d.k, d.r, d.s, d.stride, d.pad, passes[pass], variants[v],
                      std::isfinite(err) ? err : 1e300);
        rows += row;
      }
    }
  }
  // The replay must fail a wrong schedule: one thread's gathers dropped, the stages shifted by one,
  // the gathers issued before the barrier (right values on the host, a race on the device).
  std::string mutants;
  bool allCaught = true;
  {
    const auto& sh = shapes[sizeof shapes / sizeof shapes[0] - 1];
    Dims d{sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7], sh[8], 0, 0};
    d.p = outSize(d.h, d.r, d.stride, d.pad);
    d.q = outSize(d.w, d.s, d.stride, d.pad);
    const struct {
      const char* name;
      Schedule schedule;
      Mutation mutation;
      bool alongM;
    } cases[] = {{"thread 37's gathers dropped", Schedule::Plain, {37, 0}, false},
                 {"stages shifted by one", Schedule::Pipelined, {-1, 1}, false},
                 {"gathers before the barrier", Schedule::LoadBeforeBarrier, {}, false},
                 {"along m: thread 37's gathers dropped", Schedule::Pipelined, {37, 0}, true},
                 {"along m: gathers before the barrier", Schedule::LoadBeforeBarrier, {}, true}};
    for (const auto& c : cases) {
      Tensors t{randomVector(xLen(d), 1), randomVector(wLen(d), 2), randomVector(yLen(d), 3)};
      std::vector<double> ref;
      reference(d, 0, t, ref);
      const long long raced = replayImplicitGemm(d, 0, t, 1, c.schedule, c.mutation, c.alongM);
      const double err = relErr(t.y, ref);
      const bool caught = err > 1e-5 || raced > 0;
      allCaught = allCaught && caught;
      char row[200];
      std::snprintf(row, sizeof row, "%s{\"mutant\":\"%s\",\"maxRelErr\":%.3g,\"hazards\":%lld,\"caught\":%s}", mutants.empty() ? "" : ",",
                    c.name, std::isfinite(err) ? err : 1e300, raced, caught ? "true" : "false");
      mutants += row;
    }
  }
  std::printf("{\"worst\":%.3g,\"tolerance\":1e-5,\"hazards\":%lld,\"rows\":[%s],\"mutants\":[%s]}\n", std::isfinite(worst) ? worst : 1e300,
              hazards, rows.c_str(), mutants.c_str());
  return worst <= 1e-5 && hazards == 0 && allCaught ? 0 : 1;
}
