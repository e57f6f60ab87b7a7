// Per-kernel figures over the measured iterations of a run. The executor
// enqueues the same kernels in the same order every iteration, so position i
// on a stream is the same kernel in every iteration: its median duration, and
// the median gap before it on its stream (host launch and event waits), are
// what the what-if replay and the attribution work from (one iteration alone
// is too noisy on a shared machine).
import type { KernelRecord } from '../../binding';
import { summarize } from '../bench/stats';

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

export type Phase = 'forward' | 'backward' | 'reduction' | 'optimizer';

export interface KernelStat {
  op: string;
  pass: string;
  layer: string;
  variant: string;
  stream: string;
  /** The phase the kernel belongs to (by the iteration's marks; "reduction" for communication). */
  phase: Phase;
  bytes: number;
  flops: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Mean duration: means add up along a stream, so the replay uses them. */
  meanMs: number;
  /** Mean idle time before it on its stream (the first kernel: since the iteration started). */
  gapMs: number;
  /** Median start, ms after the iteration's start. */
  startMs: number;
}

/** Phase boundaries of one iteration, ns on the timeline clock. */
export interface IterationMarks {
  startNs: number;
  forwardEndNs: number;
  backwardEndNs: number;
  reducedNs: number;
  endNs: number;
}

export function phaseOf(k: KernelRecord, marks: IterationMarks): Phase {
  if (k.pass === 'comm') return 'reduction';
  if (k.startNs < marks.forwardEndNs) return 'forward';
  if (k.startNs < marks.backwardEndNs) return 'backward';
  if (k.startNs < marks.reducedNs) return 'reduction';
  return 'optimizer';
}

/** A kernel's identity within an iteration's sequence. */
export const kernelKey = (k: { op: string; pass: string; layer: string; variant: string }) => `${k.op}|${k.pass}|${k.layer}|${k.variant}`;

/**
 * Medians per sequence position over the iterations given (each: its records
 * and marks). Streams keep their order; iterations whose sequence differs
 * from the first one's are left out (none do, unless the executor changed).
 */
/** The records of each stream, in the order they ran. */
export function byStream(records: KernelRecord[]): Map<string, KernelRecord[]> {
  const out = new Map<string, KernelRecord[]>();
  for (const k of [...records].sort((a, b) => a.startNs - b.startNs)) {
    const list = out.get(k.streamName);
    if (list) list.push(k);
    else out.set(k.streamName, [k]);
  }
  return out;
}

export function kernelStats(iterations: { records: KernelRecord[]; marks: IterationMarks }[]): KernelStat[] {
  if (iterations.length === 0) return [];
  const sequence = (records: KernelRecord[]) => [...byStream(records).entries()].sort(([a], [b]) => a.localeCompare(b));
  const first = sequence(iterations[0].records);
  const signature = (seq: ReturnType<typeof sequence>) => seq.map(([s, ks]) => s + ':' + ks.map(kernelKey).join(',')).join(';');
  const sig = signature(first);
  const same = iterations.map((it) => ({ it, seq: sequence(it.records) })).filter(({ seq }) => signature(seq) === sig);
  const out: KernelStat[] = [];
  for (let s = 0; s < first.length; s++) {
    const [stream, kernels] = first[s];
    for (let i = 0; i < kernels.length; i++) {
      const k = kernels[i];
      const ms = same.map(({ seq }) => (seq[s][1][i].endNs - seq[s][1][i].startNs) / 1e6);
      const gaps = same.map(({ it, seq }) => {
        const prevEnd = i === 0 ? it.marks.startNs : seq[s][1][i - 1].endNs;
        return Math.max(0, seq[s][1][i].startNs - prevEnd) / 1e6;
      });
      const starts = same.map(({ it, seq }) => (seq[s][1][i].startNs - it.marks.startNs) / 1e6);
      const d = summarize(ms);
      out.push({
        op: k.op, pass: k.pass, layer: k.layer, variant: k.variant, stream,
        phase: phaseOf(k, iterations[0].marks),
        bytes: k.bytes, flops: k.flops,
        medianMs: d.median, minMs: d.min, maxMs: d.max,
        meanMs: mean(ms),
        gapMs: mean(gaps),
        startMs: summarize(starts).median,
      });
    }
  }
  return out;
}
