// The iteration loop behind `stepscope step`: builds the network and the
// step, feeds synthetic, fixed or real data (raw JPEGs or records through the
// input pipeline, src/data/pipeline.ts), runs warm-up and measured iterations,
// and returns a Run: configuration, environment, per-iteration phases, the
// top kernels, and the last iteration's timeline (savable as JSON).
import type { OutputWriter } from '../options';
import * as os from 'node:os';
import type { KernelRecord, WaitRecord } from '../../binding';
import { summarize, type Summary } from '../bench/stats';
import { paramCount, resnet50Graph, type ResNetGraph } from '../model/graph';
import type { Backend } from '../backend';
import { addon } from '../native';
import { cudaAddon, cudaStatus } from '../native-cuda';
import { HostPins } from './host-pins';
import type { Plan } from '../plan/plan';
import { graphProblem, TrainingStep, type ReductionOptions, type StepLayout } from './executor';
import { ReplicatedStep } from './replicated';
import { GRAPH_WITH_GPUS, type LocalNcclGroup } from '../comm/local-nccl';
import { breakdown, type Breakdown } from '../analysis/breakdown';
import { initWeights, loadBatch, loadWeights, saveWeights } from './weights';
import { kernelKey, kernelStats, type IterationMarks, type KernelStat } from './kernel-stats';
import { CONTENTION_ITERATIONS, contentionFromIterations, type Contention } from './contention';
import { DataPipeline, type DataOptions } from '../data/pipeline';
import { UsageError } from '../errors';
import { checkLinkHolds } from '../schedule/link-hold';
import { writeJsonAtomic } from '../io/json-file';

export interface TrainingConfig {
  /** The backend the step runs on (default cpu). */
  backend?: Backend;
  /** tf32 (cuda): the convolutions may use TF32 tensor cores; the other ops stay fp32. bf16 (cuda): bf16 activations. */
  dtype?: 'fp32' | 'tf32' | 'bf16';
  batch: number;
  resolution: number;
  classes: number;
  width: number;
  iterations: number;
  warmup: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  seed: number;
  plan: Plan;
  weights?: string;
  input?: string;
  saveWeights?: string;
  layout?: StepLayout;
  /** Data-parallel reduction (workers > 1), issue #4. */
  reduction?: ReductionOptions;
  /** This process's rank (with --comm gloo); picks its synthetic batch. */
  rank?: number;
  /** Enqueue each iteration behind a gate of this many ms, to measure the pure host enqueue cost. */
  enqueueProbeMs?: number;
  /** The input pipeline (issue #6); absent: synthetic data. */
  data?: DataOptions;
  /** cuda: the measured iterations replay one CUDA graph captured from the first of them (after warm-up). */
  graph?: boolean;
  /** Write the plan as it ran (each conv pass's variant, library choices resolved) as JSON. */
  savePlan?: string;
  /** Writes --save-weights and --save-plan: a file that fails is reported by the caller at the end, after the other outputs (absent: a failure throws). */
  outputs?: OutputWriter;
  /**
   * cuda, all local GPUs in one process (--gpus N): one replica per GPU of
   * the group, reduced through it (reduction.comm 'nccl', workers = its size).
   * A native handle: not saved with the run.
   */
  localGroup?: LocalNcclGroup;
}

export interface IterationFigures {
  index: number;
  warmup: boolean;
  totalMs: number;
  /** Time the step waited for its batch. */
  dataMs: number;
  /** With --data raw|records: the pipeline's wall time preparing this batch, waited for or not. */
  dataBusyMs?: number;
  /** Bad images replaced in this batch (--on-bad-image skip). */
  skippedImages?: number;
  forwardMs: number;
  backwardMs: number;
  optimizerMs: number;
  reductionMs: number;
  reductionExposedMs: number;
  overlap: number;
  idleMs: number;
  loss: number;
  peakBytes: number;
  /** CUDA: the kernels' device scratch (cuDNN workspaces, weight copies), part of peakBytes. */
  scratchBytes?: number;
  flops: number;
  /** Kernels this iteration ran, and the host time per kernel spent enqueueing them. */
  kernels: number;
  enqueueUsPerKernel: number;
}

export interface KernelSummary {
  op: string;
  pass: string;
  layer: string;
  variant: string;
  medianMs: number;
  calls: number;
}

export const PHASES = ['totalMs', 'dataMs', 'forwardMs', 'backwardMs', 'reductionMs', 'reductionExposedMs', 'overlap', 'optimizerMs', 'idleMs'] as const;
export type PhaseKey = (typeof PHASES)[number];

/** The version of the saved Run format this build writes and reads. */
export const RUN_FORMAT_VERSION = 3;

