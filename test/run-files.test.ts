// Saved runs as explain and whatif read them: damaged files are clear errors
// (exit 2, no stack, no hang), file.json:N picks a run, plans are checked.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { cli, tempDir } from './helpers';
import { cudaStatus } from '../src/native-cuda';
import type { Run } from '../src/run/training';
import { partialRun, printedRun } from '../src/run/partial-run';

const dir = tempDir('stepscope-runfiles-');
const small = ['--batch', '1', '--resolution', '32', '--iterations', '1', '--warmup', '0', '--width', '4', '--classes', '10'];
const runsFile = path.join(dir, 'cmp.json');
const STACK = /\n\s+at /;

/** Runs `step --compare` once; a copy of its overlapped run (which has waits) damaged by `damage`. */
let runs: Run[] | undefined;
function damaged(name: string, damage: (r: Run & Record<string, unknown>) => void): string {
  if (!runs) {
    const r = cli(['step', ...small, '--workers', '2', '--compare', '--save', runsFile]);
    assert.equal(r.status, 0, r.stderr);
    runs = JSON.parse(fs.readFileSync(runsFile, 'utf8')) as Run[];
  }
  const copy = JSON.parse(JSON.stringify(runs[1])) as Run & Record<string, unknown>;
  damage(copy);
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(copy));
  return file;
}

test('damaged runs are refused by explain and whatif with exit 2, naming what is wrong', () => {
  const cases: [string, (r: Run & Record<string, unknown>) => void, RegExp][] = [
    ['backwards', (r) => { r.timeline[0].startNs = r.timeline[0].endNs + 1e12; }, /timeline\[0\] ends \(\d+ ns\) before it starts/],
    ['config-null', (r) => { (r as Record<string, unknown>).config = null; }, /config is not an object/],
    ['no-forward', (r) => { delete (r.summary as Partial<Run['summary']>).forwardMs; }, /summary\.forwardMs needs median, min and max/],
    ['no-kernels', (r) => { r.kernels = []; }, /no kernel figures \(kernels is empty\)/],
    ['no-timeline', (r) => { r.timeline = []; }, /no kernels recorded \(timeline is empty\)/],
    ['plan-missing', (r) => { (r.config as unknown as Record<string, unknown>).plan = 3; }, /config\.plan needs ops and layers/],
  ];
  for (const [name, damage, message] of cases) {
    const file = damaged(name, damage);
    for (const args of [['explain', file], ['whatif', file, '--workers', '4']]) {
      const r = cli(args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, STACK);
    }
  }
});

test('inconsistent wait times cannot make the critical path loop: explain and whatif --report finish', () => {
  // Every awaited event "fires" far in the future: each wait would point at the last kernel of its source stream.
  const file = damaged('fired-late', (r) => r.waits.forEach((w) => { w.firedNs = 1e15; }));
  assert.ok(runs![1].waits.length > 0, 'the overlapped run has waits');
  const e = cli(['explain', file]);
  assert.equal(e.status, 0, e.stderr);
  assert.match(e.stdout, /critical path/i);
  const w = cli(['whatif', file, '--workers', '4', '--report', path.join(dir, 'w.html')]);
  assert.equal(w.status, 0, w.stderr);
});

test('explain picks runs as file.json:N, and says how when a file holds too many', () => {
  damaged('init', () => {}); // makes the compare file
  const one = cli(['explain', `${runsFile}:0`]);
  assert.equal(one.status, 0, one.stderr);
  assert.match(one.stdout, new RegExp(`A = ${runsFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:0: `));
  const two = cli(['explain', `${runsFile}:1`, `${runsFile}:0`]);
  assert.equal(two.status, 0, two.stderr);
  const three = cli(['explain', runsFile, `${runsFile}:0`]);
  assert.equal(three.status, 2);
  assert.match(three.stderr, /got 3 .*pick two as file\.json:N/);
  for (const index of ['-1', 'x', '']) {
    const r = cli(['explain', `${runsFile}:${index}`]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`index '${index}' is not allowed: .* holds 2 runs, pick one as`));
  }
  const past = cli(['explain', `${runsFile}:5`]);
  assert.equal(past.status, 2);
  assert.match(past.stderr, /holds 2 runs; index 5 is past the end \(0\.\.1\)/);
});

