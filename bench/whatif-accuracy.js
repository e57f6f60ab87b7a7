#!/usr/bin/env node
'use strict';
// How good are what-if predictions? Three kinds of change, each both ways:
// a run is recorded, the change is predicted from it (`stepscope whatif`),
// then the changed setup is measured; the error is predicted vs measured
// median iteration time. Three ways: from the base setup's median run to the
// target's median run; the median of the predictions from every base run
// against the median of the target's runs; and paired by round
// (each round's base run predicts the same round's target run), summarized
// by the median |error| over rounds.
//   schedule:  serialized <-> overlapped
//   kernels:   conv onednn-nchw <-> im2col-gemm, durations from `bench conv --json` (both variants)
//   buckets:   25 MB <-> 2 MB (overlapped)
//
//   node bench/whatif-accuracy.js [--batch 4] [--resolution 96] [--iterations 6] [--rounds 9] [--out file.json] [--dir earlier-run-dir]
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const args = { batch: '4', resolution: '96', iterations: '6', warmup: '2', workers: '2', link: '2', rounds: '9', out: '', dir: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in args) || argv[i + 1] === undefined) {
    console.error(`whatif-accuracy: unknown or incomplete option '${argv[i]}'; allowed: ${Object.keys(args).map((k) => `--${k}`).join(', ')}`);
    process.exit(2);
  }
  args[key] = argv[i + 1];
}
const root = path.resolve(__dirname, '..');
const bin = path.join(root, 'bin', 'stepscope.js');
// --dir: a directory of an earlier run of this benchmark: its recordings are read again, not made.
const dir = args.dir || fs.mkdtempSync(path.join(os.tmpdir(), 'stepscope-whatif-'));

