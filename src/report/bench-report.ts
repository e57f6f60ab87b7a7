// The results of `stepscope bench conv` and `bench data`: the terminal table,
// and the HTML report (bars side by side, then every row).
import { failedCheckText, type ConvBenchRow } from '../bench/conv-bench';
import type { DataBenchRow } from '../bench/data-bench';
import { htmlReport, type BarChart } from './html-report';
import { formatTable } from './table';

export function formatBenchRows(rows: ConvBenchRow[]): string {
  // CUDA rows carry the precision of their products (our tensor-core kernels differ from --dtype).
  const precision = rows.some((r) => r.precision) ? [{ header: 'precision', value: (r: ConvBenchRow) => r.precision ?? '-' }] : [];
  return formatTable(rows, [
    { header: 'layer', value: (r) => r.layer + (r.sameShapeAs ? ` (=${r.sameShapeAs})` : '') },
    { header: 'shape', value: (r) => r.shapeText },
    { header: 'pass', value: (r) => r.pass },
    { header: 'variant', value: (r) => r.variant },
    ...precision,
    { header: 'median ms', value: (r) => r.medianMs, digits: 3 },
    { header: 'min ms', value: (r) => r.minMs, digits: 3 },
    { header: 'max ms', value: (r) => r.maxMs, digits: 3 },
    { header: 'GFLOP/s', value: (r) => r.gflops, digits: 1 },
    { header: '% peak', value: (r) => r.pctPeak, digits: 1 },
    {
      header: 'max rel err',
      value: (r) =>
        r.status === 'ok' ? r.maxRelErr.toExponential(1) : r.status === 'unsupported' || r.status === 'error' ? r.status : `FAIL ${failedCheckText(r)}`,
    },
    { header: 'reorder ms', value: (r) => (r.reorderMs > 0 ? r.reorderMs : null), digits: 3 },
  ]);
}


const ms3 = (v: number | null) => (v === null ? '-' : v.toFixed(3));
const pct = (v: number | null) => (v === null ? '-' : v.toFixed(1));

/** The conv benchmark as a report: % of peak and median ms per layer and pass, one bar per variant. */
export function convBenchReport(rows: ConvBenchRow[], title: string, summary: string[]): string {
  const timed = rows.filter((r) => r.status === 'ok' && !r.sameShapeAs && r.medianMs !== null);
  const groups = (value: (r: ConvBenchRow) => number): BarChart['groups'] => {
    const byGroup = new Map<string, BarChart['groups'][number]>();
    for (const r of timed) {
      const label = `${r.layer} ${r.pass}`;
      if (!byGroup.has(label)) byGroup.set(label, { label, values: [] });
      byGroup.get(label)!.values.push({ series: r.variant, value: value(r) });
    }
    return [...byGroup.values()];
  };
  const charts: BarChart[] = [{ title: 'Median time per layer and pass', unit: 'ms', groups: groups((r) => r.medianMs!) }];
  if (timed.some((r) => r.pctPeak !== null)) charts.unshift({ title: "Share of the machine's measured peak", unit: '% of peak', groups: groups((r) => r.pctPeak ?? 0) });
  return htmlReport({
    title,
    runs: [],
    summary,
    charts,
    tables: [{
      title: 'Every row (checked against the reference before timing)',
      headers: ['layer', 'shape', 'pass', 'variant', 'median ms', 'min ms', 'max ms', 'GFLOP/s', '% peak', 'max rel err', 'reorder ms'],
      rows: rows.map((r) => [r.layer + (r.sameShapeAs ? ` (=${r.sameShapeAs})` : ''), r.shapeText, r.pass, r.variant, ms3(r.medianMs), ms3(r.minMs), ms3(r.maxMs),
        pct(r.gflops), pct(r.pctPeak), r.status === 'ok' ? r.maxRelErr.toExponential(1) : r.status === 'unsupported' || r.status === 'error' ? `${r.status}${r.reason ? `: ${r.reason}` : ''}` : `FAIL ${failedCheckText(r)}`,
        r.reorderMs > 0 ? ms3(r.reorderMs) : '-']),
    }],
  });
}

/** The data benchmark as a report: images per second per kind and threads. */
export function dataBenchReport(rows: DataBenchRow[], title: string, summary: string[]): string {
  const kindLabel = (k: DataBenchRow['kind']) => (k === 'raw' ? 'raw (decode+augment)' : 'records (read+augment)');
  return htmlReport({
    title,
    runs: [],
    summary,
    charts: [{ title: 'Images per second (median over timed batches)', unit: 'images/s', groups: [...new Set(rows.map((r) => r.threads))].map((t) => ({
      label: `${t} thread(s)`, values: rows.filter((r) => r.threads === t).map((r) => ({ series: kindLabel(r.kind), value: r.imagesPerSec.median })),
    })) }],
    tables: [{
      title: 'Every row',
      headers: ['kind', 'threads', 'images/s', 'min', 'max', 'per thread', 'scaling'],
      rows: rows.map((r) => [kindLabel(r.kind), String(r.threads), r.imagesPerSec.median.toFixed(0), r.imagesPerSec.min.toFixed(0), r.imagesPerSec.max.toFixed(0), r.perThread.toFixed(0), r.scaling.toFixed(2)]),
    }],
  });
}
