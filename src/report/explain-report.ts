// Terminal reports of the analyses: the attribution of a difference between
// two runs, the critical path of a run, and what-if predictions.
import type { Attribution } from '../analysis/attribution';
import { PART_LABELS, PARTS } from '../analysis/attribution';
import { PATH_PHASES, type CriticalPath } from '../analysis/critical-path';
import type { Run } from '../run/training';
import { formatTable } from './table';

export function runLabel(run: Run): string {
  const c = run.config;
  const r = c.reduction;
  const env = run.environment;
  // What tells two runs apart: the backend and how it ran (precision, layout, graph, GPUs), the plan, the reduction.
  const backend = env.backend === 'cuda'
    ? `cuda ${env.dtype ?? 'fp32'} ${env.layout}${c.graph ? ' graph' : ''}${(env.gpus ?? 1) > 1 ? ` ${env.gpus} GPUs` : ''}`
    : `cpu ${env.layout}`;
  return `${backend}, batch ${c.batch}, ${c.resolution}px, conv ${c.plan.ops.conv}${Object.keys(c.plan.layers).length ? '+' : ''}, ` +
    (r ? `${r.workers} workers ${r.schedule}${r.comm && r.comm !== 'local' ? ` (${r.comm})` : ''}${r.link ? ` ${r.link.gbps} GB/s` : ''}` : 'single worker');
}

export function formatAttribution(x: Attribution, nameA: string, nameB: string): string {
  const rows = PARTS.map((p) => ({ label: PART_LABELS[p], a: x.a.parts[p], b: x.b.parts[p], d: x.delta[p] }));
  rows.push({ label: 'iteration (saved median iteration)', a: x.a.totalMs, b: x.b.totalMs, d: x.differenceMs });
  const sum = PARTS.reduce((s, p) => s + x.delta[p], 0);
  const ranked = PARTS.filter((p) => Math.abs(x.delta[p]) >= 0.05 * Math.abs(x.differenceMs) && Math.abs(x.delta[p]) > 0.05)
    .sort((p, q) => Math.abs(x.delta[q]) - Math.abs(x.delta[p]));
  const verdict = ranked.length === 0
    ? 'no part moved by more than 5% of the difference'
    : ranked.map((p) => `${PART_LABELS[p]} ${x.delta[p] >= 0 ? '+' : ''}${x.delta[p].toFixed(1)} ms`).join(', ');
  return [
    `${nameB} minus ${nameA}: ${x.differenceMs >= 0 ? '+' : ''}${x.differenceMs.toFixed(1)} ms per iteration; the parts sum to ${sum.toFixed(1)} ms`,
    formatTable(rows, [
      { header: 'part', value: (r) => r.label },
      { header: `${nameA} ms`, value: (r) => r.a, digits: 1 },
      { header: `${nameB} ms`, value: (r) => r.b, digits: 1 },
      { header: 'difference', value: (r) => r.d, digits: 1 },
    ]),
    `where the difference comes from: ${verdict}`,
    '',
    'layers that differ most (all their compute kernels, mean ms per iteration)',
    formatTable(x.layers, [
      { header: 'layer', value: (l) => l.layer },
      { header: `${nameA} ms`, value: (l) => l.msA },
      { header: `${nameB} ms`, value: (l) => l.msB },
      { header: 'difference', value: (l) => l.msB - l.msA },
    ]),
    '',
    'kernels that differ most (mean ms per iteration)',
    formatTable(x.kernels, [
      { header: 'op', value: (k) => k.op },
      { header: 'pass', value: (k) => k.pass },
      { header: 'layer', value: (k) => k.layer },
      { header: `${nameA} variant`, value: (k) => k.variantA },
      { header: `${nameB} variant`, value: (k) => k.variantB },
      { header: `${nameA} ms`, value: (k) => k.msA },
      { header: `${nameB} ms`, value: (k) => k.msB },
      { header: 'difference', value: (k) => k.msB - k.msA },
    ]),
  ].join('\n');
}

export function formatCriticalPath(path: CriticalPath, name: string): string {
  const kernels = path.segments.filter((s) => s.kind === 'kernel');
  const onComm = kernels.filter((s) => s.stream !== 'compute').length;
  const crossings = kernels.filter((s) => s.waitedFor).map((s) => `${s.kernel!.op} ${s.kernel!.layer || s.kernel!.pass} (${s.stream}) waited for ${s.waitedFor}`);
  return [
    `critical path of ${name}: ${path.totalMs.toFixed(1)} ms, ${kernels.length} kernels (${onComm} on the communication stream)`,
    ...(crossings.length ? [`crosses streams at ${crossings.length} recorded wait(s): ${crossings.slice(0, 4).join('; ')}${crossings.length > 4 ? '; ...' : ''}`] : []),
    formatTable(PATH_PHASES.map((p) => ({ p })), [
      { header: 'phase', value: ({ p }) => p },
      { header: 'ms on path', value: ({ p }) => path.share[p], digits: 1 },
      { header: 'share %', value: ({ p }) => (100 * path.share[p]) / Math.max(path.totalMs, 1e-9), digits: 1 },
    ]),
  ].join('\n');
}
