// `stepscope reproduce`: the main job. Runs the two profiles of the published
// comparison (pytorch-like, tf-like) on this machine with generated data,
// prints the comparison's table side by side, explains the difference, then
// tests the hypothesis the comparison ended on: tf-like with pytorch-like's
// kernels, predicted from the recorded runs, then measured. On the cuda
// backend the profiles' kernels are CUDA's: 'autotune' is cuDNN's (every
// algorithm timed per layer and pass, as cudnn.benchmark), 'default' its
// heuristic; the data is decoded on the host and copied to the GPU.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { attribute, type Attribution } from '../analysis/attribution';
import { scanImageFolder } from '../data/imagefolder';
import { makeImageFolder } from '../data/make';
import { packImageFolder } from '../data/pack';
import { writeJsonAtomic } from '../io/json-file';
import { checkDirectory, ensureDirectory } from '../io/output-path';
import { BUCKET_MB } from '../options';
import { addon } from '../native';
import type { Backend } from '../backend';
import { cudaStatus } from '../native-cuda';
import { UsageError } from '../errors';
import { autotunePlan } from '../plan/autotune';
import { defaultPlan, planFromJson, type Plan } from '../plan/plan';
import { resnet50Graph, type ResNetGraph } from '../model/graph';
import { canUseBlocked } from '../run/executor';
import { formatAttribution } from '../report/explain-report';
import { htmlReport } from '../report/html-report';
import type { Progress } from '../report/progress';
import { formatTable } from '../report/table';
import { loadProfile, profileFile, type Profile } from '../run/profile';
import { runTraining, type Run, type TrainingConfig } from '../run/training';
import { kernelsFromRun } from '../whatif/changes';
import { predict } from '../whatif/predict';
import { pathOf } from './explain';

export interface ReproduceOptions {
  batch: number;
  resolution: number;
  width: number;
  iterations: number;
  warmup: number;
  workers: number;
  link?: { gbps: number; latencyUs: number };
  images: number;
  classes: number;
  dataDir: string;
  saveDir: string;
  profiles: [string, string];
  seed: number;
  /** Where the steps run (default cpu). */
  backend?: Backend;
}

export interface ReproduceResult {
  profiles: [Profile, Profile];
  runs: [Run, Run];
  attribution: Attribution;
  hypothesis: { description: string; predictedMs: number; measuredMs: number; errorPct: number; run: Run; calibration: number };
  files: { data: string; records: string; runs: string[] };
}

/** Whether a cached ImageFolder is complete and whole: its marker, and the images and classes it should hold. */
function cachedFolderUsable(root: string, o: ReproduceOptions): boolean {
  if (!fs.existsSync(path.join(root, '.complete'))) return false;
  try {
    const f = scanImageFolder(root);
    return f.files.length === o.images && f.classes.length === o.classes;
  } catch {
    return false; // a class folder without images, say (made before images >= classes was checked)
  }
}

/** A generated ImageFolder and its records, made once per size and reused; a failed make leaves nothing behind. */
async function prepareData(o: ReproduceOptions, progress: (label: string) => void): Promise<{ folder: string; records: string }> {
  const root = path.join(o.dataDir, `images-${o.images}x${o.classes}-seed${o.seed}`);
  // Records keep the shorter side at 256/224 of the training size, as ImageNet's.
  const size = Math.round((o.resolution * 256) / 224);
  const records = path.join(o.dataDir, `images-${o.images}x${o.classes}-seed${o.seed}-${size}.records`);
  if (!cachedFolderUsable(root, o)) {
    progress(`generating ${o.images} JPEGs in ${root}`);
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(records, { force: true }); // packed from the folder being replaced
    try {
      await makeImageFolder(root, o.images, o.classes, o.seed, os.cpus().length, 90, undefined, { name: '--data-dir', onNote: () => undefined });
      fs.writeFileSync(path.join(root, '.complete'), '');
    } catch (err) {
      fs.rmSync(root, { recursive: true, force: true });
      throw err;
    }
  }
  if (!fs.existsSync(records)) {
    progress(`packing records (shorter side ${size})`);
    await packImageFolder(root, records, size, os.cpus().length, 'fail', undefined, { folder: '--data-dir', out: '--data-dir' });
  }
  return { folder: root, records };
}

/** A profile's error: names its file and field, not a CLI option the user did not give. */
function profileError(file: string, field: string, why: string): UsageError {
  return new UsageError(`profile '${file}', field "${field}": ${why}`);
}

