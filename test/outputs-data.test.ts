// Outputs and datasets at the edges: an output path that is a symlink, a fifo
// or empty; data make into an empty path, a file, an unwritable or /proc
// directory, or a folder with images already; data pack's output inside the
// image folder or in a missing directory; generated datasets with more classes
// than images; --dataset paths of the wrong kind; reproduce's directories and
// profiles; peers' --python. Every refusal exits 2 (a usage error) or 1 (an
// I/O failure), names the bad value, and prints no stack trace.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { makeBenchImageFolder } from '../src/bench/data-bench';
import { makeImageFolder, MAKE_MARKER } from '../src/data/make';
import { UsageError } from '../src/errors';
import { checkPython } from '../src/commands/peers';
import { ensureDirectory } from '../src/io/output-path';
import { writeTextAtomic } from '../src/io/json-file';
import { addon } from '../src/native';
import { ROOT, tempDir } from './helpers';

const tmp = tempDir('stepscope-outputs-data-');
const NO_JPEG = addon().buildInfo().jpeg.found ? false : `built without libjpeg: ${addon().buildInfo().jpeg.reason ?? 'not found'}`;
const STACK = /\n\s+at /;
const IS_ROOT = process.getuid?.() === 0;

/** The CLI in `cwd`, with a short timeout: a hang fails the test instead of stalling it. */
function run(args: string[], cwd = tmp, timeout = 120_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'stepscope.js'), ...args], { cwd, encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A usage error: exit code 2, the message names every one of `names`, no stack trace. */
function refused(r: { status: number | null; stderr: string }, ...names: (string | RegExp)[]): void {
  assert.equal(r.status, 2, `exit code 2 expected: ${r.stderr}`);
  for (const n of names) {
    if (typeof n === 'string') assert.ok(r.stderr.includes(n), `the message names ${n}: ${r.stderr}`);
    else assert.match(r.stderr, n);
  }
  assert.doesNotMatch(r.stderr, STACK, 'no stack trace');
}

const dir = (name: string) => {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

const jpegs = (root: string) => fs.readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.jpg')).sort();

const SMALL_STEP = ['--batch', '1', '--resolution', '32', '--iterations', '1', '--warmup', '0', '--width', '4', '--classes', '10'];
const SMALL_REPRO = ['--batch', '1', '--resolution', '32', '--iterations', '1', '--warmup', '0', '--width', '4', '--workers', '1'];

// 1. Outputs: symlinks, fifos, failed writes, empty paths.

test('an output that is a symlink: its target is written, the link stays a link', () => {
  const d = dir('symlink');
  fs.symlinkSync('target.json', path.join(d, 'link.json'));
  writeTextAtomic(path.join(d, 'link.json'), 'first');
  assert.ok(fs.lstatSync(path.join(d, 'link.json')).isSymbolicLink(), 'the link was replaced by a file');
  assert.equal(fs.readFileSync(path.join(d, 'target.json'), 'utf8'), 'first');
  writeTextAtomic(path.join(d, 'link.json'), 'second'); // the target exists now: replaced atomically
  assert.ok(fs.lstatSync(path.join(d, 'link.json')).isSymbolicLink());
  assert.equal(fs.readFileSync(path.join(d, 'target.json'), 'utf8'), 'second');
  assert.deepEqual(fs.readdirSync(d).sort(), ['link.json', 'target.json'], 'no temp file left');
});

test('sweep --save <symlink> writes the target and keeps the link', () => {
  const d = dir('sweep-link');
  fs.symlinkSync('points.json', path.join(d, 'link.json'));
  const r = run(['sweep', '--workers', '2', '--link', '1', '--schedule', 'serialized', '--batch', '1', '--resolution', '32', '--width', '4', '--iterations', '1', '--warmup', '0', '--save', 'link.json', '--json'], d);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.lstatSync(path.join(d, 'link.json')).isSymbolicLink(), 'the symlink was replaced');
  assert.equal(JSON.parse(fs.readFileSync(path.join(d, 'points.json'), 'utf8')).format, 'stepscope-sweep');
});

test('an output that is a fifo (as /dev/null is a device) is written into, not renamed over', { skip: process.platform === 'win32' }, async () => {
  const d = dir('fifo');
  const fifo = path.join(d, 'out.fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const reader = spawn('sh', ['-c', 'cat "$0" > "$1"', fifo, path.join(d, 'read.txt')]);
  const exited = new Promise((resolve) => reader.on('exit', resolve));
  writeTextAtomic(fifo, 'through the fifo');
  assert.equal(await exited, 0);
  assert.ok(fs.statSync(fifo).isFIFO(), 'the fifo was replaced by a regular file');
  assert.equal(fs.readFileSync(path.join(d, 'read.txt'), 'utf8'), 'through the fifo');
  assert.deepEqual(fs.readdirSync(d).sort(), ['out.fifo', 'read.txt'], 'no temp file left');
});

test('a failed write leaves no temp file, and its error names the path given (a system error, no temp name)', (t) => {
  const d = dir('failed-write');
  const file = path.join(d, 'out.json');
  // The module object itself (what json-file.ts reads through its import), not this file's namespace copy.
  const nodeFs: typeof fs = require('node:fs');
  t.mock.method(nodeFs, 'renameSync', () => {
    throw Object.assign(new Error(`ENOSPC: no space left on device, rename '${path.join(d, '.out.json.1.tmp')}' -> '${file}'`), { code: 'ENOSPC', syscall: 'rename' });
  });
  assert.throws(() => writeTextAtomic(file, 'x'), (e: Error & { code?: string; syscall?: string }) =>
    e.code === 'ENOSPC' && e.syscall === 'rename' && e.message.includes(`'${file}'`) && !e.message.includes('.tmp'));
  t.mock.restoreAll();
  assert.deepEqual(fs.readdirSync(d), [], 'the temp file was left behind');
});

test('an empty output path or a directory is refused by name, and nothing is written anywhere', () => {
  const d = dir('empty-output');
  const before = fs.readdirSync(path.dirname(d)).length;
  assert.throws(() => writeTextAtomic('', 'x'), (e: Error) => e instanceof UsageError && /''.*not allowed/.test(e.message));
  assert.throws(() => writeTextAtomic(d, 'x'), (e: Error) => e instanceof UsageError && e.message.includes(d) && /directory/.test(e.message));
  assert.equal(fs.readdirSync(path.dirname(d)).length, before, 'a stray file appeared');
  assert.deepEqual(fs.readdirSync(d), []);
});

// 2. data make.

test('data make refuses an empty path, a file, a path through a file, an unwritable place and /proc, fast and by name', { skip: NO_JPEG }, () => {
  const d = dir('make-bad');
  fs.writeFileSync(path.join(d, 'afile'), 'x');
  const small = ['--images', '2', '--classes', '1'];
  refused(run(['data', 'make', '', ...small], d), "''", 'data make <dir>');
  assert.deepEqual(fs.readdirSync(d), ['afile'], 'data make "" wrote into the current directory');
  refused(run(['data', 'make', 'afile', ...small], d), "'afile'", /not a directory/);
  refused(run(['data', 'make', 'afile/sub', ...small], d), "'afile/sub'", /is a file, not a directory/);
  // Unwritable: sysfs refuses new directories even to root.
  if (fs.existsSync('/sys/kernel')) refused(run(['data', 'make', '/sys/stepscope-test-nope/sub', ...small], d), '/sys/stepscope-test-nope/sub', /cannot create/);
  if (!IS_ROOT) {
    const ro = dir('make-ro');
    fs.chmodSync(ro, 0o555);
    refused(run(['data', 'make', path.join(ro, 'sub'), ...small], d), path.join(ro, 'sub'));
    fs.chmodSync(ro, 0o755);
  }
  // A recursive mkdir under /proc never returns on some Node versions: this must fail within seconds.
  const t0 = Date.now();
  const proc = run(['data', 'make', '/proc/stepscope-test-nope/sub', ...small], d, 30_000);
  refused(proc, '/proc/stepscope-test-nope/sub');
  assert.ok(Date.now() - t0 < 30_000, 'data make under /proc hung');
});

test('data make over a folder it made replaces the images (and says so); any other non-empty folder is refused', { skip: NO_JPEG }, () => {
  const d = dir('make-replace');
  let r = run(['data', 'make', 'imgs', '--images', '8', '--classes', '2', '--threads', '1'], d);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(jpegs(path.join(d, 'imgs')).length, 8);
  assert.ok(fs.existsSync(path.join(d, 'imgs', MAKE_MARKER)));
  r = run(['data', 'make', 'imgs', '--images', '2', '--classes', '1', '--threads', '1'], d);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /replaced the 8 image\(s\) in 2 class folder\(s\)/);
  assert.deepEqual(jpegs(path.join(d, 'imgs')), ['class0/img000000.jpg', 'class0/img000001.jpg'], 'the old images were kept');
  assert.deepEqual(fs.readdirSync(path.join(d, 'imgs')).sort(), [MAKE_MARKER, 'class0'].sort());
  // Somebody else's folder: untouched.
  fs.mkdirSync(path.join(d, 'mine', 'cats'), { recursive: true });
  fs.writeFileSync(path.join(d, 'mine', 'cats', 'tom.jpg'), 'x');
  refused(run(['data', 'make', 'mine', '--images', '2', '--classes', '1'], d), "'mine'", /not empty/, /not written by data make/);
  assert.deepEqual(fs.readdirSync(path.join(d, 'mine')), ['cats']);
  // A folder data make wrote, with something else added: refused, named.
  fs.writeFileSync(path.join(d, 'imgs', 'notes.txt'), 'mine');
  refused(run(['data', 'make', 'imgs', '--images', '2', '--classes', '1'], d), "'imgs'", 'notes.txt');
  assert.equal(jpegs(path.join(d, 'imgs')).length, 2);
  // ... also inside a class folder: the user's file there is not deleted with the images.
  fs.rmSync(path.join(d, 'imgs', 'notes.txt'));
  fs.writeFileSync(path.join(d, 'imgs', 'class0', 'notes.txt'), 'mine');
  refused(run(['data', 'make', 'imgs', '--images', '2', '--classes', '1'], d), "'imgs'", path.join('class0', 'notes.txt'));
  assert.equal(fs.readFileSync(path.join(d, 'imgs', 'class0', 'notes.txt'), 'utf8'), 'mine');
});

test('--save-weights follows the output rules: a device stays a device, a symlink\'s target is written', { skip: IS_ROOT ? false : 'mknod needs root' }, () => {
  const d = dir('weights-out');
  const dev = path.join(d, 'null');
  assert.equal(spawnSync('mknod', [dev, 'c', '1', '3']).status, 0);
  fs.symlinkSync('target.safetensors', path.join(d, 'link.safetensors'));
  const small = ['step', '--batch', '1', '--resolution', '32', '--iterations', '1', '--warmup', '0', '--width', '4', '--classes', '10'];
  let r = run([...small, '--save-weights', dev], d);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.statSync(dev).isCharacterDevice(), 'the device was renamed over');
  r = run([...small, '--save-weights', 'link.safetensors'], d);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.lstatSync(path.join(d, 'link.safetensors')).isSymbolicLink());
  assert.ok(fs.statSync(path.join(d, 'target.safetensors')).size > 1000);
});

