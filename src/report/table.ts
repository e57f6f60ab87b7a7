// Plain-text tables for the terminal: right-aligned numbers, left-aligned text.
export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
  /** Digits after the point for numbers (default 2). */
  digits?: number;
}

function cell(v: string | number | null | undefined, digits: number): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return String(v);
    return v !== 0 && Math.abs(v) < 10 ** -digits ? v.toExponential(1) : v.toFixed(digits);
  }
  return v;
}

export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((row) => columns.map((c) => cell(c.value(row), c.digits ?? 2)));
  const numeric = columns.map((c) => rows.length > 0 && rows.every((row) => typeof c.value(row) !== 'string'));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i].length)));
  const line = (values: string[]) =>
    values.map((v, i) => (numeric[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(columns.map((c) => c.header)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
