// How much compute and communication slow each other down when they run at
// the same time on this machine (both use its cores and memory bandwidth).
// The what-if replay needs it to predict an overlapped schedule from a
// serialized run. Measured with the step's own kernels: the heaviest
// convolution and the largest gradient's reduction, first alone, then
// concurrently on two streams.
import type { KernelRecord, Stream } from '../../binding';
import { summarize } from '../bench/stats';
import { addon } from '../native';
import type { TrainingStep } from './executor';

export interface Contention {
  /** Relative slowdown of convolutions while communication runs (0.3: 30% longer). */
  compute: number;
  /** The same for the memory-bound kernels (batch norm, ReLU, pooling, adds, the optimizer). */
  memory?: number;
  /** Relative slowdown of communication kernels while compute runs. */
  comm: number;
  /** How it was obtained. */
  source: string;
}

/**
 * Pairs of (alone, together) measurements per kernel kind, interleaved one by
 * one: on a shared machine the speed drifts, and the scheduler treats a
 * kernel beside a busy thread differently from one time slice to the next,
 * so many short pairs average far better than a few long phases.
 */
const MAX_PAIRS = 40;
const MIN_PAIRS = 10;
/** Pairs stop after this long per kernel kind (once MIN_PAIRS are done): a big network's kernels take longer. */
const BUDGET_MS = 800;
/** Each alone or together measurement lasts at least this long (small networks: several kernels). */
const MIN_MS = 4;

/** The mean of the middle values (a fifth dropped at each end): pairs the scheduler treated unusually count for nothing. */
export function trimmedMean(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const drop = Math.floor(sorted.length / 5);
  const kept = sorted.slice(drop, sorted.length - drop);
  return kept.reduce((a, b) => a + b, 0) / kept.length;
}

/** The slowdown that applies to a compute kernel of this op beside communication. */
export function kappaFor(op: string, c: { compute: number; memory?: number } | undefined): number {
  if (!c) return 0;
  return op === 'conv' || op === 'reorder' ? c.compute : c.memory ?? c.compute;
}

const durations = (records: KernelRecord[], stream: string) =>
  records.filter((k) => k.streamName === stream).map((k) => (k.endNs - k.startNs) / 1e6);

/** Runs the probe (2 kernel kinds x 10-40 interleaved pairs, about 1 s at most each); the timeline is left empty. */
export async function measureContention(step: TrainingStep): Promise<Contention | undefined> {
  const native = addon();
  const probe = step.contentionKernels();
  if (!probe.comm) {
    probe.release();
    return undefined;
  }
  const enqueueComm = probe.comm;
  const compute = step.stream;
  const comm: Stream = new native.Stream('contention-probe');
  /** Total ms of `count` kernels run one after the other on `s`. */
  const alone = async (enqueue: (s: Stream) => void, s: Stream, count: number) => {
    for (let i = 0; i < count; i++) enqueue(s);
    await s.synchronize();
    return durations(native.timelineDrain(), s.name).reduce((a, b) => a + b, 0);
  };
  native.timelineDrain();
  try {
    /** One kernel kind against the reduction: trimmed mean slowdowns of both over the pairs. */
    const against = async (enqueue: (s: Stream) => void) => {
      await alone(enqueue, compute, 1); // warm
      const c1 = await alone(enqueue, compute, 1);
      const m1 = await alone(enqueueComm, comm, 1);
      const nc = Math.max(1, Math.ceil(MIN_MS / Math.max(c1, 0.001)));
      const nm = Math.max(1, Math.ceil(MIN_MS / Math.max(m1, 0.001)));
      const ratios = { compute: [] as number[], comm: [] as number[] };
      const alones = { compute: [] as number[], comm: [] as number[] };
      const t0 = performance.now();
      for (let pair = 0; pair < MAX_PAIRS && (pair < MIN_PAIRS || performance.now() - t0 < BUDGET_MS); pair++) {
        const ca = await alone(enqueue, compute, nc);
        const ma = (await alone(enqueueComm, comm, nm)) / nm;
        // Together: reductions cover the kernels' whole span.
        const together = Math.ceil((ca * 1.3) / Math.max(ma, 0.001)) + 1;
        for (let i = 0; i < together; i++) enqueueComm(comm);
        for (let i = 0; i < nc; i++) enqueue(compute);
        await Promise.all([compute.synchronize(), comm.synchronize()]);
        const records = native.timelineDrain();
        const mine = records.filter((k) => k.streamName === compute.name);
        const [start, end] = [Math.min(...mine.map((k) => k.startNs)), Math.max(...mine.map((k) => k.endNs))];
        const ct = mine.reduce((a, k) => a + (k.endNs - k.startNs) / 1e6, 0);
        // The reductions that ran wholly beside the kernels.
        const mt = records.filter((k) => k.streamName === comm.name && k.startNs >= start && k.endNs <= end).map((k) => (k.endNs - k.startNs) / 1e6);
        ratios.compute.push(ct / ca);
        if (mt.length > 0) ratios.comm.push(summarize(mt).median / ma);
        alones.compute.push(ca / nc);
        alones.comm.push(ma);
      }
      return {
        kernel: Math.max(0, trimmedMean(ratios.compute) - 1),
        comm: ratios.comm.length > 0 ? Math.max(0, trimmedMean(ratios.comm) - 1) : 0,
        kernelRange: [Math.min(...ratios.compute) - 1, Math.max(...ratios.compute) - 1],
        pairs: ratios.compute.length,
        kernelMs: summarize(alones.compute).median,
        commMs: summarize(alones.comm).median,
      };
    };
    const conv = await against(probe.compute);
    const memory = await against(probe.memory);
    return {
      compute: conv.kernel,
      memory: memory.kernel,
      comm: (conv.comm + memory.comm) / 2,
      source: `probe: heaviest conv (${conv.kernelMs.toFixed(2)} ms alone) and largest batch norm backward (${memory.kernelMs.toFixed(2)} ms) ` +
        `beside the largest local reduction (${conv.commMs.toFixed(2)} ms alone), trimmed means of ${conv.pairs} and ${memory.pairs} interleaved pairs ` +
        `(slowdown per pair: conv ${conv.kernelRange.map((x) => x.toFixed(2)).join('..')}, batch norm ${memory.kernelRange.map((x) => x.toFixed(2)).join('..')})`,
    };
  } finally {
    probe.release();
  }
}