test('--save /dev/stdout with stdout redirected to a file: the saved JSON and the printout both arrive whole', { skip: fs.existsSync('/dev/stdout') ? false : 'no /dev/stdout' }, () => {
  const d = dir('stdout-file');
  const file = path.join(d, 'out.txt');
  const fd = fs.openSync(file, 'w');
  try {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'stepscope.js'), 'step', '--batch', '1', '--resolution', '32', '--iterations', '1', '--warmup', '0',
      '--width', '4', '--classes', '10', '--json', '--save', '/dev/stdout'], { cwd: d, stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  } finally {
    fs.closeSync(fd);
  }
  // Two JSON documents one after the other: the saved run, then the printed one.
  const text = fs.readFileSync(file, 'utf8');
  const decoder = (t: string) => { JSON.parse(t); return true; };
  let split = -1;
  for (let i = text.indexOf('\n}') + 2; i > 1 && i < text.length; i = text.indexOf('\n}', i) + 2) {
    try {
      decoder(text.slice(0, i));
      split = i;
      break;
    } catch {
      // not the end of the first document yet
    }
  }
  assert.ok(split > 0, 'the first document is whole JSON');
  const first = JSON.parse(text.slice(0, split));
  const second = JSON.parse(text.slice(split));
  assert.equal(first.format, 'stepscope-run');
  assert.ok(second.summary && second.config);
});

