// How much compute and communication slow each other down when they run at
// the same time on this machine (both use its cores and memory bandwidth).
// The what-if replay needs it to predict an overlapped schedule from a
// serialized run and the other way round; the attribution needs it to say
// what an overlapped run lost to contention.
//
// Measured in the run itself, on its own kernels: a run with a local
// reduction also runs a few iterations with the reduction in the other
// arrangement (overlapped for a serialized run, serialized for an overlapped
// one). Each kernel's time in the overlapped iterations, against its time in
// the serialized ones and the share of it that communication covered, gives
// the slowdown: conv-like (compute-bound) and memory-bound kernels apart, and
// the reduction's own slowdown beside compute. (An earlier probe timed one
// convolution beside one reduction in isolation: it gave 0.02 to 1.5 for the
// same setup, and the step's kernels were slowed by about 0.85.)
import type { KernelRecord, WaitRecord } from '../../binding';
import type { Breakdown } from '../analysis/breakdown';
import { summarize } from '../bench/stats';
import { byStream, kernelKey } from './kernel-stats';

export interface Contention {
  /** Relative slowdown of convolutions while communication runs (0.3: 30% longer). */
  compute: number;
  /** The same for the memory-bound kernels (batch norm, ReLU, pooling, adds, the optimizer). */
  memory?: number;
  /** Relative slowdown of communication kernels while compute runs. */
  comm: number;
  /**
   * Relative slowdown of every compute kernel in the overlapped arrangement,
   * covered or not (0.03: 3% longer): the kernels nothing covered still run
   * slower beside a reduction that ran earlier (its traffic through the
   * caches, the thread it wakes). `compute` and `memory` come on top of it.
   */
  uncovered?: number;
  /** How it was obtained. */
  source: string;
  /**
   * The iterations run in the other arrangement: their schedule and total
   * times. A what-if of the schedule can be checked against them in the same
   * process (no process-to-process noise).
   */
  other?: { schedule: 'serialized' | 'overlapped'; totalMs: number[]; iterations?: Breakdown[] };
}

/** Iterations run in the other arrangement, after the warm-up (the first of a cold start is not used). */
export const CONTENTION_ITERATIONS = 3;
/** Covered work (ms, summed over the kernels) below which a class's slowdown is not estimated. */
const MIN_COVERED_MS = 2;
/** Upper bound on the uncovered kernels' slowdown (a disturbed iteration must not set it). */
const MAX_UNCOVERED = 0.25;

/** The slowdown of every compute kernel in an overlapped arrangement (0 for runs saved without it). */
export function uncoveredSlowdown(c: { uncovered?: number } | undefined): number {
  return c?.uncovered ?? 0;
}

/** The slowdown that applies to a compute kernel of this op beside communication. */
export function kappaFor(op: string, c: { compute: number; memory?: number } | undefined): number {
  if (!c) return 0;
  return op === 'conv' || op === 'reorder' ? c.compute : c.memory ?? c.compute;
}

const isComm = (k: KernelRecord) => k.pass === 'comm';
/** CPU work of the reduction (the modeled link holds the stream without a core). */
const usesCores = (k: KernelRecord) => !isComm(k) || k.op === 'allreduce';
const overlapNs = (k: KernelRecord, others: KernelRecord[]) =>
  others.reduce((s, o) => s + Math.max(0, Math.min(k.endNs, o.endNs) - Math.max(k.startNs, o.startNs)), 0);

/** One iteration's kernels and its streams' waits for events of other streams. */
export interface RecordedIteration {
  records: KernelRecord[];
  waits?: WaitRecord[];
}

/** Time of [from, to) the stream spent blocked in waits for another stream. */
const blockedNs = (waits: WaitRecord[], stream: string, from: number, to: number) =>
  waits.reduce((s, w) => (w.streamName === stream ? s + Math.max(0, Math.min(to, w.endNs) - Math.max(from, w.startNs)) : s), 0);

/**
 * Per kernel: median ms over the iterations, and median ms covered by the
 * other stream's CPU work (medians: one iteration the machine slowed down
 * must not move the estimate). A compute kernel's time includes the host gap
 * before it on its stream (the stream thread's own work, which the other
 * stream's thread slows down too, and the time it waited for a core), less
 * the time the stream was blocked in a recorded wait for the other stream.
 */
