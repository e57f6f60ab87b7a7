#!/usr/bin/env node
// The floor of one ResNet-50 training iteration on a GPU (the perf-notes
// method: flops over the peak, bytes over the bandwidth), per kind of kernel,
// from the step's own kernels: every conv pass (2 flops per MAC; x, w and y
// read or written once), batch norm with the fused ReLU, the adds, pooling,
// FC, loss, the gradient sums and SGD (bytes and flops from the op kernels'
// describe(), as the step's timeline counts them). Needs no GPU.
//   node bench/gpu-floor.js [--batch 32] [--resolution 224] [--peak doctor.json]
// Without --peak: the H200 SXM spec sheet (fp32 67, TF32 495, bf16 989 dense
// TFLOP/s, HBM3e 4.8 TB/s); with a `doctor --json` of the GPU: its measured peaks.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const { resnet50Graph } = require(path.join(root, 'dist', 'src', 'model', 'graph'));
const { addon } = require(path.join(root, 'dist', 'src', 'native'));

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : process.argv[i + 1];
}
const batch = Number(arg('--batch', '32'));
const resolution = Number(arg('--resolution', '224'));
const peakFile = arg('--peak', undefined);
const spec = { fp32Gflops: 66.9e3, tf32Gflops: 494.7e3, bf16Gflops: 989.4e3, bandwidthGBs: 4800, source: 'H200 SXM spec sheet (dense)' };
const peak = peakFile ? { ...JSON.parse(fs.readFileSync(peakFile, 'utf8')).cudaPeak, source: `measured (${peakFile})` } : spec;
if (!peak.tf32Gflops) throw new Error(`${peakFile} has no cudaPeak: run doctor --json on the GPU`);

const graph = resnet50Graph({ batch, resolution, width: 64, classes: 1000 });
const cpu = addon();
const rows = new Map(); // kind -> { flops, bytes, kernels }
const add = (kind, flops, bytes) => {
  const r = rows.get(kind) ?? { flops: 0, bytes: 0, kernels: 0 };
  r.flops += flops;
  r.bytes += bytes;
  r.kernels += 1;
  rows.set(kind, r);
};
const op = (kind, name, params) => {
  const d = new cpu.OpKernel(name, 'fast', params).describe();
  add(kind, d.flops, d.bytes);
};

const consumers = new Map();
for (const n of graph.nodes) for (const t of n.inputs) consumers.set(t, (consumers.get(t) ?? 0) + 1);
for (let i = 0; i < graph.nodes.length; i++) {
  const n = graph.nodes[i];
  if (n.kind === 'conv') {
    const s = n.shape;
    const p = Math.floor((s.h + 2 * s.pad - s.r) / s.stride) + 1, q = Math.floor((s.w + 2 * s.pad - s.s) / s.stride) + 1;
    const macs = s.n * s.k * s.c * s.r * s.s * p * q;
    const bytes = 4 * (s.n * s.c * s.h * s.w + s.k * s.c * s.r * s.s + s.n * s.k * p * q);
    add('conv fwd', 2 * macs, bytes);
    add('conv bwd-filter', 2 * macs, bytes);
    if (n.inputs[0] !== graph.input) add('conv bwd-data', 2 * macs, bytes);
  } else if (n.kind === 'batchnorm') {
    const fused = graph.nodes[i + 1]?.kind === 'relu' && graph.nodes[i + 1].inputs[0] === n.output;
    const p = { n: n.n, c: n.c, hw: n.hw, relu: fused };
    op('batchnorm (+relu)', 'batchnorm-fwd', p);
    op('batchnorm (+relu)', 'batchnorm-bwd', p);
    if (fused) i++;
  } else if (n.kind === 'relu') {
    op('relu, add', 'relu-fwd', { size: n.size });
    op('relu, add', 'relu-bwd', { size: n.size });
  } else if (n.kind === 'add') {
    op('relu, add', 'add', { size: n.size, relu: n.relu });
    if (n.relu) op('relu, add', 'relu-bwd', { size: n.size });
  } else if (n.kind === 'maxpool') {
    const p = { n: n.n, c: n.c, h: n.h, w: n.w, k: 3, stride: 2, pad: 1 };
    op('pooling', 'maxpool-fwd', p);
    op('pooling', 'maxpool-bwd', p);
  } else if (n.kind === 'avgpool') {
    op('pooling', 'avgpool-fwd', { n: n.n, c: n.c, hw: n.hw });
    op('pooling', 'avgpool-bwd', { n: n.n, c: n.c, hw: n.hw });
  } else if (n.kind === 'fc') {
    op('fc, loss', 'fc-fwd', { n: n.n, in: n.in, out: n.out });
    op('fc, loss', 'fc-bwd', { n: n.n, in: n.in, out: n.out });
  }
}
op('fc, loss', 'softmax-xent', { n: batch, classes: 1000 });
// Backward sums the gradients of tensors read by two ops (block inputs).
for (const [t, count] of consumers) if (count > 1 && t !== graph.input) op('gradient sums', 'add', { size: graph.tensors.get(t) });
for (const p of graph.params.filter((x) => x.trainable)) op('sgd', 'sgd', { size: p.shape.reduce((a, b) => a * b, 1), lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });

