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

/** Each measurement lasts at least this long; rounds alternate alone and together. */
const PHASE_MS = 25;
const ROUNDS = 3;

/** The slowdown that applies to a compute kernel of this op beside communication. */
export function kappaFor(op: string, c: { compute: number; memory?: number } | undefined): number {
  if (!c) return 0;
  return op === 'conv' || op === 'reorder' ? c.compute : c.memory ?? c.compute;
}

const durations = (records: KernelRecord[], stream: string) =>
  records.filter((k) => k.streamName === stream).map((k) => (k.endNs - k.startNs) / 1e6);

/** Runs the probe (2 kernel kinds x 3 rounds x 4 x 40 ms); the timeline is left empty. */
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
  const alone = async (enqueue: (s: Stream) => void, s: Stream, count: number) => {
    for (let i = 0; i < count; i++) enqueue(s);
    await s.synchronize();
    return durations(native.timelineDrain(), s.name);
  };
  native.timelineDrain();
  try {
    /** One kernel kind against the reduction: median slowdowns of both over the rounds. */
    const against = async (enqueue: (s: Stream) => void) => {
      const c1 = summarize(await alone(enqueue, compute, 2)).median;
      const m1 = summarize(await alone(enqueueComm, comm, 2)).median;
      const nc = Math.max(2, Math.ceil(PHASE_MS / Math.max(c1, 0.01)));
      const nm = Math.max(2, Math.ceil(PHASE_MS / Math.max(m1, 0.01)));
      const ratios = { compute: [] as number[], comm: [] as number[] };
      const alones = { compute: [] as number[], comm: [] as number[] };
      for (let round = 0; round < ROUNDS; round++) {
        const ca = summarize(await alone(enqueue, compute, nc)).median;
        const ma = summarize(await alone(enqueueComm, comm, nm)).median;
        // Together: the reductions cover the kernels' whole span.
        const together = Math.ceil((nc * ca * 1.5) / Math.max(ma, 0.01)) + 2;
        for (let i = 0; i < together; i++) enqueueComm(comm);
        for (let i = 0; i < nc; i++) enqueue(compute);
        await Promise.all([compute.synchronize(), comm.synchronize()]);
        const records = native.timelineDrain();
        const computeEnd = Math.max(...records.filter((k) => k.streamName === compute.name).map((k) => k.endNs));
        const ct = summarize(durations(records, compute.name)).median;
        const mt = records.filter((k) => k.streamName === comm.name && k.endNs <= computeEnd).map((k) => (k.endNs - k.startNs) / 1e6);
        ratios.compute.push(ct / ca);
        if (mt.length > 0) ratios.comm.push(summarize(mt).median / ma);
        alones.compute.push(ca);
        alones.comm.push(ma);
      }
      return {
        kernel: Math.max(0, summarize(ratios.compute).median - 1),
        comm: ratios.comm.length > 0 ? Math.max(0, summarize(ratios.comm).median - 1) : 0,
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
        `beside the largest local reduction (${conv.commMs.toFixed(2)} ms alone), medians of ${ROUNDS} rounds`,
    };
  } finally {
    probe.release();
  }
}
