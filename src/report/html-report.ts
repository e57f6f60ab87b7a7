// `--report report.html`: one self-contained file (inline CSS and SVG, no
// script, no network) with, for each run, a timeline per stream (Gantt) and
// the breakdown as stacked bars; per-layer kernel times side by side; the
// attribution of a difference; critical paths; and what-if tables.
import type { Attribution } from '../analysis/attribution';
import { PART_LABELS, PARTS } from '../analysis/attribution';
import { PATH_PHASES, type CriticalPath } from '../analysis/critical-path';
import type { KernelRecord } from '../../binding';
import { phaseOf, type IterationMarks } from '../run/kernel-stats';
import type { Run } from '../run/training';

export interface ReportInput {
  title: string;
  runs: { name: string; run: Run; path?: CriticalPath; otherRanks?: { name: string; timeline: KernelRecord[]; marks: IterationMarks }[] }[];
  attribution?: Attribution;
  /** Rows of predicted against measured (or recorded) figures. */
  whatif?: { title: string; rows: { label: string; predictedMs: number; measuredMs?: number }[]; notes?: string[] }[];
  /** Free text shown under the title (what was run, on what machine). */
  summary?: string[];
  /** Other result tables (peers, sweep points, benchmark rows). */
  tables?: { title: string; headers: string[]; rows: (string | number)[][] }[];
  /** Grouped horizontal bar charts (a benchmark's rows side by side), drawn before the tables. */
  charts?: BarChart[];
}

export interface BarChart {
  title: string;
  unit: string;
  /** One group per row label; one bar per series in it. */
  groups: { label: string; values: { series: string; value: number }[] }[];
}

const COLORS: Record<string, string> = {
  data: '#9e9e9e', forward: '#4e79a7', backward: '#f28e2b', reduction: '#e15759', optimizer: '#59a14f', idle: '#d7d7d7',
  contention: '#b07aa1', exposedReduction: '#e15759',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');

function gantt(run: { timeline: KernelRecord[]; marks: IterationMarks }): string {
  const width = 1100, left = 90, rowH = 22;
  const streams = [...new Set(run.timeline.map((k) => k.streamName))].sort((a, b) => (a === 'compute' ? -1 : b === 'compute' ? 1 : a.localeCompare(b)));
  const endNs = Math.max(run.marks.endNs, ...run.timeline.map((k) => k.endNs), 1);
  const x = (ns: number) => left + ((width - left - 10) * ns) / endNs;
  const rects = run.timeline.map((k) => {
    const row = streams.indexOf(k.streamName);
    const phase = phaseOf(k, run.marks);
    const w = Math.max(0.5, x(k.endNs) - x(k.startNs));
    const label = `${k.op} ${k.pass} ${k.layer} (${k.variant}) ${((k.endNs - k.startNs) / 1e6).toFixed(3)} ms`;
    return `<rect class="k" x="${x(k.startNs).toFixed(2)}" y="${10 + row * rowH}" width="${w.toFixed(2)}" height="${rowH - 6}" fill="${COLORS[phase]}"><title>${esc(label)}</title></rect>`;
  });
  const labels = streams.map((s, i) => `<text x="4" y="${24 + i * rowH}">${esc(s)}</text>`);
  const ticks: string[] = [];
  const stepMs = niceStep(endNs / 1e6 / 8);
  for (let t = 0; t <= endNs / 1e6; t += stepMs) ticks.push(`<text x="${x(t * 1e6).toFixed(1)}" y="${16 + streams.length * rowH}" class="tick">${t.toFixed(0)} ms</text>`);
  const h = 24 + streams.length * rowH;
  return `<svg class="gantt" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}" role="img" aria-label="timeline per stream">${labels.join('')}${rects.join('')}${ticks.join('')}</svg>`;
}

function niceStep(x: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(x, 1e-6)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= x) ?? 10 * p;
}