const ms = (v) => v.toFixed(3);
const lines = [`floor of one training iteration: ResNet-50, batch ${batch}, ${resolution}x${resolution}, fp32 tensors; peaks: ${peak.source}: ` +
  `fp32 ${(peak.fp32Gflops / 1e3).toFixed(1)}, tf32 ${(peak.tf32Gflops / 1e3).toFixed(1)}, bf16 ${(peak.bf16Gflops / 1e3).toFixed(1)} TFLOP/s, ${peak.bandwidthGBs.toFixed(0)} GB/s`];
const header = ['kernels', 'count', 'GFLOP', 'MB', 'fp32 ms', 'tf32 ms', 'bf16 ms', 'memory ms', 'bf16 memory ms'];
const table = [header];
const total = { flops: 0, bytes: 0, kernels: 0 };
const floorOf = (r) => ({
  fp32: r.flops / (peak.fp32Gflops * 1e6), tf32: r.flops / (peak.tf32Gflops * 1e6), bf16: r.flops / (peak.bf16Gflops * 1e6),
  mem: r.bytes / (peak.bandwidthGBs * 1e6), mem16: r.bytes / 2 / (peak.bandwidthGBs * 1e6),
});
for (const [kind, r] of rows) {
  const f = floorOf(r);
  table.push([kind, String(r.kernels), (r.flops / 1e9).toFixed(1), (r.bytes / 1e6).toFixed(0), ms(f.fp32), ms(f.tf32), ms(f.bf16), ms(f.mem), ms(f.mem16)]);
  total.flops += r.flops;
  total.bytes += r.bytes;
  total.kernels += r.kernels;
}
const ft = floorOf(total);
table.push(['total', String(total.kernels), (total.flops / 1e9).toFixed(1), (total.bytes / 1e6).toFixed(0), ms(ft.fp32), ms(ft.tf32), ms(ft.bf16), ms(ft.mem), ms(ft.mem16)]);
const widths = header.map((_, c) => Math.max(...table.map((row) => row[c].length)));
for (const [i, row] of table.entries()) {
  lines.push(row.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  '));
  if (i === 0) lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
}
// Per kind the larger of compute and memory is its floor; the iteration's floor is their sum.
const sumFloor = (key) => [...rows.values()].reduce((s, r) => { const f = floorOf(r); return s + Math.max(f[key], key === 'bf16' ? f.mem16 : f.mem); }, 0);
lines.push(`floor (per kind, the larger of compute and memory, summed): fp32 ${ms(sumFloor('fp32'))} ms, tf32 ${ms(sumFloor('tf32'))} ms, bf16 (bf16 tensors) ${ms(sumFloor('bf16'))} ms per iteration; ` +
  `${total.kernels} kernels (eager: one host launch each)`);
console.log(lines.join('\n'));