test('--kernels refuses a file that is not a plan, and pairs that name nothing', () => {
  damaged('init', () => {});
  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };
  const cases: [string, RegExp][] = [
    [runsFile, /must be an object .*this is a saved run, not a plan/],
    [damaged('one-run', () => {}), /has "format", "version", "createdAt" and \d+ more keys; a plan holds only "ops" and "layers" \(this is a saved run/],
    [write('array.json', '[]'), /must be an object with "ops" and\/or "layers"/],
    [write('empty.json', '{}'), /is empty: give "ops" and\/or "layers"/],
    [write('typo.json', '{"layer": {"conv1": "direct"}}'), /has "layer"; a plan holds only "ops" and "layers"/],
    [write('number.json', '{"ops": {"conv": 5}}'), /ops\.conv is 5; a variant name \(a string\) is allowed/],
    [',', /--kernels ',' names nothing/],
    ['res2a_branch2b/fwd/x=direct', /'res2a_branch2b\/fwd\/x' is not a layer or layer\/pass/],
  ];
  for (const [kernels, message] of cases) {
    const r = cli(['step', ...small, '--kernels', kernels]);
    assert.equal(r.status, 2, `${kernels}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

test('whatif: an empty value is refused, not read as unchanged; --variant needs a benchmark', () => {
  damaged('init', () => {});
  const base = `${runsFile}:1`;
  for (const [option, message] of [
    ['--schedule', /--schedule '' is not allowed: one of serialized, overlapped/],
    ['--workers', /--workers '' is not allowed/],
    ['--bucket-mb', /--bucket-mb '' is not allowed/],
    ['--link', /--link '' is not allowed/],
    ['--scale-out', /--scale-out '' is not allowed/],
    ['--kernels', /--kernels '' names nothing/],
  ] as const) {
    const r = cli(['whatif', base, option, '']);
    assert.equal(r.status, 2, `${option}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const latency = cli(['whatif', base, '--link', '10', '--latency', '-1']);
  assert.equal(latency.status, 2);
  assert.match(latency.stderr, /--latency '-1' is not allowed/);
  const variant = cli(['whatif', base, '--variant', 'im2col-gemm']);
  assert.equal(variant.status, 2);
  assert.match(variant.stderr, /--variant 'im2col-gemm' picks times from a conv benchmark/);
});

test('whatif --kernels <plan> on a CUDA run without a usable GPU exits 2 with the reason', { skip: cudaStatus().available ? 'a CUDA device is present' : false }, () => {
  const file = damaged('cuda-run', (r) => { (r.config as { backend?: string }).backend = 'cuda'; });
  const r = cli(['whatif', file, '--kernels', 'conv=direct']);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /the plan's convolutions are measured on the run's backend, cuda, which is unavailable here/);
});

test('step --json prints a run without its timelines or a native handle; a partial result holds none either', () => {
  const communicator = { connect() {}, native: 'a handle' };
  const run = {
    format: 'stepscope-run', timeline: [{ op: 'conv' }],
    config: { batch: 2, reduction: { workers: 2, schedule: 'serialized', comm: 'gloo', communicator } },
    replicas: { devices: [0, 1], spanMs: [], timelines: [{ device: 1, timeline: [], marks: {} }] },
  } as unknown as Run;
  const printed = JSON.parse(JSON.stringify(printedRun(run)));
  assert.equal(printed.timeline, undefined);
  assert.equal(printed.replicas.timelines, undefined);
  assert.deepEqual(printed.config.reduction, { workers: 2, schedule: 'serialized', comm: 'gloo' });
  assert.equal(run.config.reduction!.communicator, communicator, 'the run itself is left as it was');
  // Stopped during the second schedule of --compare: the first run as printed, the second's iterations so far.
  const iteration = (index: number, warmup: boolean, totalMs: number) => ({ index, warmup, totalMs, loss: 2, peakBytes: 1, flops: 1e9, enqueueUsPerKernel: 4 });
  const current = { schedule: 'overlapped', config: { ...run.config, iterations: 5, localGroup: {}, outputs: {} }, iterations: [iteration(0, true, 9), iteration(1, false, 3), iteration(2, false, 1), iteration(3, false, 2), iteration(4, false, 7)] };
  const partial = JSON.parse(JSON.stringify(partialRun('SIGINT', [printedRun(run)], current as never)));
  assert.deepEqual([partial.format, partial.interrupted, partial.schedule, partial.measured], ['stepscope-partial-run', 'SIGINT', 'overlapped', 4]);
  assert.doesNotMatch(JSON.stringify(partial), /a handle/);
  assert.equal(partial.config.localGroup, undefined);
  assert.equal(partial.config.outputs, undefined);
  // Over the measured iterations (not the warm-up's 9 ms), the median total the lower middle of 1, 2, 3, 7.
  assert.deepEqual([partial.summary.totalMs.min, partial.summary.totalMs.median, partial.summary.totalMs.max], [1, 2, 7]);
});
