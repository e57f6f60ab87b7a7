// `stepscope whatif run.json [changes]`: predicts the iteration time and its
// breakdown of a recorded run under changed kernels, schedule, buckets,
// workers or link, and projects scale-out for both schedules.
import * as fs from 'node:fs';
import { UsageError } from '../errors';
import { cudaStatus } from '../native-cuda';
import { LINK_GBPS, parseChoice, parseInteger, parseNumber } from '../options';
import { readRun } from '../run/run-file';
import { PHASES, type PhaseKey, type Run } from '../run/training';
import { checkKernelSource, kernelsFromBench, kernelsFromRun, withComm, type BenchFile, type CommChange } from '../whatif/changes';
import { calibrated, predict, type CalibratedPrediction } from '../whatif/predict';
import type { StepModel } from '../whatif/step-model';
import { benchForPlan } from '../whatif/plan-kernels';
import { formatInRunCheck, inRunCheck, type InRunCheck } from '../whatif/inrun-check';
import { runGraph } from '../whatif/step-model';
import { parsePlan, planFromJson, type Plan } from '../plan/plan';
import { PHASE_LABELS } from '../report/run-report';
import { formatTable } from '../report/table';
import type { Breakdown } from '../analysis/breakdown';

export interface WhatIfOpts {
  kernels?: string;
  variant: string;
  schedule?: string;
  bucketMb?: string;
  firstBucketMb?: string;
  workers?: string;
  link?: string;
  latency?: string;
  scaleOut?: string;
  json?: boolean;
  report?: string;
}

export interface ScalePoint {
  workers: number;
  serializedMs: number;
  overlappedMs: number;
  serializedEfficiency: number;
  overlappedEfficiency: number;
}

export interface WhatIfResult {
  base: Run;
  baseFile: string;
  changes: string[];
  prediction: CalibratedPrediction;
  scaleOut?: ScalePoint[];
  /** The model against the run's own iterations in the other arrangement, when it has them. */
  check?: InRunCheck;
}

/** The changes given on the command line, as one function on the model. */
export async function parseChanges(opts: WhatIfOpts, base: Run, onProgress?: Progress): Promise<{ apply: (m: StepModel) => StepModel; described: string[]; comm: CommChange }> {
  const described: string[] = [];
  const comm: CommChange = {};
  // Given means given: an empty value is refused by its parser, not read as "unchanged".
  if (opts.schedule !== undefined) comm.schedule = parseChoice('--schedule', opts.schedule, ['serialized', 'overlapped'] as const);
  if (opts.bucketMb !== undefined) comm.bucketMb = parseNumber('--bucket-mb', opts.bucketMb, 0.001, 10000);
  if (opts.firstBucketMb !== undefined) comm.firstBucketMb = parseNumber('--first-bucket-mb', opts.firstBucketMb, 0.001, 10000);
  if (opts.workers !== undefined) comm.workers = parseInteger('--workers', opts.workers, 1, 100000);
  const latencyUs = opts.latency !== undefined ? parseNumber('--latency', opts.latency, 0, 1e6) : 0;
  if (opts.link !== undefined) comm.link = { gbps: parseNumber('--link', opts.link, LINK_GBPS.min, LINK_GBPS.max), latencyUs };
  else if (opts.latency !== undefined) throw new UsageError('--latency needs --link <GB/s>');
  for (const [k, v] of Object.entries(comm)) described.push(`${k} ${typeof v === 'object' ? `${v.gbps} GB/s, ${v.latencyUs} us` : v}`);
  let kernelSource: ((m: StepModel) => StepModel) | undefined;
  if (opts.kernels === '') throw new UsageError("--kernels '' names nothing: give a saved run, the JSON of bench conv --json, a plan JSON or op=variant pairs");
  const bench = opts.kernels !== undefined ? convBench(opts.kernels) : undefined;
  if (opts.variant !== 'best' && !bench) throw new UsageError(`--variant '${opts.variant}' picks times from a conv benchmark: give one with --kernels bench.json (bench conv --json)`);
  if (opts.kernels !== undefined) {
    const text = opts.kernels;
    const plan = bench ? undefined : planOf(text, base);
    if (bench) {
      // bench conv measures the standard width (64): a run of another width has other shapes under the same layer names.
      checkKernelSource(text, { ...bench, width: 64 }, base);
      kernelSource = (m) => kernelsFromBench(m, bench, text, opts.variant, base).model;
      described.push(`conv kernels from ${text} (${opts.variant})`);
    } else if (plan) {
      const backend = base.config.backend ?? 'cpu';
      if (backend === 'cuda' && !cudaStatus().available) {
        throw new UsageError(`--kernels ${text}: the plan's convolutions are measured on the run's backend, cuda, which is unavailable here: ${cudaStatus().reason}; ` +
          'give kernel times instead (a saved run or bench conv --json from a GPU machine)');
      }
      const measured = await benchForPlan(base, plan, text, onProgress);
      kernelSource = (m) => measured.changed.length ? kernelsFromBench(m, measured.bench, `the plan ${text}`, measured.variantOf, base).model : m;
      described.push(`conv kernels of the plan ${text} (${measured.changedLayers.length} layers changed, ${measured.changed.length} passes, measured now at the run's shapes)`);
    } else {
      if (!fs.existsSync(text.replace(/:\d+$/, ''))) throw new UsageError(`--kernels: '${text}' does not exist (give a saved run, the JSON of bench conv --json, a plan JSON or op=variant pairs)`);
      const source = readRun(text); // a saved run (file.json:N for one of several); says what is wrong otherwise
      const sc = source.config;
      checkKernelSource(text, { backend: sc.backend ?? 'cpu', dtype: source.environment.dtype, layout: source.environment.layout, batch: sc.batch, resolution: sc.resolution, width: sc.width }, base);
      kernelSource = (m) => kernelsFromRun(m, source, text).model;
      described.push(`kernels from ${text}`);
    }
  }
  return { apply: (m) => withComm(kernelSource ? kernelSource(m) : m, comm), described, comm };
}