export interface Run {
  format: 'stepscope-run';
  version: typeof RUN_FORMAT_VERSION;
  createdAt: string;
  config: Omit<TrainingConfig, 'plan'> & { plan: Plan };
  environment: { cpuModel: string; threads: number; node: string; backend: Backend; gpu?: string; /** cuda: GPUs this process ran on (--gpus). */ gpus?: number; dtype: 'fp32' | 'tf32' | 'bf16'; parameters: number; layout: 'nchw' | 'nChw16c' | 'nhwc' };
  iterations: IterationFigures[];
  /** Median, min, max over the measured (non-warm-up) iterations. */
  summary: Record<PhaseKey | 'loss', Summary> & {
    peakBytes: number;
    /** CUDA: the kernels' device scratch at the end of an iteration, the most over the measured ones (part of peakBytes; constant after warm-up). */
    scratchBytes?: number;
    gflops: number;
    enqueueUsPerKernel: number;
    /** With --data raw|records. */
    dataBusyMs?: Summary;
  };
  /** With --data raw|records: the dataset and the samples skipped as bad (each once). */
  data?: {
    kind: 'raw' | 'records'; dataset: string; images: number; classes: number; threads: number; prefetch: number; skipped: { source: string; message: string }[];
    /** CUDA: the pipeline's batch buffers page-locked for the copy to the device (pinned of slots; why not, if refused). */
    hostPins?: { pinned: number; slots: number; reason?: string };
  };
  topKernels: KernelSummary[];
  /** The kernels of the measured iteration whose total was the median, times relative to its start. */
  timeline: KernelRecord[];
  /** That iteration's waits of one stream for another's event (the schedule's dependency edges), same times. */
  waits: WaitRecord[];
  /** That iteration's index, and its phase marks (ns relative to its start). */
  timelineIteration: number;
  marks: IterationMarks;
  /** Per kernel of the iteration, in order per stream: medians over the measured iterations. */
  kernels: KernelStat[];
  /** How compute and communication slow each other on this machine (runs with a local reduction). */
  contention?: Contention;
  /**
   * With --gpus N: the GPUs of the replicas, and each one's span per measured
   * iteration (start to end mark); the rest of the run (timeline, phases,
   * loss) is GPU 0's. `timelines`: the other GPUs' kernels and marks in the
   * same iteration as `timeline`, on the same time axis (for the trace and report).
   */
  replicas?: { devices: number[]; spanMs: Summary[]; timelines: { device: number; timeline: KernelRecord[]; marks: IterationMarks }[] };
}

/**
 * Inputs and labels for iteration `i` of a synthetic run, reproducible from
 * the seed; each data-parallel rank gets its own batch.
 */
export function syntheticBatch(step: TrainingStep, seed: number, i: number, rank = 0): void {
  step.input.fillUniform(seed * 7919 + i + rank * 1_000_003, -2, 2);
  const labels = new Float32Array(step.graph.batch);
  let state = (seed * 2654435761 + i * 40503 + rank * 97) >>> 0;
  for (let k = 0; k < labels.length; k++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    labels[k] = state % step.graph.classes;
  }
  step.labels.write(labels);
}

/** Iterations a run spends on measuring contention (a local reduction among 2+ workers). */
export function contentionIterations(config: Pick<TrainingConfig, 'reduction'>): number {
  const r = config.reduction;
  return r && r.comm === 'local' && r.workers > 1 ? CONTENTION_ITERATIONS : 0;
}

/** Called after each iteration (warm-up too) with its figures and the run's environment (what a partial result needs). */
export type OnIteration = (f: IterationFigures, environment: Run['environment']) => void;

