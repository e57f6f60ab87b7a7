// The dependency graph of one iteration, as the what-if replay uses it, built
// from a saved run: the compute stream's kernels in order (each with its
// duration when running alone and the host gap before it), the gradients with
// the kernel after which each is ready, and a model of the communication
// (a fit of the run's own all-reduce kernels, the modeled link's formula).
import { UsageError } from '../errors';
import { resnet50Graph, type ResNetGraph } from '../model/graph';
import type { KernelStat, Phase } from '../run/kernel-stats';
import type { Run } from '../run/training';
import { summarize } from '../bench/stats';
import { kappaFor, uncoveredSlowdown } from '../run/contention';

export interface ComputeTask {
  op: string;
  pass: string;
  layer: string;
  variant: string;
  phase: Exclude<Phase, 'reduction'>;
  /** Duration with nothing running beside it. */
  ms: number;
  /** Host time before it (launch, events). */
  gapMs: number;
}

export interface GradientReady {
  param: string;
  bytes: number;
  /** Index of the compute task after which the gradient is ready. */
  after: number;
}

export interface CommModel {
  comm: 'local' | 'gloo' | 'nccl' | 'none';
  workers: number;
  schedule: 'serialized' | 'overlapped';
  bucketMb: number;
  firstBucketMb: number;
  link?: { gbps: number; latencyUs: number };
  /** All-reduce of one gradient, alone: fixedMs + bytes * msPerByte (at `fitWorkers` workers). */
  allreduce: { fixedMs: number; msPerByte: number; fitWorkers: number; samples: number };
  /** The run's own all-reduce time of each gradient (NCCL: of each bucket, `bucketN`), alone (at `fitWorkers`); the fit covers the others. */
  measuredMs?: Record<string, number>;
  /** The run's bucket sizes: a bucket `bucketN` is the run's own only while they stand. */
  measuredBuckets?: { bucketMb: number; firstBucketMb: number };
}

/**
 * Each gradient's (or NCCL bucket's) all-reduce time, alone: the sum of the
 * records under its name (one per bucket from a grouped NCCL launch; several
 * where a bucket was issued as one call per tensor, which a single entry per
 * name would have cut to its last).
 */
function measuredReductions(kernels: KernelStat[], alone: Map<KernelStat, { ms: number }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of kernels) out[k.layer] = (out[k.layer] ?? 0) + alone.get(k)!.ms;
  return out;
}

export interface StepModel {
  dataMs: number;
  compute: ComputeTask[];
  gradients: GradientReady[];
  comm: CommModel;
  contention: { compute: number; memory: number; comm: number; uncovered: number };
  /** Notes on what the model assumed (shown with predictions). */
  notes: string[];
}

/** Fraction of [start, end) covered by the intervals. */
function coveredFraction(start: number, end: number, intervals: { start: number; end: number }[]): number {
  if (end <= start) return 0;
  let covered = 0;
  for (const i of intervals) covered += Math.max(0, Math.min(end, i.end) - Math.max(start, i.start));
  return Math.min(1, covered / (end - start));
}

/**
 * Mean kernel durations (and the host gaps before them) with the contention
 * taken out: a kernel that overlapped communication for a fraction f of its
 * time ran (1 + kappa * f) slower; so did its gap, by the fraction of the gap
 * covered. In an overlapped run every compute kernel also ran (1 + uncovered)
 * slower. The reduction's kernels take their medians (see below).
 */
export function aloneDurations(
  kernels: KernelStat[], contention: { compute: number; memory?: number; comm: number; uncovered?: number }, overlapped: boolean,
): Map<KernelStat, { ms: number; gapMs: number }> {
  const background = overlapped ? 1 + uncoveredSlowdown(contention) : 1;
  const commIv = kernels.filter((k) => k.pass === 'comm' && k.op === 'allreduce').map((k) => ({ start: k.startMs, end: k.startMs + k.meanMs }));
  const computeIv = kernels.filter((k) => k.pass !== 'comm').map((k) => ({ start: k.startMs, end: k.startMs + k.meanMs }));
  const out = new Map<KernelStat, { ms: number; gapMs: number }>();
  for (const k of kernels) {
    const isComm = k.pass === 'comm';
    const other = isComm ? computeIv : commIv;
    const kappa = isComm ? (k.op === 'allreduce' ? contention.comm : 0) : kappaFor(k.op, contention);
    const f = kappa > 0 ? coveredFraction(k.startMs, k.startMs + k.meanMs, other) : 0;
    const fGap = kappa > 0 && !isComm ? coveredFraction(k.startMs - k.gapMs, k.startMs, other) : 0;
    const b = isComm ? 1 : background;
    // Means for compute (sums of means are exact along a stream); medians for the
    // reduction's many small kernels, which a disturbed iteration inflates most.
    const ms = isComm ? k.medianMs : k.meanMs;
    out.set(k, { ms: ms / (1 + kappa * f) / b, gapMs: k.gapMs / (1 + kappa * fGap) / b });
  }
  return out;
}

