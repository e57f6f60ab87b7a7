#!/usr/bin/env node
'use strict';
// Side by side in one run: the ResNet-50 v1.5 training iteration in
// stepscope (CPU backend, fp32) against PyTorch and TensorFlow (CPU wheels)
// running the same model, batch and optimizer (bench/frameworks_step.py).
//
//   node bench/step-vs-frameworks.js [--batches 8,32] [--iterations 3] [--warmup 1] [--out file.json]
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const args = { batches: '8,32', iterations: '3', warmup: '1', out: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in args) || argv[i + 1] === undefined) {
    console.error(`step-vs-frameworks: unknown or incomplete option '${argv[i]}'; allowed: --batches, --iterations, --warmup, --out`);
    process.exit(2);
  }
  args[key] = argv[i + 1];
}
const root = path.resolve(__dirname, '..');
function json(cmd, cmdArgs) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`'${cmd} ${cmdArgs.join(' ')}' exited with ${r.status}`);
  return JSON.parse(r.stdout);
}

const rows = [];
for (const batch of args.batches.split(',').map(Number)) {
  console.error(`batch ${batch}: stepscope ...`);
  const ours = json(process.execPath, [path.join(root, 'bin', 'stepscope.js'), 'step', '--json', '--batch', String(batch),
    '--iterations', args.iterations, '--warmup', args.warmup]);
  console.error(`batch ${batch}: PyTorch and TensorFlow ...`);
  const peers = json('python3', [path.join(__dirname, 'frameworks_step.py'), '--framework', 'both', '--json', '--batch', String(batch),
    '--iterations', args.iterations, '--warmup', args.warmup, '--threads', String(ours.environment.threads)]);
  const torch = peers.results.pytorch, tf = peers.results.tensorflow;
  const faster = Math.min(torch.medianMs ?? Infinity, tf.medianMs ?? Infinity);
  rows.push({
    batch,
    stepscope: { medianMs: ours.summary.totalMs.median, minMs: ours.summary.totalMs.min, maxMs: ours.summary.totalMs.max,
      forwardMs: ours.summary.forwardMs.median, backwardMs: ours.summary.backwardMs.median, optimizerMs: ours.summary.optimizerMs.median,
      gflops: ours.summary.gflops, peakMiB: ours.summary.peakBytes / 2 ** 20, layout: ours.environment.layout },
    pytorch: torch, tensorflow: tf, ratioToFaster: ours.summary.totalMs.median / faster,
  });
}
const f = (v, d = 0) => (v == null ? '-' : v.toFixed(d));
console.log('ResNet-50 v1.5 training iteration, CPU, fp32, 224x224, SGD(0.1, momentum 0.9, wd 1e-4), 2 threads; median (min-max) ms');
for (const r of rows) {
  const s = r.stepscope;
  console.log(`batch ${r.batch}: stepscope ${f(s.medianMs)} (${f(s.minMs)}-${f(s.maxMs)}) [fwd ${f(s.forwardMs)}, bwd ${f(s.backwardMs)}, opt ${f(s.optimizerMs)}; ` +
    `${f(s.gflops, 1)} GFLOP/s; peak ${f(s.peakMiB)} MiB; ${s.layout}] | PyTorch ${r.pytorch.version} ${f(r.pytorch.medianMs)} (${f(r.pytorch.minMs)}-${f(r.pytorch.maxMs)}), ` +
    `peak RSS +${f(r.pytorch.rssGrowthMiB)} MiB | TensorFlow ${r.tensorflow.version} ${f(r.tensorflow.medianMs)} (${f(r.tensorflow.minMs)}-${f(r.tensorflow.maxMs)}), ` +
    `peak RSS +${f(r.tensorflow.rssGrowthMiB)} MiB | stepscope / faster peer = ${f(r.ratioToFaster, 2)}`);
}
if (args.out) {
  fs.writeFileSync(`${args.out}.tmp`, JSON.stringify({ date: new Date().toISOString(), rows }, null, 2));
  fs.renameSync(`${args.out}.tmp`, args.out);
}
