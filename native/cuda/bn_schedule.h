// Which thread of our batch norm (ops_batchnorm.cu) reads which elements,
// in both layouts; host and device, so check/op_host_check.cc replays the
// kernels' loops on the host (every element summed and written exactly once,
// the results against the CPU reference). Three launches per pass:
//   1. partials: per (tile, channel), two double sums over that tile's share
//      of the channel's m = n * hw values, no atomics (the same sums on every
//      run). NCHW: a block of kThreads per (channel, tile), the tile a
//      contiguous range of the channel's values (whole planes' runs, read
//      kVec at a time where hw allows). NHWC: a block of kChannels channels x
//      kRows rows per (channel group, tile), a warp reading 32 consecutive
//      channels of a row.
//   2. finalize: a warp per channel adds its tiles' partials (lane-strided,
//      then a fixed shuffle tree) into the statistics and coefficients.
//   3. apply: the output element by element in memory order, kVec at a time
//      where the layout allows, the channel found without a division
//      (fast_divider.h) where the tensor has under 2^31 elements.
#pragma once
#include <cstdint>

#include "core/host_device.h"
#include "cuda/fast_divider.h"
#include "cuda/vec_access.h"

namespace stepscope {
namespace cudaops {
namespace bn {

constexpr int kThreads = 256;          // NCHW partials, finalize and apply blocks
constexpr int kChannels = 32, kRows = 8;  // NHWC partials blocks (kVec: vec_access.h)
constexpr int kMaxTiles = 512;
// A tile's share: NCHW 16 values per thread (4 vectors), NHWC 16 rows per thread.
constexpr long long kNchwValuesPerTile = 16LL * kThreads, kNhwcRowsPerTile = 16LL * kRows;
constexpr int kChannelsPerFinalizeBlock = kThreads / 32;
constexpr long long kNarrowLimit = 1LL << 31;  // FastDivider's dividend bound

// Everything the kernels need to place an element, computed once on the host.
struct BnGeometry {
  int n = 0, c = 0;
  long long hw = 0, m = 0, total = 0;  // m = n * hw values per channel, total = m * c
  bool nhwc = false;
  int tiles = 1;
  long long chunk = 0;  // NCHW: a tile's values of one channel, a multiple of kVec
  bool vec = false;     // kVec elements at a time (set at launch: also needs aligned buffers)
  bool narrow = false;  // total < 2^31: 32-bit indices and FastDivider
  FastDivider hwDiv, cDiv;
};

inline long long ceilDiv(long long a, long long b) { return (a + b - 1) / b; }

inline BnGeometry bnGeometry(int n, int c, long long hw, bool nhwc) {
  BnGeometry g;
  g.n = n, g.c = c, g.hw = hw, g.nhwc = nhwc;
  g.m = (long long)n * hw;
  g.total = g.m * c;
  const long long want = nhwc ? ceilDiv(g.m, kNhwcRowsPerTile) : ceilDiv(g.m, kNchwValuesPerTile);
  g.tiles = int(want < 1 ? 1 : want < kMaxTiles ? want : kMaxTiles);
  g.chunk = ceilDiv(ceilDiv(g.m, g.tiles), kVec) * kVec;
  g.narrow = g.total < kNarrowLimit;
  if (g.narrow) g.hwDiv = FastDivider(uint32_t(hw)), g.cDiv = FastDivider(uint32_t(c));
  return g;
}

// Whether the layout allows kVec-element accesses (the buffers' alignment is the launch's to add):
// NCHW, a vector stays within a plane; NHWC, within a row (so its channels are c .. c + kVec - 1).
inline bool layoutAllowsVectors(const BnGeometry& g) { return g.nhwc ? g.c % kVec == 0 : g.hw % kVec == 0; }

// ---- NCHW partials: channel c's values i in [tileBegin, tileEnd) of tile t.
SS_HD inline long long nchwTileBegin(const BnGeometry& g, int t) { return (long long)t * g.chunk; }
SS_HD inline long long nchwTileEnd(const BnGeometry& g, int t) {
  const long long e = (long long)(t + 1) * g.chunk;
  return e < g.m ? e : g.m;
}
// Thread tid's first value and its stride (kVec values per step where g.vec).
SS_HD inline long long nchwFirst(const BnGeometry& g, int t, int tid) { return nchwTileBegin(g, t) + (long long)tid * (g.vec ? kVec : 1); }
SS_HD inline long long nchwStride(const BnGeometry& g) { return (long long)kThreads * (g.vec ? kVec : 1); }
// The memory index of channel c's value i (image i / hw, position i % hw).
SS_HD inline long long nchwOffset(const BnGeometry& g, int c, long long i) {
  if (g.narrow) {
    const uint32_t image = g.hwDiv.div(uint32_t(i)), pos = uint32_t(i) - image * uint32_t(g.hw);
    return (long long)((image * uint32_t(g.c) + uint32_t(c)) * uint32_t(g.hw) + pos);
  }
  return (i / g.hw * g.c + c) * g.hw + i % g.hw;
}

// ---- NHWC partials: block (channel group, tile t), thread (tx, ty): channel
// group * kChannels + tx, rows ty + t * kRows, stepping tiles * kRows.
SS_HD inline long long nhwcFirstRow(int t, int ty) { return (long long)t * kRows + ty; }
SS_HD inline long long nhwcRowStride(const BnGeometry& g) { return (long long)g.tiles * kRows; }

// ---- apply: the channel of memory index e (e a multiple of kVec where g.vec:
// then element e + k is in channel channelOf(e) + (nhwc ? k : 0)).
SS_HD inline int channelOf(const BnGeometry& g, long long e) {
  if (g.narrow) return int(g.nhwc ? g.cDiv.mod(uint32_t(e)) : g.cDiv.mod(g.hwDiv.div(uint32_t(e))));
  return int(g.nhwc ? e % g.c : e / g.hw % g.c);
}
SS_HD inline int vectorChannelStep(const BnGeometry& g) { return g.nhwc ? 1 : 0; }

// ---- finalize: lane l of channel c's warp adds tiles l, l + 32, ...; the partial of (tile, channel) at tile * c + channel.
SS_HD inline long long partialAt(const BnGeometry& g, int tile, int c) { return (long long)tile * g.c + c; }

}  // namespace bn
}  // namespace cudaops
}  // namespace stepscope
