// The changes a what-if applies to a StepModel: kernel durations from another
// run or from a conv benchmark, and the reduction's schedule, buckets,
// workers and modeled link.
import type { ConvPass } from '../../binding';
import { UsageError } from '../errors';
import type { Run } from '../run/training';
import { aloneDurations, isOverlapped, type StepModel } from './step-model';

export interface KernelChange {
  /** Tasks whose duration changed, and those the source had no figure for. */
  replaced: number;
  unmatched: string[];
  source: string;
}

const taskKey = (t: { op: string; pass: string; layer: string }) => `${t.op}|${t.pass}|${t.layer}`;

/**
 * Takes every compute kernel's alone duration (and host gap) from another run
 * of the same network. Kernels are matched by op, pass and layer; where one
 * key stands for several kernels (a convolution's reorders), the source's
 * total for the key is shared among the base's kernels of that key.
 */
export function kernelsFromRun(model: StepModel, source: Run, label: string): { model: StepModel; change: KernelChange } {
  const a = model, b = source.config;
  const alone = aloneDurations(source.kernels, { compute: source.contention?.compute ?? 0, memory: source.contention?.memory, comm: source.contention?.comm ?? 0, uncovered: source.contention?.uncovered }, isOverlapped(source));
  const byKey = new Map<string, { ms: number; variant: string }>();
  for (const k of source.kernels) {
    if (k.pass === 'comm' || k.phase === 'reduction') continue;
    const e = byKey.get(taskKey(k)) ?? { ms: 0, variant: k.variant };
    e.ms += alone.get(k)!.ms;
    byKey.set(taskKey(k), e);
  }
  const baseCount = new Map<string, number>();
  for (const t of a.compute) baseCount.set(taskKey(t), (baseCount.get(taskKey(t)) ?? 0) + 1);
  const unmatched: string[] = [];
  let replaced = 0;
  const compute = a.compute.map((t) => {
    const s = byKey.get(taskKey(t));
    if (!s) {
      unmatched.push(taskKey(t));
      return t;
    }
    replaced++;
    const n = baseCount.get(taskKey(t))!;
    return { ...t, ms: s.ms / n, variant: s.variant };
  });
  // A convolution's layout reorders come and go with its variant: reorders
  // the source lacks take no time; the source's reorders the base lacks go
  // into the convolution's own time.
  for (let i = 0; i < compute.length; i++) {
    const t = compute[i];
    if (t.op === 'reorder' && !byKey.has(taskKey(t)) && byKey.has(`conv|${t.pass}|${t.layer}`)) compute[i] = { ...t, ms: 0, gapMs: 0 };
    if (t.op === 'conv') {
      const extra = byKey.get(`reorder|${t.pass}|${t.layer}`);
      if (extra !== undefined && !baseCount.has(`reorder|${t.pass}|${t.layer}`)) compute[i] = { ...t, ms: t.ms + extra.ms };
    }
  }
  const note = `kernel durations from ${label} (batch ${b.batch}, ${b.resolution}x${b.resolution}); ${replaced} of ${a.compute.length} kernels matched`;
  return { model: { ...a, compute, notes: [...a.notes, note] }, change: { replaced, unmatched, source: label } };
}

export interface BenchFile {
  /** What `bench conv --json` records of how it measured (absent in the benches whatif measures itself). */
  backend?: 'cpu' | 'cuda';
  dtype?: string;
  layout?: string;
  batch: number;
  resolution?: number;
  rows: { layer: string; pass: string; variant: string; status: string; medianMs: number | null; reorderMs?: number }[];
}

/**
 * Kernel times from elsewhere (a benchmark, another run) stand for this run's
 * only when measured the same way: on its backend, and on CUDA in its
 * precision and layout (cuDNN's kernels differ between them; on the CPU a
 * layout change is a reorder, which the model handles). Else exit 2, naming both.
 */
export function checkKernelSource(
  file: string,
  source: { backend?: string; dtype?: string; layout?: string; batch?: number; resolution?: number; width?: number },
  run: Run,
): void {
  const runBackend = run.config.backend ?? 'cpu';
  const differ: string[] = [];
  if (source.batch !== undefined && source.batch !== run.config.batch) differ.push(`batch ${source.batch}, the run's ${run.config.batch}`);
  if (source.resolution !== undefined && source.resolution !== run.config.resolution) differ.push(`resolution ${source.resolution}, the run's ${run.config.resolution}`);
  if (source.backend !== undefined && source.backend !== runBackend) differ.push(`backend ${source.backend}, the run's ${runBackend}`);
  if (runBackend === 'cuda' && source.backend === 'cuda') {
    const runDtype = run.environment.dtype ?? 'fp32';
    if (source.dtype !== undefined && source.dtype !== runDtype) differ.push(`dtype ${source.dtype}, the run's ${runDtype}`);
    if (source.layout !== undefined && source.layout !== run.environment.layout) differ.push(`layout ${source.layout}, the run's ${run.environment.layout}`);
  }
  if (source.width !== undefined && source.width !== run.config.width) differ.push(`width ${source.width}, the run's ${run.config.width}`);
  if (differ.length > 0) throw new UsageError(`--kernels: '${file}' was measured with ${differ.join('; ')}: its kernel times do not stand for this run's`);
}