function stepscope(cmdArgs) {
  const r = spawnSync(process.execPath, [bin, ...cmdArgs], { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`stepscope ${cmdArgs.join(' ')} exited with ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const common = ['--batch', args.batch, '--resolution', args.resolution, '--iterations', args.iterations, '--warmup', args.warmup,
  '--workers', args.workers, '--link', args.link, '--latency', '5', '--layout', 'nchw'];
const setups = {
  serialized: ['--schedule', 'serialized', '--kernels', 'conv=onednn-nchw'],
  overlapped: ['--schedule', 'overlapped', '--kernels', 'conv=onednn-nchw'],
  'im2col-gemm': ['--schedule', 'overlapped', '--kernels', 'conv=im2col-gemm'],
  'buckets-2mb': ['--schedule', 'overlapped', '--kernels', 'conv=onednn-nchw', '--bucket-mb', '2'],
};
// This machine drifts by 10-20% over minutes: each setup is recorded in
// every round, rounds interleaved, and the run with the median iteration
// time of a setup's rounds stands for it (as base and as measurement).
const recorded = {};
function record(name, round) {
  const file = path.join(dir, `${name}-${round}.json`);
  if (!args.dir) {
    process.stderr.write(`round ${round}: recording ${name}\n`);
    stepscope(['step', ...common, ...setups[name], '--save', file]);
  }
  (recorded[name] ??= []).push({ file, run: JSON.parse(fs.readFileSync(file, 'utf8')) });
}
const benchFile = (variant) => {
  const file = path.join(dir, `bench-${variant.replace(/,/g, '+')}.json`);
  if (args.dir) return file;
  process.stderr.write(`benchmarking convolutions: ${variant}\n`);
  // --cold: in the step each convolution finds its data evicted by the kernels before it.
  // Repeat 9, the variants' runs interleaved (bench conv does): one benchmark of repeat 3 moved this case by 5-10%.
  fs.writeFileSync(file, stepscope(['bench', 'conv', '--variant', variant, '--batch', args.batch, '--resolution', args.resolution, '--repeat', '9', '--cold', '--json']));
  return file;
};

// --dir: as many rounds as were recorded there, unless --rounds says fewer.
const recordedRounds = args.dir ? fs.readdirSync(dir).filter((f) => /^serialized-\d+\.json$/.test(f)).length : Infinity;
if (args.dir && recordedRounds === 0) {
  console.error(`whatif-accuracy: --dir '${args.dir}' holds no recordings (serialized-0.json, ...) of this benchmark`);
  process.exit(2);
}
const rounds = Math.min(recordedRounds, argv.includes('--rounds') ? Number(args.rounds) : Infinity, args.dir ? Infinity : Number(args.rounds));
for (let round = 0; round < rounds; round++) for (const name of Object.keys(setups)) record(name, round);
const runs = Object.fromEntries(Object.entries(recorded).map(([name, list]) => {
  const sorted = [...list].sort((a, b) => a.run.summary.totalMs.median - b.run.summary.totalMs.median);
  return [name, sorted[Math.floor((sorted.length - 1) / 2)]];
}));
// Both variants in one benchmark: whatif scales the target's times by the
// in-step / benchmark ratio of the run's own variant.
const both = benchFile('onednn-nchw,im2col-gemm');
const benches = { 'onednn-nchw': both, 'im2col-gemm': both };

const cases = [
  { kind: 'schedule', from: 'serialized', to: 'overlapped', change: ['--schedule', 'overlapped'] },
  { kind: 'schedule', from: 'overlapped', to: 'serialized', change: ['--schedule', 'serialized'] },
  { kind: 'kernels', from: 'overlapped', to: 'im2col-gemm', change: ['--kernels', benches['im2col-gemm'], '--variant', 'im2col-gemm'] },
  { kind: 'kernels', from: 'im2col-gemm', to: 'overlapped', change: ['--kernels', benches['onednn-nchw'], '--variant', 'onednn-nchw'] },
  { kind: 'buckets', from: 'overlapped', to: 'buckets-2mb', change: ['--bucket-mb', '2'] },
  { kind: 'buckets', from: 'buckets-2mb', to: 'overlapped', change: ['--bucket-mb', '25'] },
];
const predictFrom = (file, c) => JSON.parse(stepscope(['whatif', file, ...c.change, '--json'])).prediction;
const pct = (predicted, measured) => (100 * (predicted - measured)) / measured;
const median = (xs) => { const v = [...xs].sort((a, b) => a - b); return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2; };
const rows = cases.map((c) => {
  // From the median run of the base setup, against the median run of the target.
  const out = predictFrom(runs[c.from].file, c);
  const measured = runs[c.to].run.summary.totalMs.median;
  // Paired by round: each round's base run predicts the same round's target run (recorded a minute apart,
  // so the machine's slow drift cancels); the median |error| over rounds is the typical error of one prediction.
  const predictions = recorded[c.from].map((base) => predictFrom(base.file, c).totalMs);
  const perRound = predictions.map((p, r) => pct(p, recorded[c.to][r].run.summary.totalMs.median));
  // Medians over all rounds: the median of the predictions (one from each base run, each with its own
  // contention figures) against the median of the target's runs.
  const medianPredictedMs = median(predictions), medianMeasuredMs = median(recorded[c.to].map((x) => x.run.summary.totalMs.median));
  return {
    ...c, baseMs: runs[c.from].run.summary.totalMs.median, predictedMs: out.totalMs, measuredMs: measured, errorPct: pct(out.totalMs, measured),
    calibration: out.calibration, perRoundErrorPct: perRound, medianAbsRoundErrorPct: median(perRound.map(Math.abs)),
    medianPredictedMs, medianMeasuredMs, mediansErrorPct: pct(medianPredictedMs, medianMeasuredMs),
  };
});

const { inRunCheck } = require(path.join(root, 'dist', 'src', 'whatif', 'inrun-check'));
const checks = Object.fromEntries(Object.entries(recorded).map(([name, list]) => [name, list.map((x) => inRunCheck(x.run))]));

const noise = Object.fromEntries(Object.entries(recorded).map(([name, list]) => {
  const t = list.map((x) => x.run.summary.totalMs.median);
  return [name, pct(median(t.filter((_, i) => i % 2 === 0)), median(t.filter((_, i) => i % 2 === 1)))];
}));
const TARGET_PCT = 5;
function verdict() {
  const worst = Math.max(...rows.map((r) => Math.abs(r.mediansErrorPct)));
  const noisy = Object.entries(noise).filter(([, e]) => Math.abs(e) > TARGET_PCT).map(([n, e]) => `${n} ${e.toFixed(1)} %`);
  if (worst <= TARGET_PCT) return `target ${TARGET_PCT} %: met (medians over the rounds, every case within ${worst.toFixed(1)} %)`;
  return `target ${TARGET_PCT} %: not met (medians over the rounds, worst case ${worst.toFixed(1)} %)` +
    (noisy.length ? `; the measurement's own noise floor is above the target (${noisy.join(', ')}): this run cannot resolve ${TARGET_PCT} %` : '');
}

const cpu = os.cpus()[0]?.model ?? 'unknown';
const lines = [
  `what-if accuracy: ${cpu}, ${os.cpus().length} cores; cpu backend, fp32, batch ${args.batch}, ${args.resolution}x${args.resolution}, ` +
    `${args.workers} workers (local), link ${args.link} GB/s; medians over ${args.iterations} iterations after ${args.warmup} warm-up; ` +
    `each setup recorded in ${args.rounds} interleaved rounds, its median run used`,
  'kind      from          to            base ms  predicted ms  measured ms  error %  | paired rounds: error % each, median |error| %',
  ...rows.map((r) => `${r.kind.padEnd(9)} ${r.from.padEnd(13)} ${r.to.padEnd(13)} ${r.baseMs.toFixed(1).padStart(7)}  ${r.predictedMs.toFixed(1).padStart(12)}  ${r.measuredMs.toFixed(1).padStart(11)}  ${r.errorPct.toFixed(1).padStart(7)}  | ` +
    `${r.perRoundErrorPct.map((e) => e.toFixed(1)).join(', ')}; ${r.medianAbsRoundErrorPct.toFixed(1)}`),
  `median runs: mean |error| ${(rows.reduce((s, r) => s + Math.abs(r.errorPct), 0) / rows.length).toFixed(1)} %, max |error| ${Math.max(...rows.map((r) => Math.abs(r.errorPct))).toFixed(1)} %; ` +
    `paired rounds: median |error| per case at most ${Math.max(...rows.map((r) => r.medianAbsRoundErrorPct)).toFixed(1)} %, mean ${(rows.reduce((s, r) => s + r.medianAbsRoundErrorPct, 0) / rows.length).toFixed(1)} %`,
  'medians over the rounds: the median of the predictions from every base run against the median of the target\'s runs:',
  ...rows.map((r) => `${r.kind.padEnd(9)} ${r.from.padEnd(13)} ${r.to.padEnd(13)} predicted ${r.medianPredictedMs.toFixed(1).padStart(6)}  measured ${r.medianMeasuredMs.toFixed(1).padStart(6)}  error ${r.mediansErrorPct.toFixed(1).padStart(5)} %`),
  `medians over the rounds: mean |error| ${(rows.reduce((s, r) => s + Math.abs(r.mediansErrorPct), 0) / rows.length).toFixed(1)} %, max |error| ${Math.max(...rows.map((r) => Math.abs(r.mediansErrorPct))).toFixed(1)} %`,
  // What a perfect model would show: the median of a setup's even rounds against its odd rounds.
  `noise floor (median of even rounds vs odd rounds, same setup): ${Object.entries(noise).map(([name, e]) => `${name} ${e.toFixed(1)} %`).join(', ')}`,
  verdict(),
  // The measurement's own noise: how far apart the rounds of one setup landed.
  'rounds of each setup (median iteration ms), and the contention its median run measured (conv / memory-bound / reduction slowdown, uncovered kernels):',
  ...Object.entries(recorded).map(([name, list]) => {
    const t = list.map((x) => x.run.summary.totalMs.median);
    const c = runs[name].run.contention;
    return `  ${name.padEnd(12)} ${t.map((x) => x.toFixed(1)).join(', ')} (spread ${((100 * (Math.max(...t) - Math.min(...t))) / Math.min(...t)).toFixed(1)} %)` +
      (c ? `; contention ${c.compute.toFixed(2)} / ${(c.memory ?? c.compute).toFixed(2)} / ${c.comm.toFixed(2)}, ${(100 * (c.uncovered ?? 0)).toFixed(1)} %` : '');
  }),
  // Each run also ran 3 iterations in the other arrangement: the schedule what-if against them, in the same process.
  "in-run check (each round's run predicts its own iterations with the reduction in the other arrangement), error %:",
  ...Object.entries(checks).map(([name, list]) => `  ${name.padEnd(12)} ${list.map((c) => (c ? c.errorPct.toFixed(1) : '-')).join(', ')}` +
    `; median |error| ${median(list.filter(Boolean).map((c) => Math.abs(c.errorPct))).toFixed(1)} %`),
];
console.log(lines.join('\n'));
if (args.out) {
  fs.writeFileSync(args.out, JSON.stringify({
    machine: cpu, args, rows, rounds: Object.fromEntries(Object.entries(recorded).map(([n, l]) => [n, l.map((x) => x.run.summary.totalMs.median)])),
    noiseFloorPct: noise,
    inRunCheckErrorPct: Object.fromEntries(Object.entries(checks).map(([n, l]) => [n, l.map((c) => c?.errorPct ?? null)])),
  }, null, 1));
}