/** A CLI-worded plan or layout error (`--kernels conv: ...`, `--layout nChw16c: ...`) reworded for a profile's field. */
function fromProfileField(err: unknown, file: string, field: string, option: string): unknown {
  if (!(err instanceof UsageError)) return err;
  const rest = err.message.startsWith(option) ? err.message.slice(option.length).replace(/^:?\s*/, '') : err.message;
  return profileError(file, field, rest);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * What loadProfile leaves unchecked, checked before any work: the name (runs
 * are saved as <name>.json), the description, the types of a plan's
 * entries, the reduction's bucket sizes (the CLI's limits), a plan's
 * variants and a layout the plan cannot run (both named as the profile's
 * fields). Returns the profile with a missing description as ''.
 */
function checkProfile(p: Profile, file: string, graph: ResNetGraph, backend: Backend): Profile {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(p.name) || p.name.length > 100) {
    throw profileError(file, 'name', `${JSON.stringify(p.name)} is not allowed: letters, digits, '.', '_' and '-' (the runs are saved as <name>.json)`);
  }
  if (p.description !== undefined && typeof p.description !== 'string') throw profileError(file, 'description', `${JSON.stringify(p.description)} is not allowed: a string`);
  const k: unknown = p.kernels;
  if (k !== 'autotune' && k !== 'default') {
    if (!isRecord(k)) throw profileError(file, 'kernels', `${JSON.stringify(k)} is not allowed: "autotune", "default" or a plan {"ops": {...}, "layers": {...}}`);
    const unknown = Object.keys(k).filter((x) => x !== 'ops' && x !== 'layers');
    if (unknown.length) throw profileError(file, 'kernels', `${unknown.map((x) => JSON.stringify(x)).join(', ')} is not allowed in a plan: only "ops" and "layers"`);
    for (const part of ['ops', 'layers'] as const) {
      const entries = k[part];
      if (entries === undefined) continue;
      if (!isRecord(entries)) throw profileError(file, `kernels.${part}`, `${JSON.stringify(entries)} is not allowed: an object of name: "variant" entries`);
      for (const [name, variant] of Object.entries(entries)) {
        if (typeof variant !== 'string') throw profileError(file, `kernels.${part}.${name}`, `${JSON.stringify(variant)} is not allowed: a variant name (a string)`);
      }
    }
  }
  for (const key of ['bucketMb', 'firstBucketMb'] as const) {
    const v = p.reduction[key];
    if (!(typeof v === 'number' && Number.isFinite(v) && v >= BUCKET_MB.min && v <= BUCKET_MB.max)) {
      throw profileError(file, `reduction.${key}`, `${JSON.stringify(v)} is not allowed: a number of MB from ${BUCKET_MB.min} to ${BUCKET_MB.max} (as --${key === 'bucketMb' ? 'bucket-mb' : 'first-bucket-mb'})`);
    }
  }
  if (p.kernels !== 'autotune') checkLayout(p, file, plainPlan(p, file, graph, backend), graph);
  return { ...p, description: p.description ?? '' };
}

/** The plan of a profile that names one ('default' or a plan object); its variant errors name the profile's field. */
function plainPlan(p: Profile, file: string, graph: ResNetGraph, backend: Backend): Plan {
  if (p.kernels === 'default') return defaultPlan(backend);
  try {
    return planFromJson(p.kernels as Exclude<Profile['kernels'], string>, graph, backend);
  } catch (err) {
    throw fromProfileField(err, file, 'kernels', '--kernels');
  }
}

/** A blocked layout (nChw16c) that the plan cannot run, as the profile's field (the step would say `--layout nChw16c`). */
function checkLayout(p: Profile, file: string, plan: Plan, graph: ResNetGraph): void {
  if (p.layout !== 'nChw16c') return;
  const problem = canUseBlocked(graph, plan);
  if (problem) throw profileError(file, 'layout', `"nChw16c" is not allowed with this profile's kernels: ${problem} (use "auto" or "nchw")`);
}

async function planFor(p: Profile, o: ReproduceOptions, file: string, graph: ResNetGraph, progress: (label: string) => void): Promise<Plan> {
  const backend = o.backend ?? 'cpu';
  if (p.kernels !== 'autotune') return plainPlan(p, file, graph, backend);
  // On CUDA the library autotunes each kernel as it is prepared (cudnnFind, as cudnn.benchmark).
  if (backend === 'cuda') return { ...defaultPlan('cuda'), ops: { ...defaultPlan('cuda').ops, conv: 'cudnn:autotune' } };
  // Autotuned once per size; the choice is cached beside the runs (an unreadable cache is autotuned again).
  const cache = path.join(o.saveDir, `autotune-b${o.batch}-r${o.resolution}-w${o.width}.json`);
  if (fs.existsSync(cache)) {
    try {
      const plan = JSON.parse(fs.readFileSync(cache, 'utf8')).plan as Plan;
      return planFromJson(plan, graph, backend);
    } catch {
      progress(`the cached autotuned plan ${cache} is unreadable: autotuning again`);
    }
  }
  progress('autotuning convolutions (each variant checked, then timed)');
  const r = await autotunePlan({ batch: o.batch, resolution: o.resolution, width: o.width }, 1);
  writeJsonAtomic(cache, { plan: r.plan, choices: r.choices });
  return r.plan;
}