export async function runTraining(config: TrainingConfig, onIteration?: OnIteration): Promise<Run> {
  const graph: ResNetGraph = resnet50Graph({ batch: config.batch, resolution: config.resolution, width: config.width, classes: config.classes });
  const fixed = config.input ? loadBatch(graph, config.input) : undefined;
  // The dataset is opened (and checked) before the model is built: one
  // pipeline per replica of this process (--gpus: replica r reads rank r's share).
  const d = config.data;
  const pipelines: DataPipeline[] = [];
  const closeAll = () => Promise.all(pipelines.map((p) => p.close()));
  if (d && d.kind !== 'synthetic' && !fixed) {
    try {
      for (let r = 0; r < (config.localGroup?.size ?? 1); r++) {
        pipelines.push(new DataPipeline({ ...d, kind: d.kind, dataset: d.dataset! }, config.batch, config.resolution, config.seed,
          config.warmup + contentionIterations(config) + config.iterations, { rank: (config.rank ?? 0) + r, workers: config.reduction?.workers ?? 1 }));
      }
    } catch (err) {
      await closeAll();
      throw err;
    }
  }
  const pipeline = pipelines[0];
  let step: TrainingStep | ReplicatedStep;
  try {
    if (pipeline && pipeline.classes > config.classes) {
      throw new UsageError(`--classes ${config.classes} is not allowed with this dataset: it has ${pipeline.classes} classes (give --classes ${pipeline.classes} or more)`);
    }
    const cannotGraph = config.graph ? graphProblem(config.backend ?? 'cpu', config.warmup) : null;
    if (cannotGraph) throw new UsageError(cannotGraph);
    if (config.reduction) checkLinkHolds(graph, config.reduction); // step, sweep and reproduce alike, before any work
    step = makeStep(config, graph);
  } catch (err) {
    await closeAll();
    throw err;
  }
  step.enqueueProbeMs = config.enqueueProbeMs ?? 0;
  // Every replica starts from the same weights (as DDP broadcasts rank 0's).
  for (const replica of replicasOf(step)) {
    if (config.weights) loadWeights(replica, config.weights);
    else initWeights(replica, config.seed);
    if (fixed) {
      replica.input.write(fixed.input);
      replica.labels.write(fixed.labels);
    }
  }
  // CUDA: each ring slot's host memory page-locked for its copy to the device, all before the first iteration (a
  // registration costs ms: not inside a measured one), released before the pipelines free them.
  const pins = pipelines.length > 0 && step.backend === 'cuda' ? new HostPins(cudaAddon()) : undefined;
  for (const p of pins ? pipelines : []) for (const b of p.ringBuffers) pins!.view(b);
  try {
    return await iterate(config, step, graph, fixed !== undefined, pipelines, pins, onIteration);
  } finally {
    pins?.release();
    await closeAll();
  }
}

/** The step of one GPU (or the CPU), or one replica per GPU of a local NCCL group. */
function makeStep(config: TrainingConfig, graph: ResNetGraph): TrainingStep | ReplicatedStep {
  const optimizer = { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay };
  const group = config.localGroup;
  if (!group) return new TrainingStep(graph, config.plan, optimizer, config.layout, config.reduction, config.backend, config.dtype);
  const r = config.reduction;
  if (config.backend !== 'cuda' || !r || r.comm !== 'nccl') throw new UsageError('--gpus needs --backend cuda and the nccl communicator');
  if (config.graph) throw new UsageError(`--graph is not allowed with --gpus 2 or more: ${GRAPH_WITH_GPUS}`);
  return new ReplicatedStep(graph, config.plan, optimizer, config.layout ?? 'auto',
    { schedule: r.schedule, bucketBytes: r.bucketBytes, firstBucketBytes: r.firstBucketBytes, link: r.link }, config.dtype ?? 'fp32', group);
}

/**
 * Median, min and max of each phase over measured iterations (at least one); `withData`: a pipeline's busy time too.
 * The median total is an iteration's (the lower middle for an even count): the one a run saves as its timeline, so
 * an attribution of two runs adds up to the printed difference.
 */
export function summarizeIterations(measured: readonly IterationFigures[], withData: boolean): Run['summary'] {
  const pick = (k: keyof IterationFigures) => summarize(measured.map((f) => f[k] as number));
  const phases = Object.fromEntries(PHASES.map((k) => [k, pick(k)])) as Record<PhaseKey, Summary>;
  phases.totalMs.median = lowerMiddle(measured).totalMs;
  return {
    ...phases,
    loss: pick('loss'),
    peakBytes: Math.max(...measured.map((f) => f.peakBytes)),
    ...(measured.some((f) => f.scratchBytes !== undefined) ? { scratchBytes: Math.max(...measured.map((f) => f.scratchBytes ?? 0)) } : {}),
    gflops: summarize(measured.map((f) => f.flops / (f.totalMs * 1e6))).median,
    enqueueUsPerKernel: summarize(measured.map((f) => f.enqueueUsPerKernel)).median,
    ...(withData ? { dataBusyMs: summarize(measured.map((f) => f.dataBusyMs ?? 0)) } : {}),
  };
}

/** The iteration whose total is the median (the lower middle for an even count). */
function lowerMiddle<F extends { totalMs: number }>(iterations: readonly F[]): F {
  return [...iterations].sort((a, b) => a.totalMs - b.totalMs)[Math.floor((iterations.length - 1) / 2)];
}

