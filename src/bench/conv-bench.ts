// The convolution microbenchmark: for each selected ResNet-50 layer, pass and
// variant, check against the reference first (at a small batch, same layer
// shape), then time at the requested batch. Times come from the kernel
// timeline (the convolution alone); a oneDNN variant's reorders are timed as
// kernels of their own and reported beside it. Layers with identical shapes
// are measured once and shown for each of them.
import type { ConvKernel, ConvPass, ConvShape, KernelRecord, Stream } from '../../binding';
import { describeShape, type ConvLayer } from '../model/resnet50';
import { addon } from '../native';
import { checkConvVariants, randomConvTensors, type ConvTensors } from '../ops/conv';
import { summarize } from './stats';

export interface ConvBenchOptions {
  layers: ConvLayer[];
  passes: readonly ConvPass[];
  variants: readonly string[];
  repeat: number;
  warmup: number;
  /** Batch for the correctness check (the layer's shape otherwise). */
  checkBatch: number;
  peakGflops: number;
  seed?: number;
  /** Evict the caches before each run: in a step, the kernels before this one pushed its data out. */
  cold?: boolean;
  onProgress?: (done: number, total: number, what: string) => void;
}

/** Bigger than the last-level cache of the machines we run on: writing it evicts what a kernel left there. */
const FLUSH_FLOATS = 24 * 2 ** 20;

export interface ConvBenchRow {
  layer: string;
  /** Set when this layer's shape was measured under another layer's name. */
  sameShapeAs?: string;
  shape: ConvShape;
  shapeText: string;
  pass: ConvPass;
  variant: string;
  implementation: string;
  /**
   * 'ok'; 'failed-check' (not timed; CUDA: or its timed output differed from the reference at the timed batch); 'unsupported' (CUDA: the variant cannot run this layer and
   * pass; see reason); 'error' (CUDA: cuDNN failed the call with another status; see reason; not timed).
   */
  status: 'ok' | 'failed-check' | 'unsupported' | 'error';
  /** Why a row is unsupported or an error, in the library's words. */
  reason?: string;
  /** Precision of the products (CUDA rows): fp32, tf32 or bf16. */
  precision?: string;
  medianMs: number | null;
  minMs: number | null;
  maxMs: number | null;
  gflops: number | null;
  pctPeak: number | null;
  maxRelErr: number;
  tolerance: number;
  /**
   * CUDA: the timed calls' output against an fp32 cuDNN kernel's at the timed batch (a variant may run another
   * algorithm or split K there than at --check-batch); null where not checked (then timedCheck says why).
   */
  timedMaxRelErr?: number | null;
  /** Set on a row that failed at the timed batch: that check's tolerance (timedMaxRelErr null there: a non-finite output). */
  timedTolerance?: number;
  timedCheck?: string;
  /** Median per-call time of the layout reorders around the kernel (oneDNN), 0 if none. */
  reorderMs: number;
}

function shapeKey(shape: ConvShape): string {
  return [shape.c, shape.h, shape.w, shape.k, shape.r, shape.s, shape.stride, shape.pad].join(',');
}

/** Groups layers by shape, keeping model order; the first layer names the group. */
export function uniqueShapes(layers: ConvLayer[]): { first: ConvLayer; all: ConvLayer[] }[] {
  const groups = new Map<string, { first: ConvLayer; all: ConvLayer[] }>();
  for (const layer of layers) {
    const key = shapeKey(layer.shape);
    const group = groups.get(key);
    if (group) group.all.push(layer);
    else groups.set(key, { first: layer, all: [layer] });
  }
  return [...groups.values()];
}

const ms = (r: KernelRecord) => (r.endNs - r.startNs) / 1e6;

/**
 * Runs a prepared kernel once to completion and returns its times from the
 * timeline: the convolution itself and any layout reorders around it.
 */
export async function timeConvOnce(
  kernel: ConvKernel,
  stream: Stream,
  t: ConvTensors,
): Promise<{ convMs: number; reorderMs: number }> {
  const native = addon();
  native.timelineDrain();
  kernel.enqueue(stream, t.x, t.w, t.y);
  await stream.synchronize();
  const records = native.timelineDrain();
  return {
    convMs: records.filter((r) => r.op === 'conv').reduce((sum, r) => sum + ms(r), 0),
    reorderMs: records.filter((r) => r.op === 'reorder').reduce((sum, r) => sum + ms(r), 0),
  };
}

