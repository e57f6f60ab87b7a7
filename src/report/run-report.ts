// Terminal reports of training runs: one run's phases and top kernels, and
// two runs (serialized vs overlapped) side by side.
import type { Run } from '../run/training';
import { PHASES } from '../run/training';
import { formatTable } from './table';

export const PHASE_LABELS: Record<(typeof PHASES)[number], string> = {
  totalMs: 'total', dataMs: 'data (wait)', forwardMs: 'forward', backwardMs: 'backward', reductionMs: 'reduction',
  reductionExposedMs: 'reduction exposed', overlap: 'overlap %', optimizerMs: 'optimizer', idleMs: 'idle',
};
const phaseValue = (run: Run, k: (typeof PHASES)[number], stat: 'median' | 'min' | 'max') =>
  k === 'overlap' ? 100 * run.summary[k][stat] : run.summary[k][stat];

export function formatComparison(a: Run, b: Run): string {
  const r = a.config.reduction!;
  return [
    `serialized vs overlapped gradient reduction: ${r.workers} workers (--comm ${r.comm}${r.link ? `, modeled link ${r.link.gbps} GB/s, ${r.link.latencyUs} us` : ''}), ` +
      `buckets ${b.config.reduction!.bucketBytes / 2 ** 20} MB (first ${r.firstBucketBytes / 2 ** 20} MB); batch ${a.config.batch} per worker; medians over ${a.config.iterations} iterations`,
    formatTable(PHASES.map((k) => ({ k })), [
      { header: 'phase', value: ({ k }) => PHASE_LABELS[k] },
      { header: 'serialized ms', value: ({ k }) => phaseValue(a, k, 'median'), digits: 1 },
      { header: 'overlapped ms', value: ({ k }) => phaseValue(b, k, 'median'), digits: 1 },
      { header: 'difference', value: ({ k }) => phaseValue(b, k, 'median') - phaseValue(a, k, 'median'), digits: 1 },
    ]),
  ].join('\n');
}

/** "cpu backend", or "cuda backend (H200, 2 GPUs)". */
function backendText(run: Run): string {
  const e = run.environment;
  if (e.backend !== 'cuda') return `${e.backend ?? 'cpu'} backend`;
  return `cuda backend (${e.gpu ?? 'GPU'}${(e.gpus ?? 1) > 1 ? `, ${e.gpus} GPUs` : ''})`;
}

export function formatRun(run: Run): string {
  const s = run.summary;
  const c = run.config;
  const rows = PHASES.filter((k) => c.reduction || !['reductionMs', 'reductionExposedMs', 'overlap'].includes(k)).map((k) => ({
    phase: PHASE_LABELS[k], median: phaseValue(run, k, 'median'), min: phaseValue(run, k, 'min'), max: phaseValue(run, k, 'max'),
  }));
  // The pipeline's own time beside the wait: with prefetch it is mostly hidden under compute.
  if (s.dataBusyMs) rows.splice(2, 0, { phase: '  data pipeline busy', ...s.dataBusyMs });
  const d = run.data;
  return [
    `ResNet-50 v1.5 training step: ${backendText(run)}, ${run.environment.dtype ?? 'fp32'}, batch ${c.batch}, ${c.resolution}x${c.resolution}, width ${c.width}, ${c.classes} classes, ` +
      `${run.environment.parameters.toLocaleString('en-US')} parameters; ${c.warmup} warm-up + ${c.iterations} measured iterations; ${run.environment.threads} threads`,
    (c.reduction ? `${c.reduction.workers} workers, ${c.reduction.schedule} reduction (--comm ${c.reduction.comm}${c.reduction.link ? `, link ${c.reduction.link.gbps} GB/s` : ''}), ` : '') +
    `conv ${c.plan.ops.conv}, batchnorm ${c.plan.ops.batchnorm}, activations ${run.environment.layout}` + (Object.keys(c.plan.layers).length ? `, ${Object.keys(c.plan.layers).length} layer override(s)` : ''),
    ...(run.replicas ? [`${run.replicas.devices.length} GPUs in this process (--gpus): the figures are GPU 0's; each GPU's iteration span without the data wait, median over the measured iterations: ` +
      run.replicas.devices.map((dev, i) => `GPU ${dev} ${run.replicas!.spanMs[i].median.toFixed(1)} ms`).join(', ')] : []),
    ...(d ? [`data: ${d.kind} ${d.dataset} (${d.images} images, ${d.classes} classes), ${d.threads} data thread${d.threads === 1 ? '' : 's'}, prefetch ${d.prefetch}` +
      (d.skipped.length ? `; skipped ${d.skipped.length} bad image(s), e.g. ${d.skipped[0].message}` : '')] : []),
    formatTable(rows, [
      { header: 'phase', value: (r) => r.phase },
      { header: 'median ms', value: (r) => r.median, digits: 1 },
      { header: 'min ms', value: (r) => r.min, digits: 1 },
      { header: 'max ms', value: (r) => r.max, digits: 1 },
    ]),
    `loss ${s.loss.median.toFixed(4)} (median; last ${run.iterations.at(-1)!.loss.toFixed(4)}), ${s.gflops.toFixed(1)} GFLOP/s for the whole step, peak memory ${(s.peakBytes / 2 ** 20).toFixed(0)} MiB${s.scratchBytes !== undefined ? ` (${(s.scratchBytes / 2 ** 20).toFixed(0)} MiB of it the kernels' scratch)` : ''}, ` +
      `enqueue ${s.enqueueUsPerKernel.toFixed(2)} us per kernel (${run.iterations.at(-1)!.kernels} kernels${c.enqueueProbeMs ? ', stream gated' : ', while kernels run'})`,
    '',
    'top kernels (median per iteration)',
    formatTable(run.topKernels.slice(0, 10), [
      { header: 'op', value: (k) => k.op },
      { header: 'pass', value: (k) => k.pass },
      { header: 'layer', value: (k) => k.layer },
      { header: 'variant', value: (k) => k.variant },
      { header: 'ms', value: (k) => k.medianMs, digits: 2 },
    ]),
  ].join('\n');
}