function environmentOf(config: TrainingConfig, step: TrainingStep | ReplicatedStep, graph: ResNetGraph): Run['environment'] {
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    threads: addon().buildInfo().threads, // the host's threads (the CPU addon's), on both backends
    node: process.version,
    backend: step.backend,
    ...(step.backend === 'cuda' ? { gpu: cudaStatus().info?.device?.name, gpus: replicasOf(step).length } : {}),
    dtype: config.dtype ?? 'fp32',
    parameters: paramCount(graph),
    layout: step.layout,
  };
}

function replicasOf(step: TrainingStep | ReplicatedStep): TrainingStep[] {
  return step instanceof ReplicatedStep ? step.replicas : [step];
}

async function iterate(
  config: TrainingConfig, step: TrainingStep | ReplicatedStep, graph: ResNetGraph, fixed: boolean, pipelines: DataPipeline[],
  pins: HostPins | undefined, onIteration?: OnIteration,
): Promise<Run> {
  const native = step.native;
  const pipeline = pipelines[0]; // what the run reports of the dataset (every replica reads the same one)

  // With a local reduction, a few iterations after the warm-up run the reduction in the other arrangement:
  // both arrangements of the same kernels give the contention (run/contention.ts).
  const schedule = config.reduction?.schedule ?? 'serialized';
  const other = schedule === 'overlapped' ? 'serialized' : 'overlapped';
  const probeCount = contentionIterations(config);
  const isProbe = (i: number) => i >= config.warmup && i < config.warmup + probeCount;
  const inOther: { index: number; records: KernelRecord[]; waits: WaitRecord[]; figures: Breakdown }[] = [];
  const iterations: IterationFigures[] = [];
  const recorded: { index: number; records: KernelRecord[]; waits: WaitRecord[]; marks: IterationMarks; others?: { device: number; records: KernelRecord[]; marks: IterationMarks }[] }[] = [];
  const perKernel = new Map<string, { k: Omit<KernelSummary, 'medianMs' | 'calls'>; times: number[] }>();
  const environment = environmentOf(config, step, graph);
  native.timelineDrain();
  native.waitsDrain();
  for (let i = 0; i < config.warmup + probeCount + config.iterations; i++) {
    // Warm-up and contention iterations run eagerly; the measured ones replay one graph.
    if (config.graph && i === config.warmup + probeCount) step.useGraph = true;
    const dataStart = native.nowNs();
    let dataBusyMs: number | undefined, skippedImages: number | undefined;
    let input = step.input;
    if (pipeline) {
      // With prefetch: usually ready already. One batch per replica (--gpus), each on its GPU.
      const batches = await Promise.all(pipelines.map((p) => p.take(i)));
      replicasOf(step).forEach((replica, r) => {
        const b = batches[r];
        if (replica.backend === 'cuda') {
          // The pipeline decodes into host memory: the batch is copied to the device, inside the data time
          // (from the host buffer itself, page-locked: run/host-pins.ts).
          replica.input.write(pins ? pins.view(b.input) : b.input.view());
        } else {
          input = b.input; // filled in place by the pipeline: nothing to copy
        }
        replica.labels.write(b.labels);
      });
      dataBusyMs = Math.max(...batches.map((b) => b.busyMs));
      skippedImages = batches.reduce((n, b) => n + b.skipped.length, 0);
    } else if (!fixed) {
      // Replica r of a --gpus run takes rank r's batch, as a launch would.
      replicasOf(step).forEach((replica, r) => syntheticBatch(replica, config.seed, i, (config.rank ?? 0) + r));
    }
    const dataMs = (native.nowNs() - dataStart) / 1e6;
    const r = await step.iteration(i, input, isProbe(i) ? other : undefined);
    let records = native.timelineDrain().filter((k) => k.layer !== 'enqueue-probe'); // the gate is not part of the step
    let waits = native.waitsDrain().filter((w) => w.sourceStream !== 'gate');
    let others: { device: number; records: KernelRecord[]; marks: IterationMarks }[] | undefined;
    if (step instanceof ReplicatedStep) {
      others = step.otherReplicas(records);
      records = step.firstReplicaRecords(records);
      waits = step.firstReplicaWaits(waits);
    }
    if (isProbe(i)) {
      if (i > 0) inOther.push({ index: i, records, waits, figures: breakdown(records, r, dataMs) }); // the very first iteration is a cold start
      continue;
    }
    const figures: IterationFigures = {
      index: i,
      warmup: i < config.warmup,
      ...breakdown(records, r, dataMs),
      ...(pipeline ? { dataBusyMs, skippedImages } : {}),
      loss: r.loss,
      peakBytes: r.peakBytes,
      ...(r.scratchBytes !== undefined ? { scratchBytes: r.scratchBytes } : {}),
      kernels: records.length,
      enqueueUsPerKernel: r.enqueueNs / 1e3 / Math.max(1, records.length),
      flops: records.reduce((s, k) => s + k.flops, 0),
    };
    iterations.push(figures);
    onIteration?.(figures, environment);
    if (figures.warmup) continue;
    recorded.push({ index: i, records, waits, marks: r, others });
    const perIteration = new Map<string, number>();
    for (const k of records) {
      const key = kernelKey(k);
      perIteration.set(key, (perIteration.get(key) ?? 0) + (k.endNs - k.startNs) / 1e6);
      if (!perKernel.has(key)) perKernel.set(key, { k: { op: k.op, pass: k.pass, layer: k.layer, variant: k.variant }, times: [] });
    }
    for (const [key, ms] of perIteration) perKernel.get(key)!.times.push(ms);
  }
  const mine = recorded;
  const contention = probeCount > 0 && inOther.length > 0
    ? contentionFromIterations(schedule === 'overlapped' ? mine : inOther, schedule === 'overlapped' ? inOther : mine,
      `${inOther.length} iteration(s) with the reduction ${other} (index ${inOther.map((x) => x.index).join(', ')}) against the ${mine.length} measured ${schedule} ones`)
    : undefined;
  if (contention) contention.other = { schedule: other, totalMs: inOther.map((x) => x.figures.totalMs), iterations: inOther.map((x) => x.figures) };
  const write = (option: string, file: string, body: () => void) => (config.outputs ? config.outputs.write(option, file, body) : body());
  if (config.saveWeights) write('--save-weights', config.saveWeights, () => saveWeights(replicasOf(step)[0], config.saveWeights!));
  if (config.savePlan) write('--save-plan', config.savePlan, () => writeJsonAtomic(config.savePlan!, step.resolvedPlan()));
  step.releaseDeviceMemory(); // now: a second run (--compare) must not find this one's buffers

  const measured = iterations.filter((f) => !f.warmup);
  // The timeline shown and saved: the measured iteration with the median total.
  const median = recorded.find((it) => it.index === lowerMiddle(measured).index)!;
  const t0 = median.marks.startNs;
  // Times from the median iteration's start (every GPU's, with --gpus).
  const shiftRecords = (records: KernelRecord[]) => records.map((k) => ({ ...k, startNs: k.startNs - t0, endNs: k.endNs - t0 }));
  const shiftMarks = (x: IterationMarks): IterationMarks =>
    ({ startNs: x.startNs - t0, forwardEndNs: x.forwardEndNs - t0, backwardEndNs: x.backwardEndNs - t0, reducedNs: x.reducedNs - t0, endNs: x.endNs - t0 });
  const timeline = shiftRecords(median.records);
  const waits = median.waits.map((w) => ({ ...w, startNs: w.startNs - t0, endNs: w.endNs - t0, firedNs: w.firedNs < 0 ? -1 : w.firedNs - t0 }));
  const marks = shiftMarks(median.marks);
  const summary = summarizeIterations(measured, pipeline !== undefined);
  const topKernels = [...perKernel.values()]
    .map(({ k, times }) => ({ ...k, medianMs: summarize(times).median, calls: times.length }))
    .sort((a, b) => b.medianMs - a.medianMs);
  return {
    format: 'stepscope-run',
    version: RUN_FORMAT_VERSION,
    createdAt: new Date().toISOString(),
    config: { ...config, localGroup: undefined, outputs: undefined }, // a native handle and a writer, not data
    environment,
    iterations,
    summary,
    ...(pipeline ? {
      data: {
        kind: pipeline.options.kind, dataset: pipeline.options.dataset, images: pipeline.loader.length, classes: pipeline.classes,
        threads: pipeline.loader.threads, prefetch: pipeline.options.prefetch,
        skipped: pipelines.flatMap((p) => [...p.skipped].map(([source, message]) => ({ source, message }))),
        ...(pins ? { hostPins: pins.status() } : {}),
      },
    } : {}),
    topKernels,
    timeline,
    waits,
    timelineIteration: median.index,
    marks,
    kernels: kernelStats(recorded),
    contention,
    ...(step instanceof ReplicatedStep ? {
      replicas: {
        devices: step.group.devices,
        // The measured iterations' spans (the warm-ups came first).
        spanMs: step.group.devices.map((_, d) => summarize(step.spansMs.slice(config.warmup).map((spans) => spans[d]))),
        timelines: (median.others ?? []).map((o) => ({
          device: o.device,
          timeline: shiftRecords(o.records),
          marks: shiftMarks(o.marks),
        })),
      },
    } : {}),
  };
}
