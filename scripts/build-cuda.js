#!/usr/bin/env node
// Builds the CUDA addon (build/stepscope_cuda.node) after the CPU one, as
// part of `npm ci`. It is optional: without nvcc, or when CMake cannot find
// cuDNN/cuBLAS, the build is skipped and the reason is written to
// build/cuda-status.json, which doctor and --backend cuda report.
//   STEPSCOPE_CUDA=0  skip;  STEPSCOPE_CUDA=1  fail (exit 1) if it cannot be built (CI)
//   CUDNN_ROOT, CUBLAS_ROOT, NCCL_ROOT, CUDACXX: passed through to CMake
//   STEPSCOPE_CUDA_ARCHITECTURES: e.g. "90" (default "80-real;90")
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const statusFile = path.join(root, 'build', 'cuda-status.json');
const mode = process.env.STEPSCOPE_CUDA ?? 'auto';

function writeStatus(status) {
  fs.mkdirSync(path.dirname(statusFile), { recursive: true });
  const tmp = `${statusFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ ...status, date: new Date().toISOString() }, null, 2) + '\n');
  fs.renameSync(tmp, statusFile);
}

function finish(built, reason, seconds) {
  writeStatus(built ? { built: true, seconds } : { built: false, reason });
  if (built) {
    console.log(`stepscope: CUDA addon built (build/stepscope_cuda.node, ${seconds} s)`);
    return;
  }
  console.log(`stepscope: CUDA addon not built: ${reason}`);
  if (mode === '1' || mode === 'on') process.exit(1);
}

function findNvcc() {
  const candidates = [process.env.CUDACXX, ...(process.env.PATH ?? '').split(path.delimiter).map((d) => path.join(d, 'nvcc')),
    process.env.CUDA_HOME && path.join(process.env.CUDA_HOME, 'bin', 'nvcc'), '/usr/local/cuda/bin/nvcc'];
  return candidates.find((c) => c && fs.existsSync(c));
}

if (mode === '0' || mode === 'off') {
  finish(false, 'disabled at build time (STEPSCOPE_CUDA=0)');
  process.exit(0);
}
const nvcc = findNvcc();
if (!nvcc) {
  finish(false, 'nvcc not found: install the CUDA toolkit, or set CUDACXX, then run `node scripts/build-cuda.js`');
  process.exit(0);
}

const start = Date.now();
const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const args = [cmakeJs, 'compile', '--out', 'build-cuda', '--CDSTEPSCOPE_CUDA=ON', `--CDCMAKE_CUDA_COMPILER=${nvcc}`];
if (process.env.STEPSCOPE_CUDA_ARCHITECTURES) args.push(`--CDSTEPSCOPE_CUDA_ARCHITECTURES=${process.env.STEPSCOPE_CUDA_ARCHITECTURES}`);
const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
const log = `${r.stdout ?? ''}${r.stderr ?? ''}`;
fs.mkdirSync(path.join(root, 'build-cuda'), { recursive: true });
fs.writeFileSync(path.join(root, 'build-cuda', 'build.log'), log);
const seconds = Math.round((Date.now() - start) / 1000);
if (r.status === 0 && fs.existsSync(path.join(root, 'build', 'stepscope_cuda.node'))) {
  finish(true, '', seconds);
} else {
  // Our CMake project says why in lines starting "stepscope-cuda:"; else the last error line.
  // CMake wraps a FATAL_ERROR message over indented lines: join them back.
  const ours = [...log.matchAll(/CMake Error[^\n]*\n((?:  .*\n?)+)/g)]
    .map((m) => m[1].split('\n').map((l) => l.trim()).join(' ').trim())
    .filter((m) => m.startsWith('stepscope-cuda: '))
    .map((m) => m.replace('stepscope-cuda: ', ''));
  const errors = log.split('\n').filter((l) => /error:|CMake Error|FAILED/.test(l));
  const why = ours[0] ?? errors.at(-1)?.trim() ?? `cmake-js exited with ${r.status}`;
  finish(false, `build failed: ${why} (log: build-cuda/build.log)`);
}
