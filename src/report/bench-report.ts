// The terminal table of `stepscope bench conv`.
import type { ConvBenchRow } from '../bench/conv-bench';
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
        r.status === 'ok' ? r.maxRelErr.toExponential(1) : r.status === 'unsupported' ? 'unsupported' : `FAIL ${r.maxRelErr.toExponential(1)}`,
    },
    { header: 'reorder ms', value: (r) => (r.reorderMs > 0 ? r.reorderMs : null), digits: 3 },
  ]);
}