export async function benchConv(options: ConvBenchOptions): Promise<ConvBenchRow[]> {
  const native = addon();
  const stream = new native.Stream('bench');
  const groups = uniqueShapes(options.layers);
  const rows: ConvBenchRow[] = [];
  const total = groups.length * options.passes.length * options.variants.length;
  let done = 0;
  const seed = options.seed ?? 1;
  const flush = options.cold ? new native.Buffer(FLUSH_FLOATS) : undefined;

  for (const group of groups) {
    const shape = group.first.shape;
    const checkShape = { ...shape, n: Math.min(shape.n, options.checkBatch) };
    const tensors = randomConvTensors(shape, seed);
    for (const pass of options.passes) {
      const checks = await checkConvVariants(stream, checkShape, pass, options.variants, seed + 7);
      const timed: { kernel: ConvKernel; base: Omit<ConvBenchRow, 'layer' | 'status' | 'medianMs' | 'minMs' | 'maxMs' | 'gflops' | 'pctPeak' | 'reorderMs'>; convTimes: number[]; reorderTimes: number[] }[] = [];
      for (const check of checks) {
        const variant = check.variant;
        options.onProgress?.(done++, total, `${group.first.name} ${pass} ${variant}`);
        const kernel = new native.ConvKernel(shape, pass, variant, group.first.name);
        const base = {
          shape,
          shapeText: describeShape(shape),
          pass,
          variant,
          implementation: kernel.describe().implementation,
          maxRelErr: check.maxRelErr,
          tolerance: check.tolerance,
        };
        if (!check.ok) {
          const failed = { ...base, status: 'failed-check' as const, medianMs: null, minMs: null, maxMs: null };
          for (const layer of group.all) {
            rows.push({ ...failed, layer: layer.name, gflops: null, pctPeak: null, reorderMs: 0, ...sameAs(layer, group.first) });
          }
          continue;
        }
        timed.push({ kernel, base, convTimes: [], reorderTimes: [] });
      }
      // The variants' runs interleaved (A B C A B C ...): a second in which
      // the machine runs slow costs every variant alike, not the one timed then.
      for (let i = 0; i < options.warmup + options.repeat; i++) {
        for (const t of timed) {
          flush?.fill(i); // untimed: the timeline holds the kernel alone
          const run = await timeConvOnce(t.kernel, stream, tensors);
          if (i < options.warmup) continue;
          t.convTimes.push(run.convMs);
          t.reorderTimes.push(run.reorderMs);
        }
      }
      for (const { kernel, base, convTimes, reorderTimes } of timed) {
        const time = summarize(convTimes);
        const gflops = kernel.describe().flops / (time.median * 1e6);
        for (const layer of group.all) {
          rows.push({
            ...base,
            layer: layer.name,
            ...sameAs(layer, group.first),
            status: 'ok',
            medianMs: time.median,
            minMs: time.min,
            maxMs: time.max,
            gflops,
            pctPeak: (100 * gflops) / options.peakGflops,
            reorderMs: summarize(reorderTimes).median,
          });
        }
      }
    }
  }
  flush?.release();
  return sortBenchRows(rows, options);
}

/** Model order, then pass, then variant, as a reader scans the table. */
export function sortBenchRows(
  rows: ConvBenchRow[],
  options: { layers: readonly ConvLayer[]; passes: readonly ConvPass[]; variants: readonly string[] },
): ConvBenchRow[] {
  const order = new Map(options.layers.map((l, i) => [l.name, i]));
  const passOrder = new Map(options.passes.map((p, i) => [p, i]));
  const variantOrder = new Map(options.variants.map((v, i) => [v, i]));
  return rows.sort(
    (a, b) =>
      order.get(a.layer)! - order.get(b.layer)! ||
      passOrder.get(a.pass)! - passOrder.get(b.pass)! ||
      variantOrder.get(a.variant)! - variantOrder.get(b.variant)!,
  );
}

function sameAs(layer: ConvLayer, first: ConvLayer): { sameShapeAs?: string } {
  return layer.name === first.name ? {} : { sameShapeAs: first.name };
}

/** A failed row's error as its report says it: at the timed batch when it failed there (CUDA), else at --check-batch. */
export function failedCheckText(r: ConvBenchRow): string {
  if (r.timedTolerance !== undefined) {
    const err = r.timedMaxRelErr === null || r.timedMaxRelErr === undefined ? 'non-finite' : r.timedMaxRelErr.toExponential(2);
    return `error ${err} > ${r.timedTolerance.toExponential(2)} at the timed batch ${r.shape.n}`;
  }
  return `error ${r.maxRelErr.toExponential(2)} > ${r.tolerance.toExponential(2)}`;
}
