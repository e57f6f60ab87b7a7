#!/usr/bin/env node
'use strict';
// Side by side in one run: every ResNet-50 convolution and pass, the best
// stepscope variant against PyTorch doing the same convolution (fp32, NCHW,
// same thread count), plus the summary figures of issue #2's targets.
//
//   node bench/conv-vs-pytorch.js [--batch 8] [--repeat 5] [--warmup 1]
//       [--layer all] [--pass all] [--variant all] [--out bench/results/conv-vs-pytorch.json]
// Needs `npm ci` (the addon and dist/) and `pip install torch==2.13.0+cpu`.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const args = { batch: '8', repeat: '5', warmup: '1', layer: 'all', pass: 'all', variant: 'all', out: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '');
  if (!(key in args) || argv[i + 1] === undefined) {
    console.error(`conv-vs-pytorch: unknown or incomplete option '${argv[i]}'; allowed: ${Object.keys(args).map((k) => `--${k}`).join(', ')}`);
    process.exit(2);
  }
  args[key] = argv[i + 1];
}

function run(cmd, cmdArgs) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) {
    console.error(`conv-vs-pytorch: '${cmd} ${cmdArgs.join(' ')}' exited with ${r.status}`);
    process.exit(r.status === 2 ? 2 : 1);
  }
  return JSON.parse(r.stdout);
}

console.error('stepscope: timing every variant ...');
const ours = run(process.execPath, [path.join(root, 'bin', 'stepscope.js'), 'bench', 'conv', '--json',
  '--batch', args.batch, '--repeat', args.repeat, '--warmup', args.warmup,
  '--layer', args.layer, '--pass', args.pass, '--variant', args.variant]);

const shapes = new Map();
for (const row of ours.rows) {
  const key = row.sameShapeAs ?? row.layer;
  if (!shapes.has(key)) shapes.set(key, { key, ...row.shape });
}
const shapesFile = path.join(os.tmpdir(), `stepscope-shapes-${process.pid}.json`);
fs.writeFileSync(shapesFile, JSON.stringify([...shapes.values()]));
const passes = [...new Set(ours.rows.map((r) => r.pass))].join(',');
console.error('pytorch: timing the same convolutions ...');
const peer = run('python3', [path.join(__dirname, 'pytorch_conv.py'), '--shapes', shapesFile, '--repeat', args.repeat,
  '--warmup', args.warmup, '--threads', String(ours.machine.threads), '--passes', passes]);
fs.unlinkSync(shapesFile);
const torch = new Map(peer.rows.map((r) => [`${r.key}|${r.pass}`, r]));

// One line per layer and pass: the best variant, its figures, PyTorch's time.
const lines = new Map();
for (const row of ours.rows) {
  if (row.status !== 'ok') continue;
  const id = `${row.layer}|${row.pass}`;
  const line = lines.get(id) ?? { layer: row.layer, pass: row.pass, shape: row.shapeText, variants: {} };
  line.variants[row.variant] = { medianMs: row.medianMs, minMs: row.minMs, maxMs: row.maxMs, pctPeak: row.pctPeak, reorderMs: row.reorderMs };
  if (!line.best || row.medianMs < line.best.medianMs) line.best = { variant: row.variant, medianMs: row.medianMs, pctPeak: row.pctPeak };
  const t = torch.get(`${row.sameShapeAs ?? row.layer}|${row.pass}`);
  line.torch = t && { medianMs: t.medianMs, minMs: t.minMs, maxMs: t.maxMs };
  lines.set(id, line);
}
const table = [...lines.values()];
for (const l of table) l.torchOverBest = l.torch ? l.torch.medianMs / l.best.medianMs : null;

const pad = (s, n) => String(s).padEnd(n);
const num = (v, d, n) => (v == null ? '-' : v.toFixed(d)).padStart(n);
console.log(`machine: ${ours.machine.cpuModel}, ${ours.machine.threads} threads; peak ${ours.machine.peak.fmaGflops.toFixed(1)} GFLOP/s fp32 FMA, ` +
  `${ours.machine.peak.bandwidthGBs.toFixed(1)} GB/s; cpu backend, fp32, batch ${ours.batch}; peer PyTorch ${peer.version} (${peer.threads} threads, mkldnn ${peer.mkldnn})`);
console.log(`${pad('layer', 16)}${pad('pass', 11)}${pad('best variant', 13)}${'best ms'.padStart(9)}${'% peak'.padStart(8)}${'torch ms'.padStart(10)}${'torch/best'.padStart(11)}${'own gemm %'.padStart(11)}`);
for (const l of table) {
  const own = l.variants['im2col-gemm'];
  console.log(`${pad(l.layer, 16)}${pad(l.pass, 11)}${pad(l.best.variant, 13)}${num(l.best.medianMs, 3, 9)}${num(l.best.pctPeak, 1, 8)}` +
    `${num(l.torch && l.torch.medianMs, 3, 10)}${num(l.torchOverBest, 2, 11)}${num(own && own.pctPeak, 1, 11)}`);
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const slower = table.filter((l) => l.torchOverBest !== null && l.torchOverBest < 1);
const own3x3 = table.filter((l) => /3x3/.test(l.shape) && l.variants['im2col-gemm']).map((l) => l.variants['im2col-gemm'].pctPeak);
const summary = {
  rows: table.length,
  bestNoSlowerThanTorch: `${table.length - slower.length}/${table.length}`,
  slowerThanTorch: slower.map((l) => `${l.layer} ${l.pass} (${l.torchOverBest.toFixed(2)}x)`),
  medianBestPctPeak: table.length ? median(table.map((l) => l.best.pctPeak)) : null,
  ownGemm3x3PctPeak: own3x3.length ? { min: Math.min(...own3x3), median: median(own3x3), max: Math.max(...own3x3) } : null,
  geomeanTorchOverBest: table.length ? Math.exp(table.reduce((s, l) => s + Math.log(l.torchOverBest ?? 1), 0) / table.length) : null,
};
console.log('\nsummary');
console.log(`  best stepscope variant no slower than PyTorch: ${summary.bestNoSlowerThanTorch} layer-passes` +
  (slower.length ? `; slower: ${summary.slowerThanTorch.join(', ')}` : ''));
console.log(`  geometric mean of torch/best: ${summary.geomeanTorchOverBest?.toFixed(2)}x`);
console.log(`  median layer-pass at ${summary.medianBestPctPeak?.toFixed(1)}% of measured fp32 FMA peak`);
if (summary.ownGemm3x3PctPeak) {
  const o = summary.ownGemm3x3PctPeak;
  console.log(`  im2col-gemm on 3x3 layers: ${o.min.toFixed(1)}% min, ${o.median.toFixed(1)}% median, ${o.max.toFixed(1)}% max of peak`);
}
if (args.out) {
  fs.mkdirSync(path.dirname(path.resolve(args.out)), { recursive: true });
  const tmp = `${args.out}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ date: new Date().toISOString(), machine: ours.machine, batch: ours.batch, peer, table, summary, stepscopeRows: ours.rows }, null, 2));
  fs.renameSync(tmp, args.out);
}
