// A run with a local reduction also ran a few iterations with the reduction
// in the other arrangement (run/contention.ts). They are a measurement, in
// the same process, of exactly what a what-if of the schedule predicts: the
// model's replay of that arrangement against their median shows the model's
// own error without the process-to-process noise of a second recording.
import type { Run } from '../run/training';
import { summarize } from '../bench/stats';
import { withComm } from './changes';
import { predict } from './predict';

export interface InRunCheck {
  schedule: 'serialized' | 'overlapped';
  /** Median iteration time of the run's iterations in that arrangement, and each of them. */
  measuredMs: number;
  iterationsMs: number[];
  /** The what-if's prediction of that arrangement from this run. */
  predictedMs: number;
  errorPct: number;
}

/** Undefined for runs without iterations in the other arrangement (gloo, one worker, older files). */
export function inRunCheck(run: Run): InRunCheck | undefined {
  const other = run.contention?.other;
  if (!other || other.totalMs.length === 0) return undefined;
  const measuredMs = summarize(other.totalMs).median;
  const predictedMs = predict(run, (m) => withComm(m, { schedule: other.schedule })).totalMs;
  return { schedule: other.schedule, measuredMs, iterationsMs: other.totalMs, predictedMs, errorPct: (100 * (predictedMs - measuredMs)) / measuredMs };
}

export function formatInRunCheck(c: InRunCheck): string {
  return `check: this run also ran ${c.iterationsMs.length} iterations with the reduction ${c.schedule} (median ${c.measuredMs.toFixed(1)} ms; ` +
    `${c.iterationsMs.map((x) => x.toFixed(1)).join(', ')}); the model's replay of them gives ${c.predictedMs.toFixed(1)} ms (${c.errorPct >= 0 ? '+' : ''}${c.errorPct.toFixed(1)}%)`;
}