function stackedBars(runs: ReportInput['runs']): string {
  const keys = ['dataMs', 'forwardMs', 'backwardMs', 'reductionExposedMs', 'optimizerMs', 'idleMs'] as const;
  const names: Record<(typeof keys)[number], string> = { dataMs: 'data', forwardMs: 'forward', backwardMs: 'backward', reductionExposedMs: 'reduction', optimizerMs: 'optimizer', idleMs: 'idle' };
  const max = Math.max(...runs.map((r) => keys.reduce((s, k) => s + r.run.summary[k].median, 0)), 1e-9);
  const width = 1100, left = 260, barH = 26;
  const bars = runs.map((r, i) => {
    let at = left;
    const segs = keys.map((k) => {
      const ms = r.run.summary[k].median;
      const w = ((width - left - 80) * ms) / max;
      const seg = `<rect class="bar" x="${at.toFixed(2)}" y="${8 + i * (barH + 8)}" width="${Math.max(0, w).toFixed(2)}" height="${barH}" fill="${COLORS[names[k]]}"><title>${names[k]} ${f1(ms)} ms</title></rect>`;
      at += w;
      return seg;
    });
    const total = keys.reduce((s, k) => s + r.run.summary[k].median, 0);
    return `<text x="4" y="${26 + i * (barH + 8)}">${esc(r.name.slice(-38))}</text>${segs.join('')}<text x="${(at + 6).toFixed(1)}" y="${26 + i * (barH + 8)}">${f1(total)} ms</text>`;
  });
  const h = 16 + runs.length * (barH + 8);
  const legend = keys.map((k) => `<span class="sw" style="background:${COLORS[names[k]]}"></span>${names[k]}`).join(' ');
  return `<svg class="bars" width="${width}" height="${h}" viewBox="0 0 ${width} ${h}" role="img" aria-label="breakdown per run">${bars.join('')}</svg><p class="legend">${legend} (medians over the measured iterations)</p>`;
}

const SERIES_COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

function barChart(chart: BarChart): string {
  const series = [...new Set(chart.groups.flatMap((g) => g.values.map((v) => v.series)))];
  const color = (name: string) => SERIES_COLORS[series.indexOf(name) % SERIES_COLORS.length];
  const width = 1100, left = 300, barH = 12;
  const max = Math.max(...chart.groups.flatMap((g) => g.values.map((v) => v.value)), 1e-9);
  let y = 6;
  const parts: string[] = [];
  for (const g of chart.groups) {
    parts.push(`<text x="4" y="${y + barH}">${esc(g.label.slice(-48))}</text>`);
    for (const v of g.values) {
      const w = Math.max(0.5, ((width - left - 90) * v.value) / max);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(2)}" height="${barH - 2}" fill="${color(v.series)}"><title>${esc(`${g.label} ${v.series}: ${v.value.toFixed(2)} ${chart.unit}`)}</title></rect>`);
      parts.push(`<text x="${(left + w + 4).toFixed(1)}" y="${y + barH - 2}" class="tick">${v.value >= 100 ? v.value.toFixed(0) : v.value.toPrecision(3)}</text>`);
      y += barH;
    }
    y += 6;
  }
  const legend = series.map((n) => `<span class="sw" style="background:${color(n)}"></span>${esc(n)}`).join(' ');
  return `<svg class="chart" width="${width}" height="${y + 4}" viewBox="0 0 ${width} ${y + 4}" role="img" aria-label="${esc(chart.title)}">${parts.join('')}</svg><p class="legend">${legend} (${esc(chart.unit)})</p>`;
}

function table(headers: string[], rows: (string | number)[][]): string {
  const cell = (v: string | number) => (typeof v === 'number' ? `<td class="n">${f1(v)}</td>` : `<td>${esc(v)}</td>`);
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map(cell).join('')}</tr>`).join('')}</tbody></table>`;
}

