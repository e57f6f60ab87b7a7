// The per-iteration breakdown of the published comparison, computed from a
// timeline: data, forward, backward, reduction (total and exposed: not
// hidden under compute), overlap (time computing while communicating / time
// communicating), optimizer, idle. Communication kernels are those with pass
// "comm" (all-reduce, modeled link); everything else is compute.
import type { KernelRecord } from '../../binding';

export interface Interval {
  start: number;
  end: number;
}

/** Sorted, non-overlapping cover of the intervals. */
export function union(intervals: Interval[]): Interval[] {
  const sorted = intervals.filter((i) => i.end > i.start).sort((a, b) => a.start - b.start);
  const out: Interval[] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last && i.start <= last.end) last.end = Math.max(last.end, i.end);
    else out.push({ ...i });
  }
  return out;
}

export function measure(intervals: Interval[]): number {
  return union(intervals).reduce((s, i) => s + (i.end - i.start), 0);
}

/** Intersection of two interval sets. */
export function intersect(a: Interval[], b: Interval[]): Interval[] {
  const ua = union(a), ub = union(b);
  const out: Interval[] = [];
  let i = 0, j = 0;
  while (i < ua.length && j < ub.length) {
    const start = Math.max(ua[i].start, ub[j].start), end = Math.min(ua[i].end, ub[j].end);
    if (end > start) out.push({ start, end });
    if (ua[i].end < ub[j].end) i++;
    else j++;
  }
  return out;
}

export interface PhaseMarks {
  startNs: number;
  forwardEndNs: number;
  backwardEndNs: number;
  reducedNs: number;
  endNs: number;
}

export interface Breakdown {
  totalMs: number;
  dataMs: number;
  forwardMs: number;
  backwardMs: number;
  reductionMs: number;
  reductionExposedMs: number;
  /** Fraction of communication time during which compute ran (0..1). */
  overlap: number;
  optimizerMs: number;
  idleMs: number;
}

export function breakdown(records: KernelRecord[], marks: PhaseMarks, dataMs: number): Breakdown {
  const iv = (k: KernelRecord) => ({ start: k.startNs, end: k.endNs });
  const comm = records.filter((k) => k.pass === 'comm').map(iv);
  const compute = records.filter((k) => k.pass !== 'comm').map(iv);
  const commNs = measure(comm);
  const hiddenNs = measure(intersect(comm, compute));
  const busyNs = measure([...comm, ...compute]);
  const span = marks.endNs - marks.startNs;
  return {
    totalMs: dataMs + span / 1e6,
    dataMs,
    forwardMs: (marks.forwardEndNs - marks.startNs) / 1e6,
    backwardMs: (marks.backwardEndNs - marks.forwardEndNs) / 1e6,
    reductionMs: commNs / 1e6,
    reductionExposedMs: (commNs - hiddenNs) / 1e6,
    overlap: commNs > 0 ? hiddenNs / commNs : 0,
    optimizerMs: (marks.endNs - marks.reducedNs) / 1e6,
    idleMs: Math.max(0, span - busyNs) / 1e6,
  };
}
