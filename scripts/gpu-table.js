#!/usr/bin/env node
// The side-by-side table of scripts/gpu-check.sh, from the JSON it saved in
// a results folder: per ResNet-50 convolution (unique shapes) and pass, the
// best stepscope CUDA variant and cudnn:autotune against PyTorch on the same
// GPU (cudnn.benchmark on), totals over the layers, and the training
// step: PyTorch's and stepscope's (eager and --graph) per dtype, with the
// throughput ratio against PyTorch eager of the same dtype.
//   node scripts/gpu-table.js <results folder>
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2];
if (!dir || !fs.existsSync(dir)) {
  console.error(`gpu-table: results folder '${dir ?? ''}' not found; usage: node scripts/gpu-table.js <folder>`);
  process.exit(2);
}
const read = (name) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
  } catch {
    return undefined;
  }
};
const fmt = (v, d = 3) => (v === undefined || v === null || Number.isNaN(v) ? '-' : v.toFixed(d));
/** The row with the smallest median (undefined for none). */
const fastestOf = (rows) => rows.reduce((a, r) => (a && a.medianMs <= r.medianMs ? a : r), undefined);
const pad = (rows) => {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ')).join('\n');
};

const out = [];
const OWN_IGEMM = ['implicit-gemm-tf32', 'implicit-gemm-tf32-pipelined', 'implicit-gemm-tf32-along-m', 'implicit-gemm-bf16'];
for (const dtype of ['fp32', 'tf32']) {
  const ours = read(`conv-cuda-${dtype}.json`);
  const peer = read(`pytorch-conv-${dtype}.json`);
  if (!ours) {
    out.push(`conv ${dtype}: no stepscope results (conv-cuda-${dtype}.json missing)`);
    continue;
  }
  const peerMs = new Map((peer?.rows ?? []).map((r) => [`${r.key} ${r.pass}`, r.medianMs]));
  const rows = [['layer', 'pass', 'best stepscope variant', 'ms', 'cudnn:autotune ms', 'pytorch ms', 'best/pytorch']];
  // Totals weight each shape by its layer count, over rows where both sides have a time.
  const totals = { best: 0, autotune: 0, peer: 0, layers: new Set() };
  const groups = new Map();
  for (const r of ours.rows) {
    const key = `${r.sameShapeAs ?? r.layer} ${r.pass}`;
    if (!groups.has(key)) groups.set(key, { layer: r.sameShapeAs ?? r.layer, pass: r.pass, rows: [], count: new Set() });
    const g = groups.get(key);
    g.count.add(r.layer);
    if (!r.sameShapeAs) g.rows.push(r);
  }
  for (const g of groups.values()) {
    const ok = g.rows.filter((r) => r.status === 'ok');
    const best = fastestOf(ok);
    const auto = ok.find((r) => r.variant === 'cudnn:autotune');
    const p = peerMs.get(`${g.layer} ${g.pass}`);
    const n = g.count.size;
    if (best && auto && p !== undefined) {
      totals.best += n * best.medianMs;
      totals.autotune += n * auto.medianMs;
      totals.peer += n * p;
      for (const l of g.count) totals.layers.add(l);
    }
    rows.push([g.layer + (n > 1 ? ` (x${n})` : ''), g.pass, best?.variant ?? '-', fmt(best?.medianMs), fmt(auto?.medianMs), fmt(p), best && p ? fmt(best.medianMs / p, 2) : '-']);
  }
  // The total compares like with like, so it needs PyTorch's rows: without them it would sum nothing.
  if (totals.layers.size > 0) {
    rows.push([`total (${totals.layers.size} layers)`, 'all', '', fmt(totals.best, 2), fmt(totals.autotune, 2), fmt(totals.peer, 2), fmt(totals.best / totals.peer, 2)]);
  }
  const failed = ours.rows.filter((r) => r.status === 'failed-check').length;
  const unsupported = ours.rows.filter((r) => r.status === 'unsupported' && !r.sameShapeAs).length;
  out.push(`conv ${dtype}, batch ${ours.batch}, ${ours.machine?.gpu?.name ?? 'GPU'}: stepscope (CUDA events) vs PyTorch ${peer?.torch ?? '(missing)'} (cudnn.benchmark)` +
    `; ${failed} row(s) failed the reference check, ${unsupported} unsupported`);
  out.push(pad(rows));
  out.push('');
  // Issue #5's target: our implicit GEMM at half of cuDNN's best or better on the 3x3 layers (speed ratio = cuDNN ms / ours ms).
  // The tf32 run only: in the fp32 run cuDNN does FMA math, ours tf32.
  if (dtype !== 'tf32') continue;
  const own = [['3x3 layer', 'pass', 'best cudnn:*', 'ms', ...OWN_IGEMM.map((v) => `${v} ms`), 'best own tf32 / cudnn speed']];
  for (const g of [...groups.values()].filter((x) => x.rows[0]?.shape?.r === 3)) {
    const ok = g.rows.filter((r) => r.status === 'ok');
    const cudnn = fastestOf(ok.filter((r) => r.variant.startsWith('cudnn:')));
    const mine = OWN_IGEMM.map((v) => ok.find((r) => r.variant === v));
    // The ratio takes the tf32 kernels only: the precision of cuDNN's rows in this run.
    const fastest = fastestOf(mine.filter((r) => r && r.variant !== 'implicit-gemm-bf16'));
    own.push([g.layer + (g.count.size > 1 ? ` (x${g.count.size})` : ''), g.pass, cudnn?.variant ?? '-', fmt(cudnn?.medianMs), ...mine.map((r) => fmt(r?.medianMs)),
      cudnn && fastest ? fmt(cudnn.medianMs / fastest.medianMs, 2) : '-']);
  }
  if (own.length > 1) {
    out.push(`conv ${dtype}: our implicit GEMM against cuDNN's best on the 3x3 layers (target: speed ratio >= 0.50)`);
    out.push(pad(own));
    out.push('');
  }
}
// The GPU's measured peaks (doctor --json): each stepscope step's GFLOP/s as a % of its dtype's peak.
const doctor = read('doctor.json');
const peakOf = (dtype) => doctor?.cudaPeak && (dtype === 'bf16' ? doctor.cudaPeak.bf16Gflops : dtype === 'tf32' ? doctor.cudaPeak.tf32Gflops : doctor.cudaPeak.fp32Gflops);
const steps = [['training step', 'dtype', 'layout', 'batch', 'total ms', 'forward ms', 'backward ms', 'optimizer ms', 'x pytorch', '% peak']];
const pytorchMs = new Map();
for (const name of fs.readdirSync(dir).filter((f) => /^pytorch-step-.*\.json$/.test(f)).sort()) {
  const s = read(name);
  if (!s) continue;
  pytorchMs.set(s.dtype, s.median.totalMs);
  steps.push([`pytorch ${s.torch}`, s.dtype, s.channelsLast ? 'NHWC' : 'NCHW', s.batch, fmt(s.median.totalMs, 2), fmt(s.median.forwardMs, 2), fmt(s.median.backwardMs, 2), fmt(s.median.optimizerMs, 2), '1.00', '-']);
}
// Throughput against PyTorch eager of the same dtype (> 1: stepscope is faster).
for (const name of fs.readdirSync(dir).filter((f) => /^stepscope-step-.*\.json$/.test(f)).sort()) {
  const r = read(name);
  if (!r || !r.summary) continue;
  const s = r.summary, dtype = r.environment.dtype, peer = pytorchMs.get(dtype);
  steps.push([`stepscope${r.config.graph ? ' --graph' : ''}`, dtype, r.environment.layout.toUpperCase(), r.config.batch, fmt(s.totalMs.median, 2), fmt(s.forwardMs.median, 2),
    fmt(s.backwardMs.median, 2), fmt(s.optimizerMs.median, 2), peer ? fmt(peer / s.totalMs.median, 2) : '-', peakOf(dtype) ? fmt((100 * s.gflops) / peakOf(dtype), 1) : '-']);
}
out.push(pad(steps));
const text = out.join('\n');
fs.writeFileSync(path.join(dir, 'summary.txt'), `${text}\n`);
console.log(text);
