// Bad command lines, as a user types them: every one exits 2 (1 for a run
// that diverged or an output that could not be written) with one line that
// names the option and the bad value, and never a stack trace, a crash, a
// hang or lost output.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { cli, ROOT, tempDir } from './helpers';
import { addon } from '../src/native';
import { parseChoiceList, parseInteger, parseNumber } from '../src/options';

const BIN = path.join(ROOT, 'bin', 'stepscope.js');
const SMALL = ['--batch', '1', '--resolution', '32', '--iterations', '1', '--warmup', '0', '--width', '4', '--classes', '10'];
const STACK = /\n\s+at /;

/** The CLI in `cwd`, with stdout where `stdout` says (default: captured). */
function run(args: string[], o: { cwd?: string; stdout?: 'pipe' | number } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: o.cwd ?? ROOT, encoding: 'utf8', timeout: 120_000, stdio: ['ignore', o.stdout ?? 'pipe', 'pipe'] });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Exit 2, the message, one line, no stack. */
function refused(args: string[], message: RegExp, status = 2) {
  const r = cli(args);
  const what = args.join(' ');
  assert.equal(r.status, status, `${what}: ${r.stderr}`);
  assert.match(r.stderr, message, what);
  assert.doesNotMatch(r.stderr, STACK, what);
  return r;
}

test('an option missing its value does not take the next option as its value', () => {
  const dir = tempDir('stepscope-args-');
  const r = run(['step', ...SMALL, '--save', '--json'], { cwd: dir });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--save needs a value, got the option '--json'/);
  assert.doesNotMatch(r.stderr, STACK);
  assert.deepEqual(fs.readdirSync(dir), [], 'no file named --json');
  refused(['step', ...SMALL, '--kernels', '--json'], /--kernels needs a value, got the option '--json'/);
  refused(['bench', 'conv', '--layer', '--pass', 'fwd'], /--layer needs a value, got the option '--pass'/);
  refused(['launch', '-n', '-n', '2', '--', 'step'], /--nprocs needs a value, got the option '-n'/);
  // Help still works, and says so.
  const help = cli(['step', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /An option given twice counts once, the last value, except --kernels/);
});

test('an empty value is refused, naming the option', () => {
  for (const option of ['--save', '--report', '--trace', '--save-weights', '--save-plan']) {
    refused(['step', ...SMALL, option, ''], new RegExp(`${option} '' is not allowed: give a file name`));
  }
  for (const option of ['--kernels', '--weights', '--input', '--comm']) refused(['step', ...SMALL, option, ''], new RegExp(`${option} '' is not allowed: give a value`));
  refused(['step', ...SMALL, '--kernels', ','], /--kernels ','/);
  refused(['doctor', '--trials', '1', '--report', ''], /--report '' is not allowed: give a file name/);
  refused(['bench', 'data', '--dataset', ''], /--dataset '' is not allowed: give a value/);
  refused(['launch', '-n', '2', '--master-addr', '', '--', 'step'], /--master-addr '' is not allowed: give a value/);
  // The analysis commands check their own values; an empty output file is refused for them too.
  refused(['explain', 'run.json', '--report', ''], /--report '' is not allowed: give a file name/);
  refused(['whatif', 'run.json', '--report', ' '], /--report ' ' is not allowed: give a file name/);
});

test("'all' in a list is refused with a message that says it stands alone", () => {
  const r = refused(['bench', 'conv', '--layer', 'all,conv1'], /--layer 'all,conv1' is not allowed: 'all' stands alone/);
  assert.doesNotMatch(r.stderr, /unknown 'all'/);
  refused(['bench', 'conv', '--pass', 'fwd,all'], /--pass 'fwd,all' is not allowed: 'all' stands alone/);
  assert.throws(() => parseChoiceList('--x', 'a,all', ['a', 'b']), /'all' stands alone/);
  assert.deepEqual(parseChoiceList('--x', 'all', ['a', 'b']), ['a', 'b']);
  assert.deepEqual(parseChoiceList('--x', 'b, a,b', ['a', 'b']), ['b', 'a']);
});

