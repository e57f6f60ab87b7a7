// The CLI as a user runs it: commands work, and bad input exits with code 2
// and a message naming the bad value and what is allowed.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { test } from 'node:test';
import { cli, renderedDom } from './helpers';
import { addon } from '../src/native';

test('variants lists every conv variant with its backends', () => {
  const r = cli(['variants', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { op: string; variant: string; backends: { backend: string }[] }[];
  // CUDA's variants (cuda.test.ts) follow the CPU ones, rows of their own (but `direct` and `fused-relu`, which both have).
  assert.deepEqual(
    rows.filter((x) => x.op === 'conv' && x.backends[0].backend === 'cpu').map((x) => x.variant),
    ['reference', 'direct', 'im2col-gemm', 'im2col-blas', 'onednn', 'onednn-nchw'],
  );
  const cpuRows = rows.filter((x) => x.op !== 'conv' && x.backends[0].backend === 'cpu');
  assert.ok(cpuRows.every((x) => x.variant === 'fused-relu' || x.backends.length === 1));
  for (const op of ['batchnorm-fwd', 'batchnorm-bwd', 'relu-fwd', 'maxpool-bwd', 'fc-bwd', 'softmax-xent', 'sgd']) {
    assert.deepEqual(cpuRows.filter((x) => x.op === op).map((x) => x.variant), ['reference', 'fast'], op);
  }
  assert.ok(rows.some((x) => x.op === 'batchnorm' && x.variant === 'fused-relu'));
});

test('doctor reports backends, libraries and the measured peak', () => {
  const r = cli(['doctor', '--json', '--trials', '1']);
  assert.equal(r.status, 0, r.stderr);
  const d = JSON.parse(r.stdout);
  assert.equal(d.backends[0].name, 'cpu');
  assert.equal(d.backends[1].available, false);
  assert.match(d.backends[1].reason, /CUDA/);
  assert.ok(d.peak.fmaGflops > 0 && d.peak.bandwidthGBs > 0);
  assert.ok('found' in d.build.onednn && 'found' in d.build.openblas && 'found' in d.build.jpeg);
  const html = path.join(os.tmpdir(), `stepscope-doctor-${process.pid}.html`);
  const text = cli(['doctor', '--trials', '1', '--report', html]);
  assert.match(text.stdout, /fp32 FMA\s+[\d.]+ GFLOP\/s/);
  assert.match(fs.readFileSync(html, 'utf8'), /<td>fp32 FMA GFLOP\/s<\/td><td>[\d.]+<\/td>/);
  fs.rmSync(html);
});

test('bench conv times checked rows and writes them as JSON', () => {
  const r = cli(['bench', 'conv', '--layer', 'res2a_branch2b,res2b_branch2b', '--batch', '1', '--resolution', '64',
    '--repeat', '2', '--warmup', '0', '--variant', 'im2col-gemm,direct', '--pass', 'fwd,bwd-filter', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.rows.length, 2 * 2 * 2);
  for (const row of out.rows) {
    assert.equal(row.status, 'ok');
    assert.ok(row.medianMs > 0 && row.minMs <= row.medianMs && row.medianMs <= row.maxMs);
    assert.ok(row.gflops > 0 && row.pctPeak > 0);
    assert.ok(row.maxRelErr < 1e-4);
  }
  assert.ok(out.rows.some((x: { layer: string; sameShapeAs?: string }) => x.layer === 'res2b_branch2b' && x.sameShapeAs === 'res2a_branch2b'));
  const cold = cli(['bench', 'conv', '--layer', 'res2a_branch2b', '--batch', '1', '--resolution', '64', '--repeat', '2', '--warmup', '0', '--variant', 'im2col-gemm', '--pass', 'fwd', '--cold', '--json']);
  assert.equal(cold.status, 0, cold.stderr);
  const coldOut = JSON.parse(cold.stdout);
  assert.equal(coldOut.cold, true);
  assert.ok(coldOut.rows[0].medianMs > 0 && coldOut.rows[0].status === 'ok');
  const library = addon().buildInfo().onednn.found ? 'onednn' : 'im2col-gemm';
  const text = cli(['bench', 'conv', '--layer', 'conv1', '--batch', '1', '--resolution', '32', '--repeat', '1', '--variant', library, '--pass', 'fwd']);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`conv1\\s+c3 32x32 k64 7x7/2\\s+fwd\\s+${library}`));
  assert.match(text.stdout, /median ms.*% peak.*max rel err/);
});

test('bench conv --report: bars per layer and pass, one per variant, and every row; it renders', () => {
  const html = path.join(os.tmpdir(), `stepscope-bench-conv-${process.pid}.html`);
  const r = cli(['bench', 'conv', '--layer', 'res2a_branch2a,res3a_branch1', '--batch', '1', '--resolution', '64',
    '--repeat', '1', '--warmup', '0', '--variant', 'im2col-gemm,direct', '--pass', 'fwd', '--report', html]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /res3a_branch1\s/, 'the table is still printed');
  const text = fs.readFileSync(html, 'utf8');
  assert.match(text, /Share of the machine's measured peak/);
  assert.match(text, /Median time per layer and pass/);
  assert.doesNotMatch(text, /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained');
  const dom = renderedDom(html);
  if (dom) {
    // Two charts x (2 layers x 1 pass x 2 variants) bars; the table has a row per bench row.
    assert.equal((dom.match(/<rect /g) ?? []).length, 2 * 4);
    assert.equal((dom.match(/<tr>/g) ?? []).length, 1 + 4);
  }
  fs.rmSync(html, { force: true });
});

test('bench data --report: images per second per kind and threads, and every row', { skip: addon().buildInfo().jpeg.found ? false : 'built without libjpeg' }, () => {
  const html = path.join(os.tmpdir(), `stepscope-bench-data-${process.pid}.html`);
  const r = cli(['bench', 'data', '--images', '6', '--batch', '3', '--batches', '2', '--warmup', '0', '--threads', '1,2', '--size', '64', '--pack-size', '80', '--report', html]);
  assert.equal(r.status, 0, r.stderr);
  const text = fs.readFileSync(html, 'utf8');
  assert.match(text, /Images per second/);
  assert.match(text, /records \(read\+augment\)/);
  const dom = renderedDom(html);
  if (dom) {
    assert.equal((dom.match(/<rect /g) ?? []).length, 4, 'raw and records on 1 and 2 threads');
    assert.equal((dom.match(/<tr>/g) ?? []).length, 1 + 4);
  }
  fs.rmSync(html, { force: true });
  // An output file that cannot be written is refused before any work (exit 2).
  const bad = cli(['step', '--save', path.join(os.tmpdir(), 'no-such-dir-stepscope', 'run.json')]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--save '.*run\.json' is not allowed: its directory '.*no-such-dir-stepscope' does not exist/);
});

test('bad input exits 2 with a message naming the value and what is allowed', () => {
  const cases: [string[], RegExp][] = [
    [['bench', 'conv', '--layer', 'res9z_branch2b'], /unknown 'res9z_branch2b'; allowed: all, conv1, res2a_branch1, .*res5c_branch2c/],
    [['bench', 'conv', '--variant', 'winograd'], /unknown 'winograd'; allowed: all, reference, direct, im2col-gemm/],
    [['bench', 'conv', '--pass', 'backward'], /--pass: unknown 'backward'; allowed: all, fwd, bwd-data, bwd-filter/],
    [['bench', 'conv', '--batch', '0'], /--batch '0' is not allowed: an integer from 1 to 1024/],
    [['bench', 'conv', '--repeat', 'many'], /--repeat 'many' is not allowed/],
    [['bench', 'conv', '--resolution', '16'], /--resolution '16' is not allowed: an integer from 32/],
    [['bench', 'conv', '--no-such-option'], /unknown option '--no-such-option'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    // Commander alone would print the top-level help and exit 0 here.
    [['frobnicate', '--help'], /unknown command 'frobnicate'; the commands are: doctor, variants, bench/],
    [['bench', 'frobnicate', '--help'], /unknown command 'frobnicate' of 'bench'; the commands are: conv, data/],
    [['doctor', '--trials', '0'], /--trials '0'/],
  ];
  for (const [args, message] of cases) {
    const r = cli(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
});