function perLayer(runs: ReportInput['runs']): string {
  const layers = new Map<string, number[]>();
  runs.forEach((r, i) => {
    for (const k of r.run.kernels) {
      if (k.pass === 'comm') continue;
      const v = layers.get(k.layer) ?? new Array(runs.length).fill(0);
      v[i] += k.meanMs;
      layers.set(k.layer, v);
    }
  });
  const rows = [...layers.entries()].sort((a, b) => Math.max(...b[1]) - Math.max(...a[1])).slice(0, 60).map(([layer, v]) => [layer, ...v]);
  return table(['layer (all its kernels, mean ms per iteration)', ...runs.map((r) => r.name)], rows);
}

export function htmlReport(input: ReportInput): string {
  const sections: string[] = [];
  if (input.summary?.length) sections.push(`<section><ul>${input.summary.map((s) => `<li>${esc(s)}</li>`).join('')}</ul></section>`);
  for (const c of input.charts ?? []) sections.push(`<section><h2>${esc(c.title)}</h2>${barChart(c)}</section>`);
  for (const t of input.tables ?? []) sections.push(`<section><h2>${esc(t.title)}</h2>${table(t.headers, t.rows)}</section>`);
  if (input.runs.length > 0) sections.push(`<section><h2>Breakdown</h2>${stackedBars(input.runs)}</section>`);
  for (const r of input.runs) {
    sections.push(`<section><h2>Timeline: ${esc(r.name)}</h2><p>iteration ${r.run.timelineIteration} (median total), ${r.run.timeline.length} kernels; colors: phase. Hover a kernel for its name and time.</p>${gantt(r.run)}</section>`);
    for (const o of r.otherRanks ?? []) {
      sections.push(`<section><h3>Timeline: ${esc(r.name)}, ${esc(o.name)}</h3><p>the median iteration of ${esc(o.name)}, ${o.timeline.length} kernels</p>${gantt(o)}</section>`);
    }
  }
  if (input.attribution) {
    const a = input.attribution;
    const rows = PARTS.map((p) => [PART_LABELS[p], a.a.parts[p], a.b.parts[p], a.delta[p]] as (string | number)[]);
    rows.push(['iteration', a.a.totalMs, a.b.totalMs, a.differenceMs]);
    sections.push(`<section><h2>Attribution of the difference</h2>${table(['part', `${input.runs[0].name} ms`, `${input.runs[1].name} ms`, 'difference ms'], rows)}</section>`);
    sections.push(`<section><h3>Kernels that differ most</h3>${table(['op', 'pass', 'layer', 'variant A', 'variant B', 'A ms', 'B ms'], a.kernels.map((k) => [k.op, k.pass, k.layer, k.variantA, k.variantB, k.msA, k.msB]))}</section>`);
  }
  const paths = input.runs.filter((r) => r.path);
  if (paths.length) {
    sections.push(`<section><h2>Critical path</h2>${table(['run', ...PATH_PHASES.map((p) => `${p} ms`), 'total ms'], paths.map((r) => [r.name, ...PATH_PHASES.map((p) => r.path!.share[p]), r.path!.totalMs]))}</section>`);
  }
  for (const w of input.whatif ?? []) {
    const rows = w.rows.map((r) => [r.label, r.predictedMs, r.measuredMs ?? '-', r.measuredMs === undefined ? '-' : `${f1((100 * (r.predictedMs - r.measuredMs)) / r.measuredMs)} %`]);
    sections.push(`<section><h2>${esc(w.title)}</h2>${table(['case', 'predicted ms', 'measured ms', 'error'], rows)}${(w.notes ?? []).map((n) => `<p class="note">${esc(n)}</p>`).join('')}</section>`);
  }
  if (input.runs.length > 0) sections.push(`<section><h2>Per-layer kernel time</h2>${perLayer(input.runs)}</section>`);
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(input.title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 8px}td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font:11px system-ui,sans-serif}svg .tick{fill:#666}
.sw{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}.note{color:#555}
</style></head>
<body><h1>${esc(input.title)}</h1>
${sections.join('\n')}
<p class="note">stepscope report, ${esc(new Date().toISOString())}</p>
</body></html>
`;
}