function trainingConfig(p: Profile, plan: Plan, o: ReproduceOptions, data: { folder: string; records: string }): TrainingConfig {
  const kind = p.data.kind;
  return {
    batch: o.batch, resolution: o.resolution, classes: o.classes, width: o.width,
    iterations: o.iterations, warmup: o.warmup, lr: 0.1, momentum: 0.9, weightDecay: 1e-4, seed: o.seed,
    plan, layout: p.layout, backend: o.backend ?? 'cpu',
    data: kind === 'synthetic' ? undefined : { kind, dataset: kind === 'raw' ? data.folder : data.records, threads: p.data.threads, prefetch: p.data.prefetch, onBadImage: 'fail' },
    reduction: o.workers > 1
      ? { workers: o.workers, schedule: p.reduction.schedule, comm: 'local', bucketBytes: p.reduction.bucketMb * 2 ** 20, firstBucketBytes: p.reduction.firstBucketMb * 2 ** 20, link: o.link }
      : undefined,
  };
}

export async function reproduce(o: ReproduceOptions, bar: Progress): Promise<ReproduceResult> {
  const jpeg = addon().buildInfo().jpeg;
  if (!jpeg.found) throw new UsageError(`reproduce generates and decodes JPEGs, but this build has no libjpeg: ${jpeg.reason ?? 'not found'} (apt-get install libjpeg62-turbo-dev, then npm ci)`);
  // Every input is checked before any work (generating data, autotuning, runs).
  if (o.images < o.classes) {
    throw new UsageError(`--images ${o.images} is not allowed with --classes ${o.classes}: every class needs an image (give --images ${o.classes} or more, or --classes ${o.images} or fewer)`);
  }
  const graph = resnet50Graph({ batch: o.batch, resolution: o.resolution, width: o.width, classes: o.classes });
  const files = o.profiles.map(profileFile) as [string, string];
  const profiles = o.profiles.map((name, i) => checkProfile(loadProfile(name), files[i], graph, o.backend ?? 'cpu')) as [Profile, Profile];
  if (profiles[0].name === profiles[1].name) {
    throw new UsageError(`--profiles '${o.profiles.join(',')}' is not allowed: both profiles are named '${profiles[0].name}' (the runs are saved as <name>.json); give profiles with different names`);
  }
  checkDirectory('--save-dir', o.saveDir); // both checked before either is created
  checkDirectory('--data-dir', o.dataDir);
  ensureDirectory('--save-dir', o.saveDir);
  ensureDirectory('--data-dir', o.dataDir);
  // Steps of the job, for the progress bar: data, two plans, three runs.
  const total = 6;
  let step = 0;
  const progress = (label: string) => bar.update(step / total, label);
  const data = await prepareData(o, progress);
  step++;
  const plans: Plan[] = [];
  for (let i = 0; i < 2; i++) {
    plans.push(await planFor(profiles[i], o, files[i], graph, progress));
    if (profiles[i].kernels === 'autotune') checkLayout(profiles[i], files[i], plans[i], graph); // known only now (the others: checkProfile)
    step++;
  }
  const runs: Run[] = [];
  const saved: string[] = [];
  // `profile`: the index of the profile whose layout the run takes (named when the step refuses it).
  const record = async (name: string, config: TrainingConfig, profile: number) => {
    let run: Run;
    try {
      run = await runTraining(config, (f) => progress(`${name}: iteration ${f.index + 1}/${config.warmup + config.iterations}`));
    } catch (err) {
      // The step words a layout it cannot run as the CLI's option; here it is the profile's field.
      if (err instanceof UsageError && err.message.startsWith('--layout')) throw fromProfileField(err, files[profile], 'layout', `--layout ${config.layout}`);
      throw err;
    }
    if (run.config.reduction) delete run.config.reduction.communicator;
    const file = path.join(o.saveDir, `${name}.json`);
    writeJsonAtomic(file, run);
    saved.push(file);
    step++;
    return run;
  };
  for (let i = 0; i < 2; i++) runs.push(await record(profiles[i].name, trainingConfig(profiles[i], plans[i], o, data), i));
  const attribution = attribute(runs[0], runs[1]);

  // The hypothesis: the second profile with the first one's kernels (and the layout they need).
  const [a, b] = profiles;
  const description = `${b.name} with ${a.name}'s kernels`;
  const prediction = predict(runs[1], (m) => kernelsFromRun(m, runs[0], `${a.name} run`).model);
  const hypothesisConfig = { ...trainingConfig(b, plans[0], o, data), layout: a.layout };
  const measuredRun = await record(`${b.name}+${a.name}-kernels`, hypothesisConfig, 0);
  const measuredMs = measuredRun.summary.totalMs.median;
  bar.done();
  return {
    profiles,
    runs: [runs[0], runs[1]],
    attribution,
    hypothesis: { description, predictedMs: prediction.totalMs, measuredMs, errorPct: (100 * (prediction.totalMs - measuredMs)) / measuredMs, run: measuredRun, calibration: prediction.calibration },
    files: { data: data.folder, records: data.records, runs: saved },
  };
}

