// The critical path of one iteration: the chain of kernels and waits that
// decided when it ended. Walking back from the last kernel: a kernel's
// predecessor is the previous kernel on its stream, unless it waited for the
// other stream: the optimizer's first kernel waits for the last bucket's
// reduction (overlapped schedule), and a bucket's first reduction waits for
// the backward kernel that produced its last gradient. Gaps on the path are
// host time (launch, events) or idle; their sum with the kernels' is the span.
import type { KernelRecord } from '../../binding';
import { phaseOf, type IterationMarks, type Phase } from '../run/kernel-stats';

/** The phases a critical path is split into, in iteration order. */
export const PATH_PHASES = ['data', 'forward', 'backward', 'reduction', 'optimizer', 'idle'] as const;

export interface PathSegment {
  kind: 'kernel' | 'gap';
  phase: Phase | 'data' | 'idle';
  stream: string;
  ms: number;
  kernel?: { op: string; pass: string; layer: string; variant: string };
}

export interface CriticalPath {
  segments: PathSegment[];
  /** ms on the path per phase (data, forward, backward, reduction, optimizer, idle); sums to the iteration time. */
  share: Record<(typeof PATH_PHASES)[number], number>;
  totalMs: number;
}

/** A comm kernel that waited longer than this after its predecessor started a new bucket. */
const WAIT_NS = 20_000;

export function criticalPath(records: KernelRecord[], marks: IterationMarks, dataMs: number): CriticalPath {
  const byStream = new Map<string, KernelRecord[]>();
  for (const k of records) byStream.set(k.streamName, [...(byStream.get(k.streamName) ?? []), k]);
  for (const list of byStream.values()) list.sort((a, b) => a.startNs - b.startNs);
  const compute = byStream.get('compute') ?? [];
  const comm = [...byStream.entries()].filter(([name]) => name !== 'compute').flatMap(([, l]) => l).sort((a, b) => a.startNs - b.startNs);
  const segments: PathSegment[] = [];
  const gap = (stream: string, ns: number) => {
    if (ns > 0) segments.push({ kind: 'gap', phase: 'idle', stream, ms: ns / 1e6 });
  };
  if (compute.length === 0) return { segments, share: { data: dataMs, forward: 0, backward: 0, reduction: 0, optimizer: 0, idle: 0 }, totalMs: dataMs };

  const firstOptimizer = compute.find((k) => phaseOf(k, marks) === 'optimizer');
  let list = compute;
  let i = list.length - 1;
  let cur = list[i];
  // The last kernel of the iteration (on any stream) ends it.
  const last = [...compute, ...comm].reduce((a, b) => (b.endNs > a.endNs ? b : a));
  gap('compute', marks.endNs - last.endNs);
  if (last !== cur) {
    list = comm;
    i = comm.indexOf(last);
    cur = last;
  }
  for (;;) {
    segments.push({ kind: 'kernel', phase: phaseOf(cur, marks), stream: cur.streamName, ms: (cur.endNs - cur.startNs) / 1e6, kernel: { op: cur.op, pass: cur.pass, layer: cur.layer, variant: cur.variant } });
    const prevSame = i > 0 ? list[i - 1] : undefined;
    let pred: KernelRecord | undefined = prevSame;
    if (list === compute && cur === firstOptimizer && comm.length > 0) {
      // Waited for the reduction when the last comm kernel ended after the previous compute kernel.
      const lastComm = comm.filter((k) => k.endNs <= cur.startNs + WAIT_NS).at(-1);
      if (lastComm && (!prevSame || lastComm.endNs > prevSame.endNs)) pred = lastComm;
    } else if (list === comm && (!prevSame || cur.startNs - prevSame.endNs > WAIT_NS)) {
      // A bucket that waited for its gradient: the compute kernel that ended last before it started.
      const producer = compute.filter((k) => k.endNs <= cur.startNs + WAIT_NS).at(-1);
      if (producer && (!prevSame || producer.endNs > prevSame.endNs)) pred = producer;
    }
    if (!pred) {
      gap(cur.streamName, cur.startNs - marks.startNs);
      break;
    }
    gap(cur.streamName, cur.startNs - pred.endNs);
    list = compute.includes(pred) ? compute : comm;
    i = list.indexOf(pred);
    cur = pred;
  }
  segments.reverse();
  segments.unshift({ kind: 'gap', phase: 'data', stream: 'data', ms: dataMs });
  const share = { data: 0, forward: 0, backward: 0, reduction: 0, optimizer: 0, idle: 0 };
  for (const s of segments) share[s.phase] += s.ms;
  return { segments, share, totalMs: segments.reduce((a, s) => a + s.ms, 0) };
}
