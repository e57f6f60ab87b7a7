// `stepscope explain a.json [b.json]`: one run: its breakdown's parts and
// critical path; two runs (two files, or one file saved by step --compare):
// the attribution of their difference, and both critical paths.
import { UsageError } from '../errors';
import { attribute, decompose, PART_LABELS, PARTS, type Attribution } from '../analysis/attribution';
import { criticalPath, type CriticalPath } from '../analysis/critical-path';
import { readRunSpec } from '../run/run-file';
import type { Run } from '../run/training';
import { formatAttribution, formatCriticalPath, runLabel } from '../report/explain-report';
import { formatTable } from '../report/table';

export interface Explained {
  runs: { name: string; run: Run; path: CriticalPath }[];
  attribution?: Attribution;
}

export function pathOf(run: Run): CriticalPath {
  const it = run.iterations.find((f) => f.index === run.timelineIteration);
  return criticalPath(run.timeline, run.marks, it?.dataMs ?? run.summary.dataMs.median, run.waits);
}

export function explain(files: string[], top: number): Explained {
  const runs = files.flatMap((f) => readRunSpec(f));
  if (runs.length > 2) throw new UsageError(`explain compares two runs; got ${runs.length} (${runs.map((r) => r.name).join(', ')}): pick two as file.json:N`);
  const withPaths = runs.map((r) => ({ ...r, path: pathOf(r.run) }));
  return { runs: withPaths, attribution: runs.length === 2 ? attribute(runs[0].run, runs[1].run, top) : undefined };
}

export function formatExplained(e: Explained): string {
  const out: string[] = [];
  e.runs.forEach((r, i) => out.push(`${'AB'[i]} = ${r.name}: ${runLabel(r.run)}`));
  if (e.attribution) {
    out.push('', formatAttribution(e.attribution, 'A', 'B'));
  } else {
    const d = decompose(e.runs[0].run);
    out.push('', formatTable(PARTS.map((p) => ({ p })), [
      { header: 'part', value: ({ p }) => PART_LABELS[p] },
      { header: 'ms', value: ({ p }) => d.parts[p], digits: 1 },
    ]));
  }
  e.runs.forEach((r, i) => out.push('', formatCriticalPath(r.path, e.runs.length > 1 ? 'AB'[i] : r.name)));
  return out.join('\n');
}