// 3. data pack.

test('data pack refuses an output inside the image folder\'s class folders, a missing or non-directory parent, by the path given', { skip: NO_JPEG }, async () => {
  const d = dir('pack');
  await makeImageFolder(path.join(d, 'imgs'), 4, 2, 1, 1);
  const image = path.join(d, 'imgs', 'class0', 'img000000.jpg');
  const bytes = fs.readFileSync(image);
  refused(run(['data', 'pack', 'imgs', 'imgs/class0/img000000.jpg', '--size', '32'], d), "'imgs/class0/img000000.jpg'", /class folder/);
  assert.ok(fs.readFileSync(image).equals(bytes), 'an image was overwritten');
  refused(run(['data', 'pack', 'imgs', 'imgs/class1/new.records', '--size', '32'], d), "'imgs/class1/new.records'");
  const missing = run(['data', 'pack', 'imgs', 'nodir/o.records', '--size', '32'], d);
  refused(missing, "'nodir/o.records'", /does not exist/);
  assert.doesNotMatch(missing.stderr, /\.tmp/, 'the temp file is not the user\'s path');
  fs.writeFileSync(path.join(d, 'afile'), 'x');
  refused(run(['data', 'pack', 'imgs', 'afile/o.records', '--size', '32'], d), "'afile/o.records'", /not a directory/);
  refused(run(['data', 'pack', 'imgs', 'imgs', '--size', '32'], d), "'imgs'", /directory/);
  refused(run(['data', 'pack', 'imgs', '', '--size', '32'], d), "''");
  if (fs.existsSync('/sys/kernel')) refused(run(['data', 'pack', 'imgs', '/sys/kernel/o.records', '--size', '32'], d), '/sys/kernel/o.records', /not writable/);
  // The records beside the class folders, or through a symlink (its target written, the link kept): fine.
  fs.symlinkSync('target.records', path.join(d, 'link.records'));
  const ok = run(['data', 'pack', 'imgs', 'link.records', '--size', '32'], d);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(fs.lstatSync(path.join(d, 'link.records')).isSymbolicLink());
  assert.ok(fs.statSync(path.join(d, 'target.records')).size > 64);
});

