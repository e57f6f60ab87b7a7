// The scripts that turn a GPU run's saved JSON into what a person reads
// (scripts/gpu-table.js: the side-by-side table and issue #5's targets;
// scripts/gpu-log-line.js: gpu-check's log lines), on results written here
// by hand in the formats that `bench conv --json`, `step --json`, `doctor
// --json` and bench/pytorch_gpu.py print. A device run is rare and short:
// its summary has to be right the first time.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ROOT, tempDir } from './helpers';

function runScript(script: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', script), ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const write = (dir: string, name: string, value: unknown) => fs.writeFileSync(path.join(dir, name), JSON.stringify(value));

type ConvRow = { layer: string; pass: string; variant: string; status: string; medianMs?: number; sameShapeAs?: string; shape: { r: number }; precision?: string };
const convRow = (layer: string, pass: string, variant: string, medianMs: number, r = 3): ConvRow => ({ layer, pass, variant, status: 'ok', medianMs, shape: { r } });

/** A stepscope step result as `step --json` saves it (the fields the table reads). */
function stepResult(dtype: string, layout: string, graph: boolean, totalMs: number, batchnorm = 'fused-relu', batch = 32) {
  const phase = (median: number) => ({ median, min: median * 0.98, max: median * 1.05 });
  return {
    config: { batch, graph, plan: { ops: { conv: 'cudnn:heuristic', batchnorm } } },
    environment: { dtype, layout, gpus: 1 },
    summary: { totalMs: phase(totalMs), forwardMs: phase(totalMs / 3), backwardMs: phase((totalMs * 2) / 3 - 1), optimizerMs: phase(1), enqueueUsPerKernel: 4.5, gflops: 100_000 },
  };
}
const pytorchStep = (dtype: string, totalMs: number) => ({
  peer: 'pytorch', mode: 'step', dtype, channelsLast: true, torch: '2.11.0', batch: 32,
  median: { totalMs, forwardMs: totalMs / 3, backwardMs: (totalMs * 2) / 3 - 1, optimizerMs: 1 },
});

function resultsFolder(): string {
  const dir = tempDir('stepscope-gpu-table-');
  // tf32 convs: res2a_branch2b (3x3) and res2a_branch1 (1x1), shared by res2b_branch2b.
  const rows: ConvRow[] = [];
  for (const pass of ['fwd', 'bwd-data', 'bwd-filter']) {
    rows.push(convRow('res2a_branch2b', pass, 'cudnn:autotune', 1.0), convRow('res2a_branch2b', pass, 'cudnn:heuristic', 1.2));
    // Ours at 0.6 of cuDNN's speed in fwd, 0.4 in the backward passes (target missed there).
    rows.push(convRow('res2a_branch2b', pass, 'implicit-gemm-tf32-along-m', pass === 'fwd' ? 1 / 0.6 : 1 / 0.4));
    rows.push({ ...convRow('res2a_branch2b', pass, 'implicit-gemm-tf32', 9), status: 'failed-check' });
    rows.push({ ...convRow('res2b_branch2b', pass, 'cudnn:autotune', 1.0), sameShapeAs: 'res2a_branch2b' });
    rows.push(convRow('res2a_branch1', pass, 'cudnn:autotune', 0.5, 1), convRow('res2a_branch1', pass, 'im2col-cublas', 0.45, 1));
    // Faster, but bf16: never the tf32 run's best (it would overstate stepscope against PyTorch's tf32).
    rows.push({ ...convRow('res2a_branch1', pass, 'implicit-gemm-bf16', 0.2, 1), precision: 'bf16' });
    if (pass === 'fwd') rows.push({ ...convRow('res2a_branch1', pass, 'cudnn:fft', 0.1, 1), status: 'error' });
  }
  write(dir, 'conv-cuda-tf32.json', { batch: 8, machine: { gpu: { name: 'NVIDIA H200' } }, rows });
  // PyTorch: autotune is 1.00x on the 3x3 layer; on the 1x1 layer 0.5/0.45 = 1.11x in bwd-filter (a miss), 1.00x elsewhere.
  const peerRows = ['fwd', 'bwd-data', 'bwd-filter'].flatMap((pass) => [
    { key: 'res2a_branch2b', pass, medianMs: 1.0 },
    { key: 'res2a_branch1', pass, medianMs: pass === 'bwd-filter' ? 0.45 : 0.5 },
  ]);
  write(dir, 'pytorch-conv-tf32.json', { peer: 'pytorch', mode: 'conv', dtype: 'tf32', torch: '2.11.0', rows: peerRows });
  write(dir, 'pytorch-step-tf32.json', pytorchStep('tf32', 20));
  write(dir, 'pytorch-step-bf16.json', pytorchStep('bf16', 12));
  write(dir, 'stepscope-step-tf32.json', stepResult('tf32', 'nchw', false, 25));
  write(dir, 'stepscope-step-tf32-nhwc-graph.json', stepResult('tf32', 'nhwc', true, 16));
  write(dir, 'stepscope-step-bf16.json', stepResult('bf16', 'nchw', false, 14));
  write(dir, 'stepscope-step-bf16-nhwc-graph.json', stepResult('bf16', 'nhwc', true, 10));
  write(dir, 'doctor.json', { cudaPeak: { fp32Gflops: 60_000, tf32Gflops: 400_000, bf16Gflops: 800_000, bandwidthGBs: 4200 } });
  return dir;
}

test("gpu-table.js: the side-by-side table and issue #5's four targets, each met or missed with its figures", () => {
  const dir = resultsFolder();
  const r = runScript('gpu-table.js', [dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(path.join(dir, 'summary.txt'), 'utf8'), r.stdout, 'summary.txt holds what was printed');
  const lines = r.stdout.split('\n');
  const targets = lines.slice(lines.indexOf("issue #5's performance targets:") + 1);
  // The conv table: one row per unique shape and pass, res2b_branch2b counted with res2a_branch2b, autotune against PyTorch.
  assert.match(r.stdout, /res2a_branch2b \(x2\)\s+fwd\s+cudnn:autotune\s+1\.000\s+1\.000\s+1\.000\s+1\.00\s+1\.00/);
  assert.match(r.stdout, /res2a_branch1\s+bwd-filter\s+im2col-cublas\s+0\.450\s+0\.500\s+0\.450\s+1\.00\s+1\.11/);
  assert.match(r.stdout, /3 row\(s\) failed the reference check, 0 unsupported, 1 failed in cuDNN \(res2a_branch1 fwd cudnn:fft\)/, 'implicit-gemm-tf32 failed in each pass');
  assert.ok(targets.includes('- cudnn:autotune within 5% of PyTorch per layer (tf32, batch 8): missed, 5/6 rows within; slowest: res2a_branch1 bwd-filter 1.11x'), targets.join('\n'));
  assert.ok(targets.includes("- our implicit GEMM at half of cuDNN's best on the 3x3 layers (tf32, batch 8): missed, 1/3 rows at >= 0.50 (speed ratios 0.40-0.60)"), targets.join('\n'));
  // The step: tf32's best run is NHWC --graph (20/16 = 1.25x), bf16's is NHWC --graph (12/10 = 1.20x: short of 1.25x).
  assert.ok(targets.includes('- step no slower than PyTorch eager (same dtype): met with each dtype\'s best run: tf32 NHWC --graph 1.25x, bf16 NHWC --graph 1.20x' +
    '; missed eager against eager: tf32 NCHW 0.80x, bf16 NCHW 0.86x'), targets.join('\n'));
  assert.ok(targets.includes('- step at 1.25x PyTorch eager with bf16, fused batch norm + ReLU and --graph: missed: bf16 NHWC --graph 1.20x'), targets.join('\n'));
  // Each dtype's rows together: PyTorch, stepscope eager, stepscope --graph; % of the dtype's measured peak.
  const stepRows = lines.filter((l) => /^(pytorch|stepscope)/.test(l)).map((l) => l.split(/\s{2,}/).slice(0, 3).join(' '));
  assert.deepEqual(stepRows, ['pytorch 2.11.0 tf32 NHWC', 'stepscope tf32 NCHW', 'stepscope --graph tf32 NHWC', 'pytorch 2.11.0 bf16 NHWC', 'stepscope bf16 NCHW', 'stepscope --graph bf16 NHWC']);
  assert.match(r.stdout, /stepscope --graph\s+bf16\s+NHWC\s+32\s+10\.00\s+9\.80-10\.50\s.*\s1\.20\s+12\.5/, 'median, then the min-max spread');
});

test('gpu-table.js: a target with rows lacking data is incomplete, never met; every target is printed, measured or not', () => {
  const dir = resultsFolder();
  // autotune failed on the 1x1 layer's fwd (no time), ours failed the check everywhere, stepscope's bf16 runs are gone.
  const conv = JSON.parse(fs.readFileSync(path.join(dir, 'conv-cuda-tf32.json'), 'utf8'));
  for (const row of conv.rows) {
    if (row.layer === 'res2a_branch1' && row.pass === 'fwd' && row.variant === 'cudnn:autotune') Object.assign(row, { status: 'error', medianMs: null });
    if (row.variant === 'implicit-gemm-tf32-along-m') Object.assign(row, { status: 'failed-check', medianMs: null });
  }
  write(dir, 'conv-cuda-tf32.json', conv);
  for (const f of ['stepscope-step-bf16.json', 'stepscope-step-bf16-nhwc-graph.json']) fs.rmSync(path.join(dir, f));
  const r = runScript('gpu-table.js', [dir]);
  assert.equal(r.status, 0, r.stderr);
  const targets = r.stdout.split('\n').filter((l) => l.startsWith('- '));
  assert.deepEqual(targets, [
    "- step no slower than PyTorch eager (same dtype): incomplete with each dtype's best run: tf32 NHWC --graph 1.25x; no data for 1: bf16 (no stepscope run); missed eager against eager: tf32 NCHW 0.80x",
    '- step at 1.25x PyTorch eager with bf16, fused batch norm + ReLU and --graph: incomplete: no stepscope bf16 --graph run with batchnorm=fused-relu',
    '- cudnn:autotune within 5% of PyTorch per layer (tf32, batch 8): missed, 4/6 rows within; slowest: res2a_branch1 bwd-filter 1.11x; no data for 1: res2a_branch1 fwd (cudnn:autotune error)',
    "- our implicit GEMM at half of cuDNN's best on the 3x3 layers (tf32, batch 8): missed, 0/3 rows at >= 0.50 (speed ratios 0.00-0.00)",
  ]);
  // Without the miss, the missing row makes the autotune target incomplete, not met.
  conv.rows = conv.rows.filter((row: ConvRow) => !(row.layer === 'res2a_branch1' && row.pass === 'bwd-filter'));
  write(dir, 'conv-cuda-tf32.json', conv);
  assert.match(runScript('gpu-table.js', [dir]).stdout, /- cudnn:autotune within 5% of PyTorch per layer \(tf32, batch 8\): incomplete, 4\/5 rows within; no data for 1/);
  // A bench stopped by a timeout: what it reached cannot make a target met.
  conv.rows = conv.rows.filter((row: ConvRow) => row.layer === 'res2a_branch2b' && row.variant === 'cudnn:autotune');
  write(dir, 'conv-cuda-tf32.json', { ...conv, interrupted: 'SIGTERM' });
  const cut = runScript('gpu-table.js', [dir]).stdout;
  assert.match(cut, /\[stopped by SIGTERM: partial rows\]/);
  assert.match(cut, /- cudnn:autotune within 5% of PyTorch per layer \(tf32, batch 8\): incomplete, 3\/4 rows within; no data for 1: the layers after the last row \(bench stopped by SIGTERM\)/);
  // A step run stopped by the budget: shown as partial, never counted for a target (bf16's only run here).
  fs.rmSync(path.join(dir, 'stepscope-step-tf32-nhwc-graph.json'));
  write(dir, 'stepscope-step-bf16.json', { ...stepResult('bf16', 'nchw', false, 8), format: 'stepscope-partial-run', interrupted: 'SIGTERM', measured: 2, config: { batch: 32, graph: false, iterations: 10, dtype: 'bf16' } });
  const stopped = runScript('gpu-table.js', [dir]).stdout;
  assert.match(stopped, /stepscope \(partial: 2\/10\)\s+bf16\s+NCHW\s+32\s+8\.00/);
  const bf16Interrupted = "- step no slower than PyTorch eager (same dtype): missed with each dtype's best run: tf32 NCHW 0.80x; no data for 1: bf16 (its stepscope run was interrupted)";
  assert.ok(stopped.includes(bf16Interrupted), stopped);
  // Stopped before its first measured iteration (no summary, no environment): no row, still interrupted.
  write(dir, 'stepscope-step-bf16.json', { format: 'stepscope-partial-run', interrupted: 'SIGTERM', measured: 0, iterations: [], config: { batch: 32, iterations: 10, dtype: 'bf16' } });
  const early = runScript('gpu-table.js', [dir]).stdout;
  assert.doesNotMatch(early, /stepscope \(partial/);
  assert.ok(early.includes(bf16Interrupted), early);
  // Nothing measured: four lines saying so.
  const empty = tempDir('stepscope-gpu-table-empty-');
  assert.deepEqual(runScript('gpu-table.js', [empty]).stdout.split('\n').filter((l) => l.startsWith('- ')).map((l) => l.replace(': not measured (', ': (')), [
    '- step no slower than PyTorch eager (same dtype): (no step results)',
    '- step at 1.25x PyTorch eager with bf16, fused batch norm + ReLU and --graph: (no bf16 step results)',
    '- cudnn:autotune within 5% of PyTorch per layer: (no conv results)',
    "- our implicit GEMM at half of cuDNN's best on the 3x3 layers (tf32): (no tf32 conv results with 3x3 layers)",
  ]);
});

test('gpu-table.js: the bf16 target needs the fused batch norm + ReLU; a missing folder is exit 2', () => {
  const dir = resultsFolder();
  write(dir, 'stepscope-step-bf16-nhwc-graph.json', stepResult('bf16', 'nhwc', true, 9, 'cuda'));
  const r = runScript('gpu-table.js', [dir]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /- step at 1\.25x PyTorch eager with bf16, fused batch norm \+ ReLU and --graph: incomplete: no stepscope bf16 --graph run with batchnorm=fused-relu\n/,
    'a run without fused-relu is not the target configuration');
  const missing = runScript('gpu-table.js', [path.join(dir, 'nope')]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /results folder '.*nope' not found/);
});

test("gpu-log-line.js: one line per result, failures grouped; a missing or broken result is a line, never a stack", () => {
  const dir = tempDir('stepscope-gpu-log-');
  write(dir, 'step.json', stepResult('bf16', 'nhwc', true, 10));
  const step = runScript('gpu-log-line.js', ['step', path.join(dir, 'step.json'), 'stepscope-step-bf16-nhwc-graph']);
  assert.equal(step.stdout.trim(), 'stepscope-step-bf16-nhwc-graph (batch 32): 10.00 ms per iteration [min 9.80, max 10.50] (forward 3.33, backward 5.67, enqueue 4.50 us/kernel), 3200 images/s');
  const op = (variant: string, buffer: string, ok: boolean, maxRelErr: number, params: object = {}) => ({ op: 'batchnorm-fwd', variant, params: { n: 2, c: 16, ...params }, buffer, maxRelErr, tolerance: 1e-5, ok });
  const refused = { ...op('cudnn', 'y', false, Number.NaN, { bf16: true, nhwc: true }), error: 'check batchnorm-fwd cudnn: CUDNN_STATUS_NOT_SUPPORTED' };
  write(dir, 'ops.json', [op('cuda', 'y', true, 0), op('cuda', 'y', false, 0.5, { nhwc: true }), op('cuda', 'save_mean', false, 0.25, { nhwc: true }), op('cudnn', 'y', false, 2, { bf16: true }), refused]);
  const ops = runScript('gpu-log-line.js', ['cuda-ops', path.join(dir, 'ops.json')]);
  assert.equal(ops.stdout.trim(), 'other ops vs CPU reference: 1/5 outputs within tolerance; failing: batchnorm-fwd cuda (nhwc): y/save_mean (worst 0.500), batchnorm-fwd cudnn (bf16): y (worst 2.00), ' +
    'batchnorm-fwd cudnn (nhwc bf16): y (refused: check batchnorm-fwd cudnn: CUDNN_STATUS_NOT_SUPPORTED)');
  // A step stopped by the budget (step --json's partial result): what it measured, and that it was cut.
  const partial = { ...stepResult('bf16', 'nhwc', true, 10), format: 'stepscope-partial-run', interrupted: 'SIGTERM', measured: 4 };
  partial.config = { ...partial.config, iterations: 10 } as typeof partial.config;
  write(dir, 'partial.json', partial);
  assert.equal(runScript('gpu-log-line.js', ['step', path.join(dir, 'partial.json'), 'stepscope-step-bf16']).stdout.trim(),
    'stepscope-step-bf16 (batch 32) interrupted by SIGTERM after 4 of 10 measured iterations: 10.00 ms per iteration [min 9.80, max 10.50] (forward 3.33, backward 5.67, enqueue 4.50 us/kernel), 3200 images/s');
  write(dir, 'early.json', { format: 'stepscope-partial-run', interrupted: 'SIGTERM', measured: 0, config: { iterations: 10 }, iterations: [] });
  assert.equal(runScript('gpu-log-line.js', ['step', path.join(dir, 'early.json'), 'stepscope-step-bf16']).stdout.trim(),
    'stepscope-step-bf16: interrupted by SIGTERM after 0 of 10 measured iterations, nothing measured');
  fs.writeFileSync(path.join(dir, 'empty.json'), '');
  assert.equal(runScript('gpu-log-line.js', ['doctor', path.join(dir, 'empty.json')]).stdout.trim(), `empty: no result (${path.join(dir, 'empty.json')} is not JSON; see its .err)`);
  const missing = runScript('gpu-log-line.js', ['step', path.join(dir, 'gone.json'), 'stepscope-step-fp32']);
  assert.equal(missing.status, 0);
  assert.equal(missing.stdout.trim(), `stepscope-step-fp32: no result (${path.join(dir, 'gone.json')} missing; see its .err)`);
  write(dir, 'doctor.json', { cuda: { available: false, reason: 'cudaErrorNoDevice: no CUDA-capable device is detected' } });
  assert.equal(runScript('gpu-log-line.js', ['doctor', path.join(dir, 'doctor.json')]).stdout.trim(), 'doctor: CUDA backend unavailable: cudaErrorNoDevice: no CUDA-capable device is detected');
  const bad = runScript('gpu-log-line.js', ['nosuch', 'x.json']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /usage: .* doctor\|cuda-ops\|step/);
});

const hasTorch = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

test("bench/pytorch_gpu.py on the CPU (--device cpu) on gpu-check's shapes: its JSON is what gpu-table reads", { skip: hasTorch ? false : 'python3 has no torch (pip install torch==2.13.0+cpu)', timeout: 240_000 }, () => {
  const dir = tempDir('stepscope-gpu-peer-');
  const shapes = runScript('gpu-shapes.js', ['res2a_branch2b,res3a_branch2b', '1']);
  assert.equal(shapes.status, 0, shapes.stderr);
  fs.writeFileSync(path.join(dir, 'shapes.json'), shapes.stdout);
  const keys = (JSON.parse(shapes.stdout) as { key: string }[]).map((s) => s.key);
  assert.deepEqual(keys, ['res2a_branch2b', 'res3a_branch2b']);
  const peer = (args: string[]) => {
    const r = spawnSync('python3', [path.join(ROOT, 'bench', 'pytorch_gpu.py'), ...args, '--device', 'cpu'], { encoding: 'utf8', timeout: 180_000 });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  fs.writeFileSync(path.join(dir, 'pytorch-conv-tf32.json'), peer(['conv', '--shapes', path.join(dir, 'shapes.json'), '--dtype', 'tf32', '--repeat', '2', '--warmup', '1']));
  fs.writeFileSync(path.join(dir, 'pytorch-step-bf16.json'), peer(['step', '--batch', '2', '--resolution', '32', '--classes', '10', '--iterations', '2', '--warmup', '1', '--dtype', 'bf16', '--channels-last']));
  // Our side, written by hand at 1 ms for every row: the table must pair it with PyTorch's rows by layer and pass.
  const rows = keys.flatMap((layer) => ['fwd', 'bwd-data', 'bwd-filter'].map((pass) => convRow(layer, pass, 'cudnn:autotune', 1)));
  write(dir, 'conv-cuda-tf32.json', { batch: 1, rows });
  write(dir, 'stepscope-step-bf16-nhwc-graph.json', stepResult('bf16', 'nhwc', true, 10, 'fused-relu', 2));
  const r = runScript('gpu-table.js', [dir]);
  assert.equal(r.status, 0, r.stderr);
  for (const layer of keys) {
    for (const pass of ['fwd', 'bwd-data', 'bwd-filter']) assert.match(r.stdout, new RegExp(`${layer}\\s+${pass}\\s+cudnn:autotune\\s+1\\.000\\s+1\\.000\\s+\\d+\\.\\d{3}\\s+\\d`), `${layer} ${pass} paired with PyTorch`);
  }
  assert.match(r.stdout, /vs PyTorch 2\.\d+\.\d+\+cpu/);
  assert.match(r.stdout, /^pytorch 2\.\d+\.\d+\+cpu\s+bf16\s+NHWC\s+2\s+\d+\.\d\d/m);
  assert.match(r.stdout, /- step no slower than PyTorch eager \(same dtype\): (met|missed) with each dtype's best run: bf16 NHWC --graph \d+\.\d\dx/);
  // stepscope at another batch than PyTorch's (an earlier call's result): not paired, no verdict from it.
  write(dir, 'stepscope-step-bf16-nhwc-graph.json', stepResult('bf16', 'nhwc', true, 10, 'fused-relu', 32));
  assert.match(runScript('gpu-table.js', [dir]).stdout, /- step no slower than PyTorch eager \(same dtype\): incomplete with each dtype's best run: -; no data for 1: bf16 \(no PyTorch run\)/);
  assert.match(r.stdout, /- cudnn:autotune within 5% of PyTorch per layer \(tf32, batch 1\): (met|missed), \d\/6 rows within/);
});

test('gpu-shapes.js: bad layers or batch are exit 2 naming them', () => {
  const bad = runScript('gpu-shapes.js', ['res2a_branch2b,nosuch', '8']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown layer\(s\) nosuch; allowed: all or ResNet-50 conv names/);
  const batch = runScript('gpu-shapes.js', ['all', '0']);
  assert.equal(batch.status, 2);
  assert.match(batch.stderr, /usage: .*got 'all 0'/);
});

test('scripts/gpu-check.sh end to end on the CPU stand-in (SKIP_BUILD=1): every step logged, the pairs in order, the table and the four targets', { timeout: 240_000 }, () => {
  const out = tempDir('stepscope-gpu-check-');
  const results = tempDir('stepscope-gpu-check-results-');
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'gpu-check.sh')], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 200_000,
    env: {
      ...process.env, OUT: out, GPU_CHECK_RESULTS: results, SKIP_BUILD: '1', STEPSCOPE_CUDA_ADDON: path.join(ROOT, 'test', 'fixtures', 'fake-cuda-addon.js'),
      PHASES: 'step conv', STEP_DTYPES: 'bf16', STEP_BATCH: '1', STEP_RESOLUTION: '32', CONV_LAYERS: 'res2a_branch2b', CONV_BATCH: '1', CONV_REPEAT: '1', BUDGET_S: '180',
    },
  });
  assert.equal(r.status, 0, r.stderr);
  const log = fs.readFileSync(path.join(out, 'gpu-check.log'), 'utf8');
  // The order the script promises: (no) build, doctor, conv (tf32 then fp32, PyTorch first in each pair), then the step pair.
  const steps = [...log.matchAll(/\] ([a-z0-9-]+): (?:exit|skipped)/g)].map((m) => m[1]);
  assert.deepEqual(steps, ['build', 'doctor', 'pytorch-conv-tf32', 'conv-cuda-tf32', 'pytorch-conv-fp32', 'conv-cuda-fp32', 'pytorch-step-bf16', 'stepscope-step-bf16-nhwc-graph', 'stepscope-step-bf16'], log);
  // PyTorch has no GPU here: its steps fail with the reason on their log line; ours succeed.
  assert.match(log, /pytorch-step-bf16: exit 1 in \d+ s: (pytorch_gpu\.py: error: no CUDA device visible to PyTorch|ModuleNotFoundError: No module named 'torch')/);
  assert.match(log, /conv-cuda-tf32: exit 0 /);
  assert.match(log, /^stepscope-step-bf16-nhwc-graph \(batch 1\): [\d.]+ ms per iteration \[min [\d.]+, max [\d.]+\]/m);
  // The device tool returns at most 8 files from $OUT: the log, the table and one archive of every result.
  assert.deepEqual(fs.readdirSync(out).sort(), ['gpu-check.log', 'results.tar.gz', 'summary.txt']);
  const unpacked = tempDir('stepscope-gpu-check-unpacked-');
  assert.equal(spawnSync('tar', ['-xzf', path.join(out, 'results.tar.gz'), '-C', unpacked]).status, 0);
  for (const f of ['doctor.json', 'conv-cuda-tf32.json', 'conv-cuda-fp32.json', 'stepscope-step-bf16.json', 'stepscope-step-bf16-nhwc-graph.json']) {
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(unpacked, f), 'utf8')), JSON.parse(fs.readFileSync(path.join(results, f), 'utf8')), f);
  }
  assert.equal(fs.readFileSync(path.join(unpacked, 'summary.txt'), 'utf8'), fs.readFileSync(path.join(out, 'summary.txt'), 'utf8'));
  const summary = fs.readFileSync(path.join(out, 'summary.txt'), 'utf8');
  assert.ok(r.stdout.endsWith(summary), 'the table is the last thing printed');
  assert.deepEqual(summary.split('\n').filter((l) => l.startsWith('- ')).map((l) => l.split(':')[0]), [
    '- step no slower than PyTorch eager (same dtype)', '- step at 1.25x PyTorch eager with bf16, fused batch norm + ReLU and --graph',
    '- cudnn', '- cudnn', "- our implicit GEMM at half of cuDNN's best on the 3x3 layers (tf32, batch 1)",
  ]);
  assert.match(summary, /- step no slower than PyTorch eager \(same dtype\): incomplete .*bf16 \(no PyTorch run\)/);
});
