// `whatif --kernels <plan>`: a plan alone has no durations, so the
// convolutions it changes are measured now with the conv microbenchmark, at
// the run's own shapes, each checked against the reference first. The run's
// own variant is measured beside each (same layers), so that the prediction
// can correct for convolutions running slower in the step than alone.
// A CUDA run's plan is measured on the GPU (bench/conv-bench-cuda.ts, CUDA
// events, the run's dtype and layout); a CPU run's with cold caches. A plan
// may name a variant per pass (`layer/pass=variant`, as step --save-plan
// writes): each changed pass is measured with its own variant.
import { benchConv, type ConvBenchRow } from '../bench/conv-bench';
import { benchConvCuda } from '../bench/conv-bench-cuda';
import { UsageError } from '../errors';
import { resnet50Convs } from '../model/resnet50';
import { addon } from '../native';
import { CONV_PASSES } from '../ops/conv';
import type { ConvPass } from '../../binding';
import { variantFor, type Plan, type PlanOp } from '../plan/plan';
import type { Run } from '../run/training';
import type { BenchFile } from './changes';
import { runGraph } from './step-model';

export interface PlanBench {
  bench: BenchFile;
  /** The plan's variant of a convolution layer's pass. */
  variantOf: (layer: string, pass: ConvPass) => string;
  /** The convolution passes whose variant the plan changes ("res2a_branch2b/fwd"). */
  changed: string[];
  /** The layers among them. */
  changedLayers: string[];
}

export async function benchForPlan(run: Run, plan: Plan, label: string, onProgress?: (done: number, total: number, what: string) => void): Promise<PlanBench> {
  const c = run.config;
  // Only convolutions can be measured alone; other ops' variants need a recorded run.
  const effective = (p: Plan, name: string, kind: PlanOp) => p.layers[name] ?? p.ops[kind];
  const others: { name: string; kind: PlanOp }[] = [
    ...runGraph(run).nodes.filter((n) => n.kind !== 'conv').map((n) => ({ name: n.name, kind: n.kind as PlanOp })),
    { name: 'loss', kind: 'loss' }, { name: 'sgd', kind: 'sgd' },
  ];
  for (const { name, kind } of others) {
    const [want, have] = [effective(plan, name, kind), effective(c.plan, name, kind)];
    if (want !== have) {
      throw new UsageError(`--kernels ${label}: a plan can change convolution variants only (they are measured alone); ${name} (${kind}) is '${want}' in the plan and '${have}' in the run: record a run with the plan (step --kernels ${label} --save) and give that run`);
    }
  }
  const runVariant = new Map(run.kernels.filter((k) => k.op === 'conv').map((k) => [`${k.layer}/${k.pass}`, k.variant]));
  const variantOf = (layer: string, pass: ConvPass) => variantFor(plan, 'conv', layer, pass);
  const layers = resnet50Convs({ batch: c.batch, resolution: c.resolution, width: c.width });
  // Per layer, the passes the run has (conv1 has no bwd-data) whose variant the plan changes.
  const changedPasses = (name: string) => CONV_PASSES.filter((p) => runVariant.has(`${name}/${p}`) && runVariant.get(`${name}/${p}`) !== variantOf(name, p));
  const changed = layers.filter((l) => changedPasses(l.name).length > 0);
  const bench: BenchFile = { batch: c.batch, resolution: c.resolution, rows: [] };
  const cuda = c.backend === 'cuda';
  const peak = changed.length && !cuda ? await addon().measurePeak(1) : undefined;
  let done = 0;
  for (const layer of changed) {
    // The plan's and the run's variants of each changed pass (the run's, to correct for the step's slowdown).
    const passes = changedPasses(layer.name);
    const variants = [...new Set(passes.flatMap((p) => [variantOf(layer.name, p), runVariant.get(`${layer.name}/${p}`)!]))];
    const common = { layers: [layer], passes, variants, repeat: 5, warmup: 1, checkBatch: 1, onProgress: (_d: number, _t: number, what: string) => onProgress?.(done, changed.length, what) };
    const rows: ConvBenchRow[] = cuda
      ? await benchConvCuda({ ...common, dtype: c.dtype ?? 'fp32', layout: run.environment.layout === 'nhwc' ? 'nhwc' : 'nchw' })
      : await benchConv({ ...common, peakGflops: peak!.fmaGflops, cold: true });
    const failed = rows.find((r) => r.status === 'failed-check' && r.variant === variantOf(r.layer, r.pass));
    if (failed) throw new UsageError(`--kernels ${label}: ${failed.layer} ${failed.pass} with ${failed.variant} failed the reference check (error ${failed.maxRelErr.toExponential(2)}); not predicted`);
    const unsupported = rows.find((r) => (r.status === 'unsupported' || r.status === 'error') && r.variant === variantOf(r.layer, r.pass));
    if (unsupported) throw new UsageError(`--kernels ${label}: ${unsupported.layer} ${unsupported.pass} cannot run ${unsupported.variant}: ${unsupported.reason}; not predicted`);
    bench.rows.push(...rows);
    done++;
  }
  return { bench, variantOf, changed: changed.flatMap((l) => changedPasses(l.name).map((p) => `${l.name}/${p}`)), changedLayers: changed.map((l) => l.name) };
}