/** Least-squares line through (bytes, ms). */
function fitLine(points: { bytes: number; ms: number }[]): { fixedMs: number; msPerByte: number } {
  if (points.length === 0) return { fixedMs: 0, msPerByte: 0 };
  const n = points.length;
  const mx = points.reduce((s, p) => s + p.bytes, 0) / n;
  const my = points.reduce((s, p) => s + p.ms, 0) / n;
  const sxx = points.reduce((s, p) => s + (p.bytes - mx) ** 2, 0);
  const sxy = points.reduce((s, p) => s + (p.bytes - mx) * (p.ms - my), 0);
  const slope = sxx > 0 ? Math.max(0, sxy / sxx) : 0;
  return { fixedMs: Math.max(0, my - slope * mx), msPerByte: slope };
}

/** Whether the run reduced its gradients beside backward (on a communication stream). */
export function isOverlapped(run: Run): boolean {
  const r = run.config.reduction;
  return r !== undefined && r.schedule === 'overlapped' && r.workers > 1;
}

/** The network a run trained. */
export function runGraph(run: Run): ResNetGraph {
  const c = run.config;
  return resnet50Graph({ batch: c.batch, resolution: c.resolution, width: c.width, classes: c.classes });
}

export function modelFromRun(run: Run): StepModel {
  const notes: string[] = [];
  const contention = {
    compute: run.contention?.compute ?? 0, memory: run.contention?.memory ?? run.contention?.compute ?? 0, comm: run.contention?.comm ?? 0,
    uncovered: uncoveredSlowdown(run.contention),
  };
  if (!run.contention && run.config.reduction) notes.push('no contention probe in this run (only the local communicator runs one; not gloo, nccl or a single worker): compute and communication assumed not to slow each other');
  const alone = aloneDurations(run.kernels, contention, isOverlapped(run));

  const compute: ComputeTask[] = [];
  const computeKernels = run.kernels.filter((k) => k.stream === 'compute' && k.pass !== 'comm' && k.phase !== 'reduction');
  const typicalGap = summarize(computeKernels.map((k) => k.gapMs)).median;
  let sawOptimizer = false;
  for (const k of computeKernels) {
    const phase = k.phase as ComputeTask['phase'];
    // The first optimizer kernel's gap holds the wait for the reduction: not host time.
    const gapMs = phase === 'optimizer' && !sawOptimizer ? typicalGap : alone.get(k)!.gapMs;
    if (phase === 'optimizer') sawOptimizer = true;
    compute.push({ op: k.op, pass: k.pass, layer: k.layer, variant: k.variant, phase, ms: alone.get(k)!.ms, gapMs });
  }

  // Where each gradient becomes ready: after its producing kernel (executor.ts records the event there).
  const c = run.config;
  const graph = runGraph(run);
  // Keyed by pass and layer: a convolution's backward-filter may end with a
  // reorder of the gradient, and the gradient is ready after the last of them.
  const producer = new Map<string, string>();
  for (const n of graph.nodes) {
    if (n.kind === 'conv') producer.set(n.weight, `bwd-filter|${n.name}`);
    if (n.kind === 'batchnorm' || n.kind === 'fc') {
      producer.set(n.weight, `bwd|${n.name}`);
      producer.set(n.bias, `bwd|${n.name}`);
    }
  }
  const indexOf = new Map<string, number>();
  compute.forEach((t, i) => indexOf.set(`${t.pass}|${t.layer}`, i)); // the last kernel of each wins
  const gradients: GradientReady[] = [];
  for (const p of [...graph.params].reverse()) {
    if (!p.trainable) continue;
    const after = indexOf.get(producer.get(p.name) ?? '');
    if (after === undefined) throw new UsageError(`this run's kernels do not include the backward kernel of ${p.name}: the run is damaged or from another network`);
    gradients.push({ param: p.name, bytes: 4 * p.shape.reduce((a, b) => a * b, 1), after });
  }
  gradients.sort((a, b) => a.after - b.after); // the order backward produces them

  const r = c.reduction;
  const reduceKernels = run.kernels.filter((k) => k.op === 'allreduce');
  const fit = fitLine(reduceKernels.map((k) => ({ bytes: k.bytes, ms: alone.get(k)!.ms })));
  const bucketMb = r ? r.bucketBytes / 2 ** 20 : 25, firstBucketMb = r ? r.firstBucketBytes / 2 ** 20 : 1;
  const comm: CommModel = {
    comm: r ? r.comm : 'none',
    workers: r?.workers ?? 1,
    schedule: r?.schedule ?? 'serialized',
    bucketMb,
    firstBucketMb,
    link: r?.link,
    allreduce: { ...fit, fitWorkers: r?.workers ?? 1, samples: reduceKernels.length },
    measuredMs: measuredReductions(reduceKernels, alone),
    measuredBuckets: { bucketMb, firstBucketMb },
  };
  if (!r) notes.push('the run had no reduction: communication is modeled by the link alone (no reduction compute)');
  // The median: one slow first batch (a cold page cache) is not a typical iteration's wait.
  const dataMs = run.summary.dataMs.median;
  return { dataMs, compute, gradients, comm, contention, notes };
}
