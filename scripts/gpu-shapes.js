#!/usr/bin/env node
// The unique ResNet-50 conv shapes that `bench conv --layer <layers> --batch
// <n>` groups its rows by, as bench/pytorch_gpu.py's --shapes file: one
// object per shape, keyed by the group's first layer (scripts/gpu-check.sh).
//   node scripts/gpu-shapes.js <all|layer,layer,...> <batch>
'use strict';
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const { resnet50Convs } = require(path.join(ROOT, 'dist/src/model/resnet50'));
const { uniqueShapes } = require(path.join(ROOT, 'dist/src/bench/conv-bench'));

const [layersArg, batchArg] = process.argv.slice(2);
const batch = Number(batchArg);
if (!layersArg || !/^[1-9][0-9]*$/.test(batchArg ?? '')) {
  console.error(`gpu-shapes: usage: node scripts/gpu-shapes.js <all|layer,...> <batch>; got '${process.argv.slice(2).join(' ')}'`);
  process.exit(2);
}
const all = resnet50Convs({ batch });
const wanted = layersArg === 'all' ? null : layersArg.split(',');
const unknown = (wanted ?? []).filter((name) => !all.some((l) => l.name === name));
if (unknown.length > 0) {
  console.error(`gpu-shapes: unknown layer(s) ${unknown.join(', ')}; allowed: all or ResNet-50 conv names such as ${all[0].name}, ${all[1].name}`);
  process.exit(2);
}
const layers = all.filter((l) => !wanted || wanted.includes(l.name));
console.log(JSON.stringify(uniqueShapes(layers).map((g) => ({ key: g.first.name, ...g.first.shape }))));
