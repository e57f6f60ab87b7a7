// The block-level schedule of our implicit GEMM (conv_igemm.cu): which
// thread gathers which operand element into which shared-memory slot, in
// which pipeline stage, which warp multiplies which part of the tile, and
// where each result goes. host_check.cc replays exactly these functions on
// the host, block by block and thread by thread, against a reference; what
// it cannot run is the WMMA instructions, the asynchronous copies and the
// barriers themselves.
#pragma once

#include "cuda/conv_index.h"
#include "core/host_device.h"

namespace stepscope {
namespace cudaconv {
namespace igemm {

// A 64x64 block tile, K steps of 16, 4 warps of 32x32 (2x2 fragments of 16x16).
constexpr int kTile = 64, kStep = 16, kThreads = 128, kWarpTile = 32, kFragment = 16;
constexpr int kRowsPerPass = kThreads / kStep, kLoads = kTile / kRowsPerPass;
constexpr int kLdC = kTile + 4;  // the epilogue's staging tile, fp32
// The pipelined variant's stages: gathers run kStages - 1 steps ahead of the multiplications.
constexpr int kStages = 3;

// Shared-memory row padding (against bank conflicts), in elements: fp32
// tiles (the tf32 kernels) and bf16 tiles.
constexpr int kPadFp32 = 4, kPadBf16 = 8;
// Shared-memory row lengths for a padding of `pad` elements.
SS_HD constexpr int ldA(int pad) { return kStep + pad; }
SS_HD constexpr int ldB(int pad) { return kTile + pad; }

// Thread tid gathers column gatherK(tid) of the A tile and the same row of
// the B tile, at tile rows (columns) gatherRow(tid, t), t < kLoads.
SS_HD inline int gatherK(int tid) { return tid % kStep; }
SS_HD inline int gatherRow(int tid, int t) { return tid / kStep + kRowsPerPass * t; }

// What a thread keeps across the K steps: its rows' and columns' index parts.
template <typename Problem>
struct ThreadGather {
  typename Problem::Row rows[kLoads];
  typename Problem::Col cols[kLoads];
};

template <typename Problem>
SS_HD inline void beginGather(const Problem& prob, int m0, int n0, int tid, ThreadGather<Problem>& g) {
  for (int t = 0; t < kLoads; ++t) {
    g.rows[t] = prob.row(m0 + gatherRow(tid, t));
    g.cols[t] = prob.col(n0 + gatherRow(tid, t));
  }
}

// Thread tid's share of the K step at k0 (its split ends at kEnd):
// store(aSlot, aSource, bSlot, bSource) for each of its kLoads pairs, a
// source nullptr where the operand is zero.
template <typename Problem, typename Store>
SS_HD inline void gatherStep(const Problem& prob, const ThreadGather<Problem>& g, int k0, int kEnd, int tid, int lda, int ldb,
                             Store&& store) {
  const int j = gatherK(tid), kk = k0 + j;
  const bool kIn = kk < kEnd;
  const auto ka = prob.kA(kk);
  const auto kb = prob.kB(kk);
  for (int t = 0; t < kLoads; ++t) {
    const int i = gatherRow(tid, t);
    store(i * lda + j, kIn ? prob.aAt(g.rows[t], ka) : nullptr, j * ldb + i, kIn ? prob.bAt(kb, g.cols[t]) : nullptr);
  }
}

// ---- A along m (the along-m kernel, for problems with taps: conv_index.h).
// Thread tid gathers A's tile row alongMRow(tid) at tile columns
// alongMK(tid, t), t < kLoads, so a warp's copy reads 32 consecutive rows m
// at one kk (consecutive addresses where the output positions are, one
// table entry for the whole warp); B as before. A is stored column-major
// (element (i, j) at j * ldAm + i: consecutive lanes, consecutive banks)
// and loaded as WMMA col_major fragments (aFragmentAlongM).
constexpr int kKPerPassM = kThreads / kTile;
static_assert(kStep / kKPerPassM == kLoads, "A along m: as many gathers per thread as along k");
SS_HD inline int alongMRow(int tid) { return tid % kTile; }
SS_HD inline int alongMK(int tid, int t) { return tid / kTile + kKPerPassM * t; }
SS_HD constexpr int ldAm(int pad) { return kTile + pad; }

// What a thread keeps: its row's taps (one row, where the k-wise mapping keeps kLoads), B's columns.
template <typename Problem>
struct TapGather {
  TapRow row;
  typename Problem::Col cols[kLoads];
};

template <typename Problem>
SS_HD inline void beginTapGather(const Problem& prob, int m0, int n0, int tid, TapGather<Problem>& g) {
  g.row = prob.tapRow(m0 + alongMRow(tid));
  for (int t = 0; t < kLoads; ++t) g.cols[t] = prob.col(n0 + gatherRow(tid, t));
}

// gatherStep with A along m: kk's part of A from `taps` (the layer's table, K entries).
template <typename Problem, typename Store>
SS_HD inline void tapGatherStep(const Problem& prob, const TapGather<Problem>& g, const Tap* taps, int k0, int kEnd, int tid, int ldam,
                                int ldb, Store&& store) {
  const int i = alongMRow(tid), j = gatherK(tid), kk = k0 + j;
  const bool kIn = kk < kEnd;
  const auto kb = prob.kB(kk);
  for (int t = 0; t < kLoads; ++t) {
    const int ja = alongMK(tid, t), kka = k0 + ja;
    const float* a = kka < kEnd ? prob.aTapAt(g.row, loadTap(taps, kka)) : nullptr;
    const int ib = gatherRow(tid, t);
    store(ja * ldam + i, a, j * ldb + ib, kIn ? prob.bAt(kb, g.cols[t]) : nullptr);
  }
}

// Warp w multiplies tile rows warpRow(w).. by columns warpCol(w).., 32 each.
SS_HD inline int warpRow(int warp) { return warp / 2 * kWarpTile; }
SS_HD inline int warpCol(int warp) { return warp % 2 * kWarpTile; }

// Where a warp's fragments start (WMMA row-major operands: element (r, c)
// of a fragment at start + r * ld + c): A fragment i at sub-step kk, B
// fragment j at kk.
SS_HD inline int aFragment(int warp, int i, int kk, int lda) { return (warpRow(warp) + i * kFragment) * lda + kk; }
SS_HD inline int bFragment(int warp, int j, int kk, int ldb) { return kk * ldb + warpCol(warp) + j * kFragment; }
// With A along m (col_major: element (r, c) at start + c * ld + r).
SS_HD inline int aFragmentAlongM(int warp, int i, int kk, int ldam) { return kk * ldam + warpRow(warp) + i * kFragment; }

// The epilogue walks the block's tile along the output's contiguous
// dimension, so consecutive threads write (or, with split-K, add to)
// consecutive addresses: rows m for y and dx (NCHW), columns n for dw
// (AlongN, Problem::kOutAlongN). It stages the tile in shared memory in the
// matching order (column-major along m, row-major along n: accumulator
// fragment (i, j) stored at cFragment, its element (r, c) at
// fragmentElement(r, c) from there), so those reads hit consecutive banks.
template <bool AlongN>
SS_HD inline int stagedAt(int row, int col) { return AlongN ? row * kLdC + col : col * kLdC + row; }
template <bool AlongN>
SS_HD inline int cFragment(int warp, int i, int j) { return stagedAt<AlongN>(warpRow(warp) + i * kFragment, warpCol(warp) + j * kFragment); }
template <bool AlongN>
SS_HD inline int fragmentElement(int r, int c) { return stagedAt<AlongN>(r, c); }
template <bool AlongN>
SS_HD inline int epilogueRow(int e) { return AlongN ? e / kTile : e % kTile; }
template <bool AlongN>
SS_HD inline int epilogueCol(int e) { return AlongN ? e % kTile : e / kTile; }

SS_HD inline int stepsIn(int kBegin, int kEnd) { return (kEnd - kBegin + kStep - 1) / kStep; }
SS_HD inline int stepStart(int kBegin, int step) { return kBegin + step * kStep; }

// The plain K loop: gather a step, a barrier, multiply it, a barrier (the
// next gather overwrites the one tile).
template <typename Load, typename Barrier, typename Multiply>
SS_HD inline void plainSteps(int steps, Load&& load, Barrier&& barrier, Multiply&& multiply) {
  for (int s = 0; s < steps; ++s) {
    load(s);
    barrier();
    multiply(s);
    barrier();
  }
}

// The pipelined K loop over `steps` steps. load(s) gathers step s into
// stage s % kStages; closeGroup() ends a group of copies after each load
// position, also past the last step (empty groups keep the count, so "all
// but the newest kStages - 2 groups are done" means "step s is"); landed()
// waits for step s's copies and is a barrier for the block (every thread's
// copies visible, and step s - 1's multiplication finished everywhere, so
// its stage may be refilled); multiply(s) reads stage s % kStages.
template <typename Load, typename CloseGroup, typename Landed, typename Multiply>
SS_HD inline void pipelinedSteps(int steps, Load&& load, CloseGroup&& closeGroup, Landed&& landed, Multiply&& multiply) {
  auto issue = [&](int s) {
    if (s < steps) load(s);
    closeGroup();
  };
  for (int s = 0; s < kStages - 1; ++s) issue(s);
  for (int s = 0; s < steps; ++s) {
    landed();
    issue(s + kStages - 1);  // into the stage step s - 1 used
    multiply(s);
  }
}

SS_HD inline int stageOf(int step) { return step % kStages; }

}  // namespace igemm
}  // namespace cudaconv
}  // namespace stepscope