/**
 * Takes convolution durations from `stepscope bench conv --json` output, for
 * one variant or the fastest per layer and pass (`best`).
 */
export function kernelsFromBench(model: StepModel, bench: BenchFile, file: string, variant: string | ((layer: string, pass: ConvPass) => string), run: Run): { model: StepModel; change: KernelChange } {
  checkKernelSource(file, bench, run);
  const variants = [...new Set(bench.rows.map((r) => r.variant))];
  if (typeof variant === 'string' && variant !== 'best' && !variants.includes(variant)) throw new UsageError(`--variant '${variant}' is not in '${file}'; it holds: ${variants.join(', ')}, or best`);
  // One variant, the fastest ('best'), or the one a plan names for the layer's pass.
  const wanted = (r: { layer: string; pass: string; variant: string }) => (typeof variant === 'function' ? r.variant === variant(r.layer, r.pass as ConvPass) : variant === 'best' || r.variant === variant);
  const best = new Map<string, { ms: number; reorderMs: number; variant: string }>();
  for (const r of bench.rows) {
    if (r.status !== 'ok' || r.medianMs === null || !wanted(r)) continue;
    const key = `conv|${r.pass}|${r.layer}`;
    const prev = best.get(key);
    const reorderMs = r.reorderMs ?? 0;
    if (!prev || r.medianMs + reorderMs < prev.ms + prev.reorderMs) best.set(key, { ms: r.medianMs, reorderMs, variant: r.variant });
  }
  // In the step a convolution runs slower than alone in the benchmark (other
  // kernels' data in the caches). When the benchmark also holds the run's own
  // variant, the ratio of the two, per pass, corrects the benchmark's times.
  const ratio = new Map<string, number>();
  const inStep = new Map<string, number>();
  for (const t of model.compute) if (t.op === 'conv' || t.op === 'reorder') inStep.set(`${t.pass}|${t.layer}`, (inStep.get(`${t.pass}|${t.layer}`) ?? 0) + t.ms);
  const runVariant = new Map(model.compute.filter((t) => t.op === 'conv').map((t) => [`${t.pass}|${t.layer}`, t.variant]));
  const sums = new Map<string, { step: number; bench: number }>();
  for (const r of bench.rows) {
    const key = `${r.pass}|${r.layer}`;
    if (r.status !== 'ok' || r.medianMs === null || runVariant.get(key) !== r.variant || !inStep.has(key)) continue;
    const s = sums.get(r.pass) ?? { step: 0, bench: 0 };
    s.step += inStep.get(key)!;
    s.bench += r.medianMs + (r.reorderMs ?? 0);
    sums.set(r.pass, s);
  }
  for (const [pass, s] of sums) if (s.bench > 0) ratio.set(pass, s.step / s.bench);
  for (const [key, b] of best) {
    const f = ratio.get(key.split('|')[1]) ?? 1;
    best.set(key, { ...b, ms: b.ms * f, reorderMs: b.reorderMs * f });
  }
  const unmatched: string[] = [];
  let replaced = 0;
  // The benchmark's reorders (per call, around the convolution) replace the run's.
  const reordersOf = new Map<string, number>();
  for (const t of model.compute) if (t.op === 'reorder') reordersOf.set(`conv|${t.pass}|${t.layer}`, (reordersOf.get(`conv|${t.pass}|${t.layer}`) ?? 0) + 1);
  const compute = model.compute.map((t) => {
    const key = `conv|${t.pass}|${t.layer}`;
    const s = best.get(key);
    if (t.op === 'reorder') return s ? { ...t, ms: s.reorderMs / reordersOf.get(key)!, gapMs: s.reorderMs > 0 ? t.gapMs : 0 } : t;
    if (t.op !== 'conv') return t;
    if (!s) {
      unmatched.push(taskKey(t));
      return t;
    }
    replaced++;
    return { ...t, ms: s.ms + (reordersOf.has(key) ? 0 : s.reorderMs), variant: s.variant };
  });
  const scaled = [...ratio].map(([pass, f]) => `${pass} x${f.toFixed(2)}`).join(', ');
  const note = `convolution durations from the benchmark ${file} (${typeof variant === 'string' ? variant : "the plan's variants"}); ${replaced} convolution kernels matched` +
    (scaled ? `; scaled by in-step / benchmark time of the run's own variant: ${scaled}` : "; the benchmark lacks the run's own variant, so its times are used as measured alone");
  return { model: { ...model, compute, notes: [...model.notes, note] }, change: { replaced, unmatched, source: file } };
}

export interface CommChange {
  schedule?: 'serialized' | 'overlapped';
  bucketMb?: number;
  firstBucketMb?: number;
  workers?: number;
  link?: { gbps: number; latencyUs: number };
}

export function withComm(model: StepModel, change: CommChange): StepModel {
  const comm = { ...model.comm };
  if (change.schedule) comm.schedule = change.schedule;
  if (change.bucketMb !== undefined) comm.bucketMb = change.bucketMb;
  if (change.firstBucketMb !== undefined) comm.firstBucketMb = change.firstBucketMb;
  if (change.workers !== undefined) comm.workers = change.workers;
  if (change.link) comm.link = change.link;
  if (comm.workers > 1 && comm.comm === 'none' && !comm.link) throw new UsageError('the run had no reduction: give --link (and --latency) to model one');
  return { ...model, comm };
}