test('data pack names its <imagefolder> argument, not --dataset (an option it does not have)', () => {
  const r = run(['data', 'pack', path.join(tmp, 'no-such-folder'), path.join(tmp, 'o.records')]);
  refused(r, 'no-such-folder', '<imagefolder>');
  assert.doesNotMatch(r.stderr, /--dataset/);
});

// 4. Generated datasets: images >= classes, nothing half-made left.

test('bench data --images below its 4 classes is refused up front, naming --images and the classes', { skip: NO_JPEG }, async () => {
  const benchDirs = () => new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('stepscope-bench-images-')));
  const before = benchDirs();
  const r = run(['bench', 'data', '--images', '2', '--batches', '1', '--warmup', '0', '--threads', '1', '--batch', '1', '--size', '32', '--pack-size', '32']);
  refused(r, '--images 2', /4 classes/);
  // Until cli.ts generates through makeBenchImageFolder, its empty temporary folder is left: removed here.
  for (const f of benchDirs()) if (!before.has(f) && fs.readdirSync(path.join(os.tmpdir(), f)).length === 0) fs.rmdirSync(path.join(os.tmpdir(), f));
  await assert.rejects(makeBenchImageFolder(3, 1), (e: Error) => e instanceof UsageError && /--images 3/.test(e.message) && /4 classes/.test(e.message));
  const after = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('stepscope-bench-images-') && !before.has(f));
  assert.deepEqual(after, [], 'makeBenchImageFolder left a temporary folder');
  await assert.rejects(makeImageFolder(dir('make-fewer'), 2, 4, 1, 1), (e: Error) => e instanceof UsageError && /--images 2/.test(e.message));
  assert.deepEqual(fs.readdirSync(path.join(tmp, 'make-fewer')), [], 'a refused make wrote something');
});