test('numbers: integers are decimal digits; real numbers decimal, with an optional exponent', () => {
  for (const bad of ['0x10', '1e1', '0b11', '0o7', '2.0', '+2', '', ' ']) assert.throws(() => parseInteger('--n', bad, 0, 100), /--n '.*' is not allowed: an integer from 0 to 100/, bad);
  assert.equal(parseInteger('--n', '16', 0, 100), 16);
  for (const bad of ['0x1', '0b1', '0o1', 'Infinity', '-Infinity', 'NaN', '1e', '.', '', '1,5']) assert.throws(() => parseNumber('--x', bad, -10, 10), /--x '.*' is not allowed: a decimal number from -10 to 10/, bad);
  for (const [good, value] of [['0.1', 0.1], ['.5', 0.5], ['5.', 5], ['1e-3', 0.001], ['2E0', 2], ['-1.5', -1.5]] as const) assert.equal(parseNumber('--x', good, -10, 10), value);
  refused(['sweep', '--workers', '0x10'], /--workers '0x10' is not allowed: an integer from 2 to 100000/);
  refused(['sweep', '--workers', '2,1e1'], /--workers '1e1' is not allowed: an integer from 2 to 100000/);
  refused(['sweep', '--link', '0x10'], /--link '0x10' is not allowed: a decimal number/);
  refused(['step', ...SMALL, '--lr', '0x1'], /--lr '0x1' is not allowed: a decimal number from 0 to 100/);
  refused(['step', ...SMALL, '--momentum', 'Infinity'], /--momentum 'Infinity' is not allowed/);
  const ok = cli(['step', ...SMALL, '--lr', '1e-3', '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).config.lr, 0.001);
});

test('--kernels given twice: both lists apply (the second no longer silently replaces the first); a plan file is not joined', () => {
  const dir = tempDir('stepscope-twice-');
  const both = cli(['step', ...SMALL, '--kernels', 'conv=direct', '--kernels', 'relu=reference', '--json']);
  assert.equal(both.status, 0, both.stderr);
  const plan = JSON.parse(both.stdout).config.plan as { ops: Record<string, string> };
  assert.equal(plan.ops.conv, 'direct');
  assert.equal(plan.ops.relu, 'reference');
  const file = path.join(dir, 'plan.json');
  fs.writeFileSync(file, JSON.stringify({ ops: { conv: 'direct' } }));
  refused(['step', ...SMALL, '--kernels', file, '--kernels', 'relu=reference'], /--kernels is given twice .*a file \(a plan, a saved run, a benchmark\) cannot be combined with another --kernels/);
  // Any other option given twice: the last value counts (as getopt does), so a script can override a default list.
  const last = cli(['step', ...SMALL, '--seed', '5', '--seed', '7', '--json']);
  assert.equal(last.status, 0, last.stderr);
  assert.equal(JSON.parse(last.stdout).config.seed, 7);
});

test('step: conflicting or unused options are refused, and their values always checked', () => {
  refused(['step', ...SMALL, '--compare', '--workers', '2', '--schedule', 'bogus'], /--schedule 'bogus' is not allowed: one of serialized, overlapped/);
  refused(['step', ...SMALL, '--compare', '--workers', '2', '--schedule', 'serialized'], /--schedule serialized is not allowed with --compare/);
  refused(['step', ...SMALL, '--schedule', 'bogus'], /--schedule 'bogus' is not allowed/);
  refused(['step', ...SMALL, '--latency', '-1'], /--latency '-1' is not allowed: a decimal number from 0/);
  refused(['step', ...SMALL, '--workers', '2', '--latency', '3'], /--latency 3 needs --link <GB\/s>/);
  refused(['step', ...SMALL, '--link', '10'], /--link 10 has no effect with one worker: there is no gradient reduction \(give --workers 2 or more/);
  refused(['step', ...SMALL, '--link', '10', '--bucket-mb', '2'], /--link 10, --bucket-mb 2 have no effect with one worker/);
  refused(['step', ...SMALL, '--bucket-mb', '0x1'], /--bucket-mb '0x1' is not allowed/);
  const dataset = tempDir('stepscope-args-dataset-');
  refused(['bench', 'data', '--dataset', dataset, '--images', '0'], /--images '0' is not allowed: an integer from 1/);
  refused(['bench', 'data', '--dataset', dataset, '--images', '5'], /--images 5 is not allowed with --dataset/);
  // Together they run.
  const ok = cli(['step', ...SMALL, '--workers', '2', '--link', '10', '--latency', '3', '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout).config.reduction.link, { gbps: 10, latencyUs: 3 });
});

test('--gpus: the value is checked before the backend', () => {
  for (const bad of ['0', 'abc', '-1', '1.5']) {
    const r = refused(['step', ...SMALL, '--gpus', bad], new RegExp(`--gpus '${bad.replace('.', '\\.')}' is not allowed: an integer from 1 to 1024, or all`));
    assert.doesNotMatch(r.stderr, /needs --backend cuda/);
  }
  refused(['step', ...SMALL, '--gpus', '2'], /--gpus 2 needs --backend cuda/);
});

test('step: an activation larger than a buffer names --batch and --resolution and the limit', () => {
  const r = refused(['step', '--batch', '4096', '--resolution', '1024', '--width', '4', '--classes', '10', '--iterations', '1', '--warmup', '0'],
    /--batch 4096 with --resolution 1024 is not allowed: the largest activation, 'data' \(the input images\), would hold 12,884,901,888 values, more than one cpu buffer holds \(8,589,934,592\); at --resolution 1024 \(--width 4\) allowed --batch 1 to 2730/);
  assert.doesNotMatch(r.stderr, /Buffer\(length\)/);
});

test('step --layout nChw16c: the channel counts and --width', { skip: addon().buildInfo().onednn.found ? false : 'built without oneDNN' }, () => {
  refused(['step', ...SMALL.filter((a, i) => a !== '--width' && SMALL[i - 1] !== '--width'), '--width', '8', '--layout', 'nChw16c'],
    /--layout nChw16c needs every conv's channel counts divisible by 16 .*with --width 8, conv1 has 8 output channels \(its 3 input channels, the image's, are read in plain NCHW, unpadded, and need not be\): allowed --width a multiple of 16/);
});

test('doctor names what it found without undefined; a binary file in a message is escaped', () => {
  const d = cli(['doctor', '--trials', '1']);
  assert.equal(d.status, 0, d.stderr);
  assert.doesNotMatch(d.stdout, /undefined/);
  const dir = tempDir('stepscope-args-binary-');
  const binary = path.join(dir, 'plan.json');
  fs.writeFileSync(binary, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00]));
  for (const args of [['step', ...SMALL, '--kernels', binary], ['explain', binary]]) {
    const r = refused(args, /plan\.json/);
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(r.stderr, /[\x00-\x08\x0b-\x1f\x7f]/, 'no raw control bytes');
    assert.match(r.stderr, /\\x7f|\\x00/);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, 'one line');
  }
});

test('a closed stdout ends quietly; a failed one or a failed output file is one line, exit 1, no lost output', () => {
  const dir = tempDir('stepscope-args-out-');
  // The reader went away (`| head`): no EPIPE stack; the files are still written; the command's status.
  for (const args of [['variants'], ['step', ...SMALL, '--json', '--save', path.join(dir, 'piped.json')]]) {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${BIN}" "$@" | true; exit \${PIPESTATUS[0]}`, 'bash', ...args], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /EPIPE|Unhandled/, args.join(' '));
    assert.doesNotMatch(r.stderr, STACK);
  }
  assert.ok(JSON.parse(fs.readFileSync(path.join(dir, 'piped.json'), 'utf8')).summary, 'the run was saved');
  // stdout on a full device.
  const full = fs.openSync('/dev/full', 'w');
  try {
    for (const args of [['variants'], ['step', ...SMALL, '--json']]) {
      const r = run(args, { stdout: full });
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^stepscope: could not write to stdout: ENOSPC: no space left on device/);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    }
  } finally {
    fs.closeSync(full);
  }
  // Where no file can be created (access() says yes to root): refused before any work.
  refused(['step', ...SMALL, '--save', '/proc/stepscope-x.json'], /--save '\/proc\/stepscope-x\.json' is not allowed: no file can be created under \/dev or \/proc/);
  // A write that fails at the end (the temp file beside a 250-character name is too long):
  // the other outputs are still written and the result printed; one line names the option, path and error.
  const long = path.join(dir, `${'a'.repeat(245)}.json`);
  const report = path.join(dir, 'report.html');
  const r = cli(['step', ...SMALL, '--save', long, '--report', report]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^stepscope: --save '.*a\.json' was not written: ENAMETOOLONG/m);
  assert.doesNotMatch(r.stderr, STACK);
  assert.match(r.stdout, /phase\s+median ms/, 'the result is printed');
  assert.ok(fs.existsSync(report), 'the report is written');
});

