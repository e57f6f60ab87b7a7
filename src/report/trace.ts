// Chrome trace / Perfetto JSON: one process per rank, one track (thread) per
// stream, each kernel a complete event with op, layer, variant, pass, bytes
// and flops in args. Times in microseconds, relative to the trace's start.
import type { KernelRecord } from '../../binding';

export interface TraceEvent {
  name: string;
  ph: 'X' | 'M';
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  cat?: string;
  args?: Record<string, unknown>;
}

export function chromeTrace(ranks: { rank: number; label: string; records: KernelRecord[] }[]): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms' } {
  const events: TraceEvent[] = [];
  const t0 = Math.min(...ranks.flatMap((r) => r.records.map((k) => k.startNs)), Infinity);
  for (const { rank, label, records } of ranks) {
    events.push({ name: 'process_name', ph: 'M', pid: rank, tid: 0, args: { name: label } });
    const streams = new Map<number, string>();
    for (const k of records) streams.set(k.stream, k.streamName);
    for (const [id, name] of streams) events.push({ name: 'thread_name', ph: 'M', pid: rank, tid: id, args: { name } });
    for (const k of records) {
      events.push({
        name: k.layer ? `${k.op} ${k.pass} ${k.layer}` : `${k.op} ${k.pass}`,
        cat: k.op,
        ph: 'X',
        pid: rank,
        tid: k.stream,
        ts: (k.startNs - t0) / 1e3,
        dur: (k.endNs - k.startNs) / 1e3,
        args: { op: k.op, layer: k.layer, variant: k.variant, pass: k.pass, bytes: k.bytes, flops: k.flops },
      });
    }
  }
  return { traceEvents: events, displayTimeUnit: 'ms' };
}
