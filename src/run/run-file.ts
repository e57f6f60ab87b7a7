// Reading saved runs (`step --save`, `reproduce --save-dir`): a file holds one
// Run or an array of them (`step --compare`). Anything else (not JSON, another
// format, another version, missing parts) is a clear error naming the file.
import * as fs from 'node:fs';
import { UsageError } from '../errors';
import { PHASES, RUN_FORMAT_VERSION, type Run } from './training';

const REQUIRED: (keyof Run)[] = ['config', 'environment', 'iterations', 'summary', 'timeline', 'waits', 'marks', 'kernels'];

function checkRun(value: unknown, where: string): Run {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError(`${where}: not a stepscope run (expected a JSON object)`);
  const r = value as Partial<Run> & { format?: unknown; version?: unknown };
  if ((r.format as unknown) === 'stepscope-partial-run') {
    throw new UsageError(`${where}: the partial result of a step stopped by ${(value as { interrupted?: string }).interrupted ?? 'a signal'} before its end, not a whole run (run the step again to its end)`);
  }
  if (r.format !== 'stepscope-run') throw new UsageError(`${where}: not a stepscope run (format is ${JSON.stringify(r.format)}, expected "stepscope-run")`);
  if (r.version !== RUN_FORMAT_VERSION) {
    throw new UsageError(`${where}: run format version ${JSON.stringify(r.version)} is not supported; this stepscope reads version ${RUN_FORMAT_VERSION} (record the run again with this version)`);
  }
  for (const key of REQUIRED) {
    if (r[key] === undefined) throw new UsageError(`${where}: damaged run: "${key}" is missing`);
  }
  if (!Array.isArray(r.kernels) || !Array.isArray(r.timeline) || !Array.isArray(r.waits) || !Array.isArray(r.iterations)) throw new UsageError(`${where}: damaged run: kernels, timeline, waits and iterations must be arrays`);
  // Every entry the analyses read, so that damage is an error here and not a NaN later.
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const str = (v: unknown) => typeof v === 'string';
  r.timeline.forEach((k, i) => {
    if (!k || !num(k.startNs) || !num(k.endNs) || !str(k.op) || !str(k.pass) || !str(k.layer) || !str(k.streamName)) throw new UsageError(`${where}: damaged run: timeline[${i}] is not a kernel record`);
  });
  r.waits.forEach((w, i) => {
    if (!w || !num(w.startNs) || !num(w.endNs) || !num(w.firedNs) || !str(w.streamName) || !str(w.sourceStream)) throw new UsageError(`${where}: damaged run: waits[${i}] is not a wait record`);
  });
  r.kernels.forEach((k, i) => {
    if (!k || !num(k.meanMs) || !num(k.medianMs) || !num(k.startMs) || !num(k.gapMs) || !str(k.op) || !str(k.stream) || !str(k.phase)) throw new UsageError(`${where}: damaged run: kernels[${i}] is not a kernel figure`);
  });
  // Times must run forwards: the critical path walks back through them.
  r.timeline.forEach((k, i) => {
    if (k.endNs < k.startNs) throw new UsageError(`${where}: damaged run: timeline[${i}] ends (${k.endNs} ns) before it starts (${k.startNs} ns)`);
  });
  r.waits.forEach((w, i) => {
    if (w.endNs < w.startNs) throw new UsageError(`${where}: damaged run: waits[${i}] ends (${w.endNs} ns) before it starts (${w.startNs} ns)`);
  });
  if (r.timeline.length === 0) throw new UsageError(`${where}: damaged run: no kernels recorded (timeline is empty)`);
  if (r.kernels.length === 0) throw new UsageError(`${where}: damaged run: no kernel figures (kernels is empty)`);
  const m = r.marks as unknown as Record<string, unknown>;
  for (const key of ['startNs', 'forwardEndNs', 'backwardEndNs', 'reducedNs', 'endNs']) if (!num(m[key])) throw new UsageError(`${where}: damaged run: marks.${key} is not a number`);
  const c = r.config as unknown;
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new UsageError(`${where}: damaged run: config is not an object`);
  const config = c as Record<string, unknown>;
  for (const key of ['batch', 'resolution', 'width', 'classes', 'iterations', 'warmup']) if (!num(config[key])) throw new UsageError(`${where}: damaged run: config.${key} is not a number`);
  const plan = config.plan as { ops?: unknown; layers?: unknown } | undefined;
  if (!plan || typeof plan.ops !== 'object' || plan.ops === null || typeof plan.layers !== 'object' || plan.layers === null) throw new UsageError(`${where}: damaged run: config.plan needs ops and layers`);
  if (typeof r.environment !== 'object' || r.environment === null) throw new UsageError(`${where}: damaged run: environment is not an object`);
  const summary = r.summary as unknown as Record<string, { median?: unknown; min?: unknown; max?: unknown } | undefined>;
  if (typeof summary !== 'object' || summary === null) throw new UsageError(`${where}: damaged run: summary is not an object`);
  for (const key of PHASES) {
    const v = summary[key];
    if (!v || !num(v.median) || !num(v.min) || !num(v.max)) throw new UsageError(`${where}: damaged run: summary.${key} needs median, min and max numbers`);
  }
  return r as Run;
}

/** Every run in the file, in order. */
export function readRuns(file: string): Run[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read run file '${file}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`run file '${file}' is damaged (not valid JSON: ${(err as Error).message})`);
  }
  if (Array.isArray(json)) {
    if (json.length === 0) throw new UsageError(`run file '${file}' holds no runs`);
    return json.map((r, i) => checkRun(r, `run file '${file}' [${i}]`));
  }
  return [checkRun(json, `run file '${file}'`)];
}

/**
 * The runs a spec names, each with its name: every run of `file.json` (named
 * `file.json:N` when it holds several), or the one picked by `file.json:N`.
 */
export function readRunSpec(spec: string): { name: string; run: Run }[] {
  const m = /^(.*):([^:/]*)$/.exec(spec);
  const file = m && !fs.existsSync(spec) && fs.existsSync(m[1]) ? m[1] : spec;
  const runs = readRuns(file);
  if (m && file !== spec) {
    const count = `${runs.length} run${runs.length === 1 ? '' : 's'}`;
    if (!/^\d+$/.test(m[2])) throw new UsageError(`run '${spec}': index '${m[2]}' is not allowed: '${file}' holds ${count}, pick one as ${file}:0 .. ${file}:${runs.length - 1}`);
    const i = Number(m[2]);
    if (i >= runs.length) throw new UsageError(`run file '${file}' holds ${count}; index ${i} is past the end (0..${runs.length - 1})`);
    return [{ name: spec, run: runs[i] }];
  }
  return runs.map((run, i) => ({ name: runs.length > 1 ? `${file}:${i}` : file, run }));
}

/** The single run in the file (or the one picked by a `file.json:N` suffix). */
export function readRun(spec: string): Run {
  const runs = readRunSpec(spec);
  if (runs.length > 1) throw new UsageError(`run file '${spec}' holds ${runs.length} runs; pick one as ${spec}:0 .. ${spec}:${runs.length - 1}`);
  return runs[0].run;
}