test('a diverging run: the message, exit 1, no stack; with --weights it names the file too', () => {
  const diverge = ['--batch', '2', '--resolution', '32', '--iterations', '6', '--warmup', '0', '--width', '4', '--classes', '10', '--lr', '100', '--momentum', '1', '--weight-decay', '1'];
  const r = refused(['step', ...diverge], /^stepscope: the loss of step \d+ is (NaN|-?Infinity): training diverged/, 1);
  assert.doesNotMatch(r.stderr, /TrainingStep|Error:/);
  const weights = path.join(ROOT, 'test', 'fixtures', 'step-small', 'weights.safetensors');
  const w = refused(['step', ...diverge.map((a) => (a === '32' ? '64' : a)), '--weights', weights], /the loss of step \d+ is .*, or the --weights file '.*weights\.safetensors' holds non-finite or extreme values/, 1);
  assert.equal(w.stderr.trimEnd().split('\n').length, 1);
});

test('step under launch needs a real communicator: with --comm local every rank would be its own copy', () => {
  const r = cli(['launch', '-n', '2', '--', 'step', ...SMALL]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--comm local is not allowed under launch \(WORLD_SIZE 2\): each rank would run its own copy/);
  assert.doesNotMatch(r.stderr, STACK);
});

test("--save - writes the run to stdout (no file named '-')", () => {
  const dir = tempDir('stepscope-dash-');
  const r = run(['step', ...SMALL, '--save', '-'], { cwd: dir });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\{\n "format": "stepscope-run"/);
  assert.match(r.stdout, /ResNet-50 v1\.5 training step/); // and the printout after it
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('a modeled link that would hold a bucket past an hour is refused before the run (in runTraining: step, sweep and reproduce alike), naming the options', () => {
  // At 100000 classes and width 256, fc.weight (8192 x 100000 fp32, 3125 MB) is a bucket of its own, whatever
  // --bucket-mb says: among 4 workers at 0.001 GB/s (1 MB/s) it holds the link 1.5 x 3125 MiB / 1 MB/s = 4915 s.
  const big = ['--workers', '4', '--link', '0.001', '--width', '256', '--classes', '100000', '--iterations', '1'];
  const message = /--link 0.001 GB\/s would hold the link 4915 s for bucket 1 \(3125.0 MB, fc.weight\) among 4 workers \(latency 5 us\), more than the 3600 s a modeled hold may take: raise --link, or lower --bucket-mb, --first-bucket-mb, --latency or --workers/;
  refused(['step', ...big], message);
  // The largest bucket is the model's: a small model fits a slow link.
  const small = cli(['step', '--workers', '2', '--link', '0.01', '--bucket-mb', '4096', '--batch', '1', '--resolution', '32', '--width', '1', '--classes', '2', '--iterations', '1', '--warmup', '0']);
  assert.equal(small.status, 0, small.stderr);
});