test('reproduce --images below --classes is refused before any data is made; a broken cached dataset is made again', { skip: NO_JPEG }, () => {
  const d = dir('repro-data');
  refused(run(['reproduce', ...SMALL_REPRO, '--images', '3', '--classes', '4', '--data-dir', 'dd', '--save-dir', 'sd'], d), '--images 3', '--classes 4');
  assert.ok(!fs.existsSync(path.join(d, 'dd', 'images-3x4-seed1')), 'a dataset was cached');
  // A cached folder marked complete but with an empty class (as an earlier version left it), and junk records.
  const root = path.join(d, 'dd', 'images-4x2-seed1');
  fs.mkdirSync(path.join(root, 'class0'), { recursive: true });
  fs.mkdirSync(path.join(root, 'class1'));
  fs.writeFileSync(path.join(root, '.complete'), '');
  fs.writeFileSync(path.join(d, 'dd', 'images-4x2-seed1-37.records'), 'junk');
  const r = run(['reproduce', ...SMALL_REPRO, '--images', '4', '--classes', '2', '--data-dir', 'dd', '--save-dir', 'sd', '--json'], d);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(jpegs(root).length, 4);
  assert.equal(JSON.parse(r.stdout).runs.length, 2);
});

// 5. --dataset paths.

test('--data records --dataset: a missing path or a directory is a usage error naming --dataset', () => {
  const missing = run(['step', ...SMALL_STEP, '--data', 'records', '--dataset', path.join(tmp, 'nonexist.records')]);
  refused(missing, '--dataset', 'nonexist.records', /no such file/);
  refused(run(['step', ...SMALL_STEP, '--data', 'records', '--dataset', tmp]), '--dataset', tmp, /is a directory/);
  const file = path.join(tmp, 'a-file.records');
  fs.writeFileSync(file, 'x');
  refused(run(['step', ...SMALL_STEP, '--data', 'raw', '--dataset', file]), '--dataset', file, /a readable directory/);
});

// 6. reproduce: directories and profiles.

test('reproduce checks --save-dir and --data-dir before any work: a file, a path through a file, an unwritable place', () => {
  const d = dir('repro-dirs');
  fs.writeFileSync(path.join(d, 'afile'), 'x');
  for (const option of ['--save-dir', '--data-dir']) {
    refused(run(['reproduce', ...SMALL_REPRO, option, 'afile'], d), `${option} 'afile'`, /not a directory/);
    refused(run(['reproduce', ...SMALL_REPRO, option, 'afile/sub'], d), `${option} 'afile/sub'`);
    if (fs.existsSync('/sys/kernel')) refused(run(['reproduce', ...SMALL_REPRO, option, '/sys/stepscope-test-nope'], d), `${option} '/sys/stepscope-test-nope'`);
  }
  assert.deepEqual(fs.readdirSync(d), ['afile'], 'reproduce made something before refusing');
  assert.throws(() => ensureDirectory('--save-dir', ''), (e: Error) => e instanceof UsageError && e.message.startsWith("--save-dir '' is not allowed"));
  const made = path.join(d, 'new', 'deeper');
  assert.deepEqual(ensureDirectory('--save-dir', made), [path.join(d, 'new'), made]);
  assert.ok(fs.statSync(made).isDirectory());
});