function perKernel(iterations: RecordedIteration[]): Map<string, { ms: number; coveredMs: number; op: string; comm: boolean }> {
  const samples = new Map<string, { ms: number[]; coveredMs: number[]; op: string; comm: boolean }>();
  for (const { records, waits = [] } of iterations) {
    const cpu = records.filter(usesCores);
    const previousEnd = new Map<KernelRecord, number>();
    for (const list of byStream(records).values()) list.forEach((k, i) => i > 0 && previousEnd.set(k, list[i - 1].endNs));
    const mine = new Map<string, { ms: number; coveredMs: number }>();
    for (const k of cpu) {
      const from = previousEnd.get(k) ?? k.startNs;
      const host = isComm(k) ? 0 : Math.max(0, k.startNs - from - blockedNs(waits, k.streamName, from, k.startNs));
      const span = { ...k, startNs: k.startNs - host };
      const others = cpu.filter((o) => o.streamName !== k.streamName);
      const e = mine.get(kernelKey(k)) ?? { ms: 0, coveredMs: 0 };
      e.ms += (span.endNs - span.startNs) / 1e6;
      e.coveredMs += overlapNs(span, others) / 1e6;
      mine.set(kernelKey(k), e);
      if (!samples.has(kernelKey(k))) samples.set(kernelKey(k), { ms: [], coveredMs: [], op: k.op, comm: isComm(k) });
    }
    for (const [key, e] of mine) {
      samples.get(key)!.ms.push(e.ms);
      samples.get(key)!.coveredMs.push(e.coveredMs);
    }
  }
  return new Map([...samples].map(([key, x]) => [key, { ms: summarize(x.ms).median, coveredMs: summarize(x.coveredMs).median, op: x.op, comm: x.comm }]));
}

/**
 * The slowdowns from iterations of the same step in both arrangements. The
 * kernels that nothing covered set the ratio by which the serialized times
 * are scaled first (`uncovered`); the covered kernels' extra time on top of
 * it gives `compute`, `memory` and `comm`.
 */
export function contentionFromIterations(overlapped: RecordedIteration[], serialized: RecordedIteration[], what: string): Contention {
  const ov = perKernel(overlapped), se = perKernel(serialized);
  let freeOv = 0, freeSe = 0;
  for (const [key, o] of ov) {
    const s = se.get(key);
    if (s && !o.comm && o.coveredMs === 0) [freeOv, freeSe] = [freeOv + o.ms, freeSe + s.ms];
  }
  // Not machine drift (the iterations run seconds apart in one process): the
  // uncovered kernels were slower in the overlapped iterations in every run
  // recorded (1-6%), and a what-if of the schedule must carry it.
  const drift = freeSe > 0 ? freeOv / freeSe : 1;
  // Per class: slowdown = extra time / (alone time x covered fraction), summed over the covered kernels.
  const sums = { compute: { extra: 0, base: 0 }, memory: { extra: 0, base: 0 }, comm: { extra: 0, base: 0 } };
  for (const [key, o] of ov) {
    const s = se.get(key);
    if (!s || o.coveredMs <= 0 || o.ms <= 0) continue;
    // The uncovered kernels' ratio is the compute stream's: the reduction alone ran at its serialized speed.
    const alone = o.comm ? s.ms : s.ms * drift;
    const cls = o.comm ? 'comm' : o.op === 'conv' || o.op === 'reorder' ? 'compute' : 'memory';
    sums[cls].extra += o.ms - alone;
    sums[cls].base += alone * (o.coveredMs / o.ms);
  }
  // Under 2 ms of covered work is too little to tell: no slowdown (conv, reduction); memory-bound kernels then take the conv's.
  const enough = (c: { base: number }) => c.base >= MIN_COVERED_MS;
  const kappa = (c: { extra: number; base: number }) => (enough(c) ? Math.min(4, Math.max(0, c.extra / c.base)) : 0);
  const covered = (c: { base: number }) => c.base.toFixed(1);
  return {
    compute: kappa(sums.compute),
    memory: enough(sums.memory) ? kappa(sums.memory) : undefined,
    comm: kappa(sums.comm),
    // Below 0 (overlapped faster than alone) is noise: a reduction beside does not speed kernels up.
    uncovered: Math.min(MAX_UNCOVERED, Math.max(0, drift - 1)),
    source: `the run's own kernels: ${what}; covered ms (conv / memory-bound / reduction) ${covered(sums.compute)} / ${covered(sums.memory)} / ${covered(sums.comm)}, ` +
      `uncovered kernels overlapped / serialized ${drift.toFixed(3)}`,
  };
}
