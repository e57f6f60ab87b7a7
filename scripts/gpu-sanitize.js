#!/usr/bin/env node
// Our own CUDA conv kernels on small shapes of every ResNet-50 shape class
// and pass, each checked against the CPU reference: meant to run under
// compute-sanitizer (scripts/gpu-check.sh, phase `sanitize`), which finds
// what a correct result can hide: shared-memory races (racecheck),
// out-of-bounds or misaligned accesses (memcheck), barrier misuse
// (synccheck). Prints one JSON line; exit 1 if a result is wrong.
//   compute-sanitizer --tool racecheck node scripts/gpu-sanitize.js [variants]
'use strict';
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const { resnet50Convs, shapeClass } = require(path.join(ROOT, 'dist/src/model/resnet50'));
const { checkCudaConvVariants } = require(path.join(ROOT, 'dist/src/ops/conv-cuda'));
const { cudaAddon } = require(path.join(ROOT, 'dist/src/native-cuda'));
const { CONV_PASSES } = require(path.join(ROOT, 'dist/src/ops/conv'));

const variants = (process.argv[2] ?? 'implicit-gemm-tf32,implicit-gemm-tf32-pipelined,implicit-gemm-tf32-along-m,implicit-gemm-bf16,direct').split(',');

async function main() {
  const cuda = cudaAddon();
  const stream = new cuda.Stream('sanitize');
  // One layer per shape class at batch 2, 64 px, width 16: several blocks and K steps each.
  const layers = new Map();
  for (const l of resnet50Convs({ batch: 2, resolution: 64, width: 16 })) if (!layers.has(shapeClass(l.shape))) layers.set(shapeClass(l.shape), l);
  const rows = [];
  for (const [cls, layer] of layers) {
    for (const pass of CONV_PASSES) {
      for (const check of await checkCudaConvVariants(stream, layer.shape, pass, variants, 'fp32', 17, layer.name)) {
        rows.push({ class: cls, layer: layer.name, pass, variant: check.variant, status: check.status, maxRelErr: check.maxRelErr });
      }
    }
  }
  const bad = rows.filter((r) => r.status !== 'ok');
  console.log(JSON.stringify({ checked: rows.length, failed: bad, variants }));
  return bad.length === 0 ? 0 : 1;
}

main().then((code) => { process.exitCode = code; }, (err) => {
  console.error(`gpu-sanitize: ${err.code ? `${err.code}: ` : ''}${err.message}`);
  process.exitCode = 1;
});