test('a bad reproduce profile is named by its file and field, not by CLI options the user did not give', () => {
  const d = dir('profiles');
  const profile = (name: string, fields: Record<string, unknown>) => {
    const file = path.join(d, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify({
      format: 'stepscope-profile', version: 1, name, description: 'test', kernels: 'default', layout: 'auto',
      data: { kind: 'synthetic', prefetch: 0, threads: 1 }, reduction: { schedule: 'serialized', bucketMb: 25, firstBucketMb: 1 }, ...fields,
    }));
    return file;
  };
  const cases: [string, Record<string, unknown>, (string | RegExp)[]][] = [
    ['badplan', { kernels: { ops: { conv: 'foo' } } }, ['"kernels"', "'foo'"]],
    ['blocked', { kernels: { ops: { conv: 'im2col-gemm' } }, layout: 'nChw16c' }, ['"layout"', 'nChw16c']],
    ['array', { kernels: [1, 2] }, ['"kernels"', '[1,2]']],
    ['numbers', { kernels: { ops: { conv: 3 } } }, ['"kernels.ops.conv"', '3']],
    ['extra', { kernels: { op: { conv: 'onednn' } } }, ['"kernels"', '"op"']],
    ['tiny', { reduction: { schedule: 'serialized', bucketMb: 1e-9, firstBucketMb: 1 } }, ['"reduction.bucketMb"', '1e-9', '0.001']],
    ['slash', { name: '../escape' }, ['"name"', '../escape']],
  ];
  for (const [name, fields, names] of cases) {
    const file = profile(name, fields);
    const r = run(['reproduce', ...SMALL_REPRO, '--profiles', `${file},tf-like`, '--save-dir', path.join(d, 'sd'), '--data-dir', path.join(d, 'dd')]);
    refused(r, `profile '${file}'`, ...names);
    assert.doesNotMatch(r.stderr, /--kernels|--layout/, `${name}: names a CLI option the user did not give`);
  }
  assert.ok(!fs.existsSync(path.join(d, 'sd')) && !fs.existsSync(path.join(d, 'dd')), 'work started before the profiles were checked');
  refused(run(['reproduce', ...SMALL_REPRO, '--profiles', 'tf-like,tf-like', '--save-dir', path.join(d, 'sd')]), '--profiles', "'tf-like'");
});

// 7. peers --python.

test('peers --python is checked before the step runs: empty, missing on PATH, a missing path, a directory, not executable', () => {
  const t0 = Date.now();
  const r = run(['peers', '--batch', '2', '--resolution', '32', '--iterations', '1', '--warmup', '0', '--python', 'stepscope-no-such-python']);
  refused(r, "--python 'stepscope-no-such-python'", /PATH/);
  assert.equal(r.stdout, '', 'the step ran first');
  assert.ok(Date.now() - t0 < 60_000);
  const bad = (value: string, why: RegExp) => assert.throws(() => checkPython(value), (e: Error) => e instanceof UsageError && e.message.startsWith(`--python '${value}' is not allowed`) && why.test(e.message));
  bad('', /empty/);
  bad(path.join(tmp, 'no', 'python'), /no such file/);
  bad(tmp, /directory/);
  const notExec = path.join(tmp, 'not-executable');
  fs.writeFileSync(notExec, '#!/bin/sh\n', { mode: 0o644 });
  bad(notExec, /not an executable/);
  checkPython(process.execPath); // an executable path
  checkPython('sh'); // a name on PATH
});
