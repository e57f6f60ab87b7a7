// The critical path of one iteration: the chain of kernels and waits that
// decided when it ended. Walking back from the last kernel, a kernel's
// predecessor is whichever of its dependencies ended last: the previous
// kernel on its stream, or, when its stream waited for an event since that
// kernel (a recorded wait edge), the kernel after which the other stream
// recorded the event. Gaps on the path are host time (launch, events) or idle;
// their sum with the kernels' is the span.
import type { KernelRecord, WaitRecord } from '../../binding';
import { byStream, phaseOf, type IterationMarks, type Phase } from '../run/kernel-stats';

/** The phases a critical path is split into, in iteration order. */
export const PATH_PHASES = ['data', 'forward', 'backward', 'reduction', 'optimizer', 'idle'] as const;

export interface PathSegment {
  kind: 'kernel' | 'gap';
  phase: Phase | 'data' | 'idle';
  stream: string;
  ms: number;
  kernel?: { op: string; pass: string; layer: string; variant: string };
  /** This kernel's stream waited for an event of that stream, recorded after the path's previous kernel. */
  waitedFor?: string;
}

export interface CriticalPath {
  segments: PathSegment[];
  /** ms on the path per phase (data, forward, backward, reduction, optimizer, idle); sums to the iteration time. */
  share: Record<(typeof PATH_PHASES)[number], number>;
  totalMs: number;
}

/** Clock slack between a kernel's recorded end and an event or wait timestamp taken just after it. */
const SLACK_NS = 1_000;

export function criticalPath(records: KernelRecord[], marks: IterationMarks, dataMs: number, waits: WaitRecord[]): CriticalPath {
  const streams = byStream(records);
  const segments: PathSegment[] = [];
  const gap = (stream: string, ns: number) => {
    if (ns > 0) segments.push({ kind: 'gap', phase: 'idle', stream, ms: ns / 1e6 });
  };
  if (records.length === 0) return { segments, share: { data: dataMs, forward: 0, backward: 0, reduction: 0, optimizer: 0, idle: 0 }, totalMs: dataMs };

  /** The kernel after which `stream` recorded an event that fired at `firedNs`. */
  const recorder = (stream: string, firedNs: number) => (streams.get(stream) ?? []).filter((k) => k.endNs <= firedNs + SLACK_NS).at(-1);

  // The last kernel of the iteration (on any stream) ends it.
  let cur = records.reduce((a, b) => (b.endNs > a.endNs ? b : a));
  gap(cur.streamName, marks.endNs - cur.endNs);
  // Each step goes to a kernel not yet on the path that ended no later, so the
  // walk ends (also on inconsistent times: another predecessor is not taken).
  const onPath = new Set<KernelRecord>([cur]);
  const earlier = (k: KernelRecord | undefined) => (k && k.endNs <= cur.endNs && !onPath.has(k) ? k : undefined);
  for (;;) {
    const segment: PathSegment = { kind: 'kernel', phase: phaseOf(cur, marks), stream: cur.streamName, ms: (cur.endNs - cur.startNs) / 1e6, kernel: { op: cur.op, pass: cur.pass, layer: cur.layer, variant: cur.variant } };
    segments.push(segment);
    const list = streams.get(cur.streamName)!;
    const prevSame = list[list.indexOf(cur) - 1];
    // Waits this stream passed between its previous kernel and this one.
    const after = prevSame ? prevSame.endNs - SLACK_NS : -Infinity;
    let pred = earlier(prevSame);
    for (const w of waits) {
      if (w.streamName !== cur.streamName || w.startNs < after || w.endNs > cur.startNs + SLACK_NS) continue;
      const source = earlier(recorder(w.sourceStream, w.firedNs >= 0 ? w.firedNs : w.endNs));
      if (source && (!pred || source.endNs > pred.endNs)) {
        pred = source;
        segment.waitedFor = w.sourceStream;
      }
    }
    if (!pred) {
      gap(cur.streamName, cur.startNs - marks.startNs);
      break;
    }
    gap(cur.streamName, cur.startNs - pred.endNs);
    cur = pred;
    onPath.add(cur);
  }
  segments.reverse();
  segments.unshift({ kind: 'gap', phase: 'data', stream: 'data', ms: dataMs });
  const share = { data: 0, forward: 0, backward: 0, reduction: 0, optimizer: 0, idle: 0 };
  for (const s of segments) share[s.phase] += s.ms;
  return { segments, share, totalMs: segments.reduce((a, s) => a + s.ms, 0) };
}