export function formatReproduce(r: ReproduceResult, o: ReproduceOptions): string {
  const [a, b] = r.runs;
  const [pa, pb] = r.profiles;
  const row = (label: string, get: (run: Run) => number) => ({ label, a: get(a), b: get(b) });
  const rows = [
    row('per iteration', (x) => x.summary.totalMs.median),
    row('preprocessing (data wait)', (x) => x.summary.dataMs.median),
    row('forward', (x) => x.summary.forwardMs.median),
    row('backward', (x) => x.summary.backwardMs.median),
    row('exposed reduction', (x) => x.summary.reductionExposedMs.median),
    row('optimizer', (x) => x.summary.optimizerMs.median),
  ];
  const h = r.hypothesis;
  return [
    `stepscope reproduce: ResNet-50 v1.5, ${o.backend === 'cuda' ? `cuda (${cudaStatus().info?.device?.name ?? 'GPU'})` : 'cpu'}, fp32, batch ${o.batch} per worker, ${o.resolution}x${o.resolution}, ${o.workers} workers (local communicator` +
      `${o.link ? `, modeled link ${o.link.gbps} GB/s, ${o.link.latencyUs} us` : ''}), ${o.images} generated JPEGs in ${o.classes} classes; medians over ${o.iterations} iterations`,
    `  ${pa.name}: ${pa.description}`,
    `  ${pb.name}: ${pb.description}`,
    '',
    formatTable(rows, [
      { header: 'ms', value: (x) => x.label },
      { header: pa.name, value: (x) => x.a, digits: 1 },
      { header: pb.name, value: (x) => x.b, digits: 1 },
      { header: 'difference', value: (x) => x.b - x.a, digits: 1 },
    ]),
    `data pipeline busy per batch: ${pa.name} ${(a.summary.dataBusyMs?.median ?? 0).toFixed(1)} ms, ${pb.name} ${(b.summary.dataBusyMs?.median ?? 0).toFixed(1)} ms`,
    '',
    formatAttribution(r.attribution, pa.name, pb.name),
    '',
    `hypothesis: ${h.description}`,
    `  predicted from the two recorded runs: ${h.predictedMs.toFixed(1)} ms per iteration; measured: ${h.measuredMs.toFixed(1)} ms (error ${h.errorPct >= 0 ? '+' : ''}${h.errorPct.toFixed(1)}%)`,
    `  ${pb.name} itself: ${b.summary.totalMs.median.toFixed(1)} ms; with ${pa.name}'s kernels it ${h.measuredMs < b.summary.totalMs.median ? 'gets faster' : 'gets slower'} by ${Math.abs(h.measuredMs - b.summary.totalMs.median).toFixed(1)} ms (measured)`,
    '',
    `runs saved: ${r.files.runs.join(', ')}`,
  ].join('\n');
}

export function reproduceReport(r: ReproduceResult): string {
  const [pa, pb] = r.profiles;
  return htmlReport({
    title: `stepscope reproduce: ${pa.name} vs ${pb.name}`,
    summary: [`${pa.name}: ${pa.description}`, `${pb.name}: ${pb.description}`],
    runs: [
      { name: pa.name, run: r.runs[0], path: pathOf(r.runs[0]) },
      { name: pb.name, run: r.runs[1], path: pathOf(r.runs[1]) },
      { name: r.hypothesis.description, run: r.hypothesis.run, path: pathOf(r.hypothesis.run) },
    ],
    attribution: r.attribution,
    whatif: [{ title: 'Hypothesis: predicted, then measured', rows: [{ label: r.hypothesis.description, predictedMs: r.hypothesis.predictedMs, measuredMs: r.hypothesis.measuredMs }], notes: [`calibration ${r.hypothesis.calibration.toFixed(3)} (measured / replay of the ${pb.name} run)`] }],
  });
}