type Progress = (done: number, total: number, what: string) => void;

/**
 * A plan: `op=variant,layer=variant` pairs, or a JSON file of {"ops", "layers"} (not a run, not a benchmark),
 * laid over the run's own plan: what it does not name stays as the run had it.
 */
function planOf(text: string, base: Run): Plan | undefined {
  // The run's backend decides which variants a plan may name (cudnn:* on CUDA).
  const backend = base.config.backend ?? 'cpu';
  const runPlan = base.config.plan;
  if (!fs.existsSync(text)) return text.includes('=') ? parsePlan(text, runGraph(base), backend, runPlan) : undefined;
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(text, 'utf8'));
  } catch {
    return undefined; // readRun names what is wrong with it
  }
  const o = json as Record<string, unknown> | null;
  const isPlan = o && typeof o === 'object' && !Array.isArray(o) && o.format === undefined && (o.ops !== undefined || o.layers !== undefined);
  return isPlan ? planFromJson(o as { ops?: Record<string, string>; layers?: Record<string, string> }, runGraph(base), backend, `--kernels: plan file '${text}'`, runPlan) : undefined;
}

/** The file's content when it is `bench conv --json` output (rows, no run format); undefined otherwise. */
function convBench(file: string): BenchFile | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    const json = JSON.parse(fs.readFileSync(file, 'utf8'));
    return json && Array.isArray(json.rows) && json.format === undefined ? (json as BenchFile) : undefined;
  } catch {
    return undefined;
  }
}

export async function whatIf(file: string, opts: WhatIfOpts, onProgress?: Progress): Promise<WhatIfResult> {
  const base = readRun(file);
  const { apply, described } = await parseChanges(opts, base, onProgress);
  const prediction = predict(base, apply);
  let scaleOut: ScalePoint[] | undefined;
  if (opts.scaleOut !== undefined) {
    const list = opts.scaleOut.split(',').map((w) => parseInteger('--scale-out', w.trim(), 1, 100000));
    const at = (workers: number, schedule: 'serialized' | 'overlapped') => predict(base, (m) => withComm(apply(m), { workers, schedule })).totalMs;
    const single = predict(base, (m) => withComm(apply(m), { workers: 1 })).totalMs;
    scaleOut = list.map((workers) => {
      const s = at(workers, 'serialized'), o = at(workers, 'overlapped');
      return { workers, serializedMs: s, overlappedMs: o, serializedEfficiency: single / s, overlappedEfficiency: single / o };
    });
  }
  return { base, baseFile: file, changes: described, prediction, scaleOut, check: inRunCheck(base) };
}


export function formatWhatIf(r: WhatIfResult): string {
  const p = r.prediction;
  const predicted: Breakdown = calibrated(p.breakdown, p.calibration);
  const measured = r.base.summary;
  const value = (b: Breakdown | undefined, k: PhaseKey) => (b ? (k === 'overlap' ? 100 * b[k] : b[k]) : undefined);
  const rows = PHASES.map((k) => ({ k, recorded: k === 'overlap' ? 100 * measured[k].median : measured[k].median, predicted: value(predicted, k) }));
  const out = [
    `what if ${r.changes.length ? r.changes.join('; ') : 'nothing changed (the replay of the run itself)'} — from ${r.baseFile}`,
    formatTable(rows, [
      { header: 'phase', value: (x) => PHASE_LABELS[x.k] },
      { header: 'recorded ms', value: (x) => x.recorded, digits: 1 },
      { header: 'predicted ms', value: (x) => x.predicted, digits: 1 },
      { header: 'difference', value: (x) => (x.predicted ?? 0) - x.recorded, digits: 1 },
    ]),
    `model: the replay of the unchanged run gives ${p.baseline.replayMs.toFixed(1)} ms against ${p.baseline.measuredMs.toFixed(1)} ms measured (median); predictions are scaled by ${p.calibration.toFixed(3)}`,
    ...p.notes.map((n) => `note: ${n}`),
    ...(r.check ? [formatInRunCheck(r.check)] : []),
  ];
  if (r.scaleOut) {
    out.push('', 'scale-out projection (iteration time per worker count; efficiency = single-worker time / time)');
    out.push(formatTable(r.scaleOut, [
      { header: 'workers', value: (s) => String(s.workers) },
      { header: 'serialized ms', value: (s) => s.serializedMs, digits: 1 },
      { header: 'overlapped ms', value: (s) => s.overlappedMs, digits: 1 },
      { header: 'serialized eff %', value: (s) => 100 * s.serializedEfficiency, digits: 1 },
      { header: 'overlapped eff %', value: (s) => 100 * s.overlappedEfficiency, digits: 1 },
    ]));
  }
  return out.join('\n');
}
