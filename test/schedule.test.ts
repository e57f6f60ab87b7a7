// Gradient reduction schedules (issue #4, local communicator): buckets,
// breakdown arithmetic on hand-built timelines, identical results under
// both schedules, the events that gate buckets, and the trace format.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { KernelRecord } from '../binding';
import { breakdown, intersect, measure, union } from '../src/analysis/breakdown';
import { resnet50Graph } from '../src/model/graph';
import { defaultPlan } from '../src/plan/plan';
import { chromeTrace } from '../src/report/trace';
import { TrainingStep, type ReductionOptions } from '../src/run/executor';
import { initWeights } from '../src/run/weights';
import { assignBuckets } from '../src/schedule/buckets';
import { relativeError } from '../src/ops/conv';
import { cli, freePort, ROOT, tempDir } from './helpers';
import { spawn, spawnSync } from 'node:child_process';

const MB = 2 ** 20;

test('buckets: reverse order kept, a small first bucket, then up to the cap; an oversized parameter alone', () => {
  const params = [
    { name: 'fc.bias', size: 1000 }, { name: 'fc.weight', size: 2_048_000 }, { name: 'a', size: 100_000 },
    { name: 'b', size: 3_000_000 }, { name: 'c', size: 10_000_000 }, { name: 'd', size: 50 },
  ];
  const buckets = assignBuckets(params, { bucketBytes: 25 * MB, firstBucketBytes: 1 * MB });
  assert.deepEqual(buckets.map((b) => b.params), [['fc.bias'], ['fc.weight', 'a', 'b'], ['c'], ['d']]);
  assert.deepEqual(buckets.map((b) => b.bytes), [4000, 4 * 5_148_000, 40_000_000, 200]);
  assert.ok(buckets.slice(1, 2).every((b) => b.bytes <= 25 * MB));
  const resnet = resnet50Graph({ batch: 1 }).params.filter((p) => p.trainable).reverse()
    .map((p) => ({ name: p.name, size: p.shape.reduce((a, b) => a * b, 1) }));
  const rb = assignBuckets(resnet, { bucketBytes: 25 * MB, firstBucketBytes: 1 * MB });
  assert.equal(rb[0].params[0], 'fc.bias');
  assert.ok(rb[0].bytes <= 1 * MB);
  assert.equal(rb.flatMap((b) => b.params).length, resnet.length);
  assert.ok(rb.length >= 5 && rb.length <= 8, `${rb.length} buckets`);
});

test('interval arithmetic and the breakdown on a hand-built timeline', () => {
  assert.deepEqual(union([{ start: 5, end: 8 }, { start: 0, end: 2 }, { start: 1, end: 3 }]), [{ start: 0, end: 3 }, { start: 5, end: 8 }]);
  assert.equal(measure([{ start: 0, end: 10 }, { start: 5, end: 15 }]), 15);
  assert.deepEqual(intersect([{ start: 0, end: 10 }], [{ start: 2, end: 4 }, { start: 8, end: 12 }]), [{ start: 2, end: 4 }, { start: 8, end: 10 }]);
  const k = (pass: string, start: number, end: number): KernelRecord => ({
    op: pass === 'comm' ? 'allreduce' : 'conv', variant: 'x', layer: 'l', pass, stream: pass === 'comm' ? 1 : 0,
    streamName: pass === 'comm' ? 'comm' : 'compute', startNs: start * 1e6, endNs: end * 1e6, flops: 0, bytes: 0,
  });
  // Compute: forward 0-10, backward 10-30, optimizer 40-45. Comm: 20-40 (half hidden under backward).
  const records = [k('fwd', 0, 10), k('bwd-data', 10, 30), k('comm', 20, 40), k('update', 40, 45)];
  const b = breakdown(records, { startNs: 0, forwardEndNs: 10e6, backwardEndNs: 30e6, reducedNs: 40e6, endNs: 50e6 }, 2);
  assert.equal(b.totalMs, 52);
  assert.equal(b.forwardMs, 10);
  assert.equal(b.backwardMs, 20);
  assert.equal(b.reductionMs, 20);
  assert.equal(b.reductionExposedMs, 10);
  assert.equal(b.overlap, 0.5);
  assert.equal(b.optimizerMs, 10);
  assert.equal(b.idleMs, 5); // 45-50: nothing ran
});

async function stepWith(reduction: ReductionOptions | undefined) {
  const graph = resnet50Graph({ batch: 2, resolution: 32, width: 4, classes: 10 });
  const step = new TrainingStep(graph, defaultPlan(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 }, 'auto', reduction);
  initWeights(step, 2);
  step.input.fillUniform(3, -1, 1);
  step.labels.write(new Float32Array([2, 5]));
  const native = (await import('../src/native')).addon();
  native.timelineDrain();
  const r = await step.iteration(0);
  return { step, r, graph, records: native.timelineDrain() };
}

test('both schedules give the parameters of a single worker (local communicator)', async () => {
  const single = await stepWith(undefined);
  const base = { workers: 4, comm: 'local' as const, bucketBytes: 64 * 1024, firstBucketBytes: 4096 };
  const serialized = await stepWith({ ...base, schedule: 'serialized' });
  const overlapped = await stepWith({ ...base, schedule: 'overlapped' });
  assert.ok(overlapped.step.buckets.length > 3);
  // The stand-ins hold copies of this worker's gradient, so the average equals
  // it: the parameters alone cannot show a skipped reduction. Every gradient's
  // all-reduce must have run, once, on the schedule's stream.
  const trainable = single.graph.params.filter((p) => p.trainable).map((p) => p.name).sort();
  for (const [run, stream] of [[serialized, 'compute'], [overlapped, 'comm']] as const) {
    const reduced = run.records.filter((k) => k.op === 'allreduce');
    assert.deepEqual(reduced.map((k) => k.layer).sort(), trainable);
    assert.ok(reduced.every((k) => k.streamName === stream));
  }
  for (const p of single.graph.params) {
    const a = single.step.params.get(p.name)!.read();
    for (const other of [serialized, overlapped]) {
      assert.ok(relativeError(other.step.params.get(p.name)!.read(), a) < 1e-5, p.name);
    }
  }
});

test('overlapped: each bucket starts after the event of its last gradient, on the comm stream', async () => {
  const { step, r, records } = await stepWith({ workers: 2, comm: 'local', schedule: 'overlapped', bucketBytes: 64 * 1024, firstBucketBytes: 4096, link: { gbps: 1, latencyUs: 50 } });
  const fired = new Map(step.gradientEvents.map((e) => [e.param, e.event.timestampNs!]));
  for (const b of step.buckets) {
    const lastReady = Math.max(...b.params.map((p) => fired.get(p)!));
    const kernels = records.filter((k) => k.pass === 'comm' && (b.params.includes(k.layer) || k.layer === `bucket${b.index}`));
    assert.ok(kernels.length === b.params.length + 1, `bucket ${b.index}`);
    for (const k of kernels) {
      assert.equal(k.streamName, 'comm');
      assert.ok(k.startNs >= lastReady, `bucket ${b.index} started before its gradients were ready`);
    }
  }
  const sgd = records.filter((k) => k.op === 'sgd');
  const lastComm = Math.max(...records.filter((k) => k.pass === 'comm').map((k) => k.endNs));
  assert.ok(sgd.every((k) => k.startNs >= lastComm), 'the optimizer waits for every bucket');
  assert.ok(r.reducedNs >= lastComm);
});

test('step --compare prints both schedules; --trace writes a Perfetto-loadable trace, --report the HTML report; bad values exit 2', () => {
  const dir = tempDir('stepscope-sched-');
  const trace = path.join(dir, 'trace.json');
  const small = ['step', '--batch', '2', '--resolution', '32', '--width', '4', '--classes', '10', '--iterations', '1', '--warmup', '0'];
  const report = path.join(dir, 'report.html');
  const r = cli([...small, '--workers', '2', '--compare', '--link', '10', '--trace', trace, '--report', report]);
  assert.equal(r.status, 0, r.stderr);
  const html = fs.readFileSync(report, 'utf8');
  assert.match(html, /Attribution of the difference/);
  assert.match(html, /Timeline: overlapped/);
  for (const label of ['reduction exposed', 'overlap %', 'serialized ms', 'overlapped ms', 'idle']) assert.match(r.stdout, new RegExp(label));
  const t = JSON.parse(fs.readFileSync(trace, 'utf8'));
  const x = t.traceEvents.filter((e: { ph: string }) => e.ph === 'X');
  assert.ok(x.length > 100 && x.every((e: { ts: number; dur: number; args: { op: string } }) => e.ts >= 0 && e.dur >= 0 && e.args.op));
  const threads = t.traceEvents.filter((e: { name: string }) => e.name === 'thread_name').map((e: { args: { name: string } }) => e.args.name);
  assert.ok(threads.includes('compute') && threads.includes('comm'));
  assert.deepEqual(new Set(x.map((e: { pid: number }) => e.pid)), new Set([0, 1]));
  const chrome = chromeTrace([{ rank: 3, label: 'r', records: [] }]);
  assert.equal(chrome.traceEvents[0].pid, 3);
  const bad: [string[], RegExp][] = [
    [['--workers', '0'], /--workers '0' is not allowed/],
    [['--workers', '2', '--bucket-mb', '0'], /--bucket-mb '0' is not allowed/],
    [['--workers', '2', '--link', 'fast'], /--link 'fast' is not allowed/],
    [['--workers', '2', '--schedule', 'eager'], /--schedule 'eager' is not allowed: one of serialized, overlapped/],
    [['--workers', '2', '--schedule', 'all'], /--schedule 'all' is not allowed: one of serialized, overlapped/],
    [['--compare'], /--compare needs --workers 2 or more/],
  ];
  for (const [args, message] of bad) {
    const res = cli([...small, ...args]);
    assert.equal(res.status, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, message);
  }
});

test('gloo, 2 processes: parameters after a step equal one process averaging both workers\' gradients', async (t) => {
  const { addon } = await import('../src/native');
  if (!addon().buildInfo().gloo.found) return t.skip('built without libgloo-dev');
  const dir = tempDir('stepscope-gloo-test-');
  const weights = path.join(__dirname, '..', '..', 'test', 'fixtures', 'step-small', 'weights.safetensors');
  const { readSafetensors } = await import('../src/io/safetensors');
  const { loadWeights } = await import('../src/run/weights');
  const { syntheticBatch } = await import('../src/run/training');
  const graph = resnet50Graph({ batch: 2, resolution: 64, width: 4, classes: 10 });
  // One process: each worker's gradient in turn (lr 0 leaves the weights), then the averaged SGD step.
  const grads: Map<string, Float32Array>[] = [];
  for (const rank of [0, 1]) {
    const step = new TrainingStep(graph, defaultPlan(), { lr: 0, momentum: 0.9, weightDecay: 0 });
    loadWeights(step, weights);
    syntheticBatch(step, 1, 0, rank);
    await step.iteration(0);
    grads.push(new Map([...step.grads].map(([k, b]) => [k, b.read()])));
  }
  const initial = readSafetensors(weights).tensors;
  // Serialized meets in a store directory (one machine); overlapped in rank 0's TCP store (as across machines).
  for (const [schedule, store] of [['serialized', []], ['overlapped', ['--master-port', String(await freePort())]]] as const) {
    const out = path.join(dir, `${schedule}.safetensors`);
    const trace = path.join(dir, `${schedule}-trace.json`);
    const report = path.join(dir, `${schedule}.html`);
    const r = cli(['launch', '-n', '2', ...store, '--', 'step', '--trace', trace, '--report', report, '--batch', '2', '--resolution', '64', '--width', '4', '--classes', '10',
      '--iterations', '1', '--warmup', '0', '--comm', 'gloo', '--schedule', schedule, '--weights', weights, '--save-weights', out,
      '--lr', '0.1', '--momentum', '0.9', '--weight-decay', '0.0001', '--bucket-mb', '0.05', '--first-bucket-mb', '0.01']);
    assert.equal(r.status, 0, r.stderr);
    // One trace process per rank, each with its own kernels.
    const t = JSON.parse(fs.readFileSync(trace, 'utf8'));
    const names = t.traceEvents.filter((e: { name: string }) => e.name === 'process_name').map((e: { pid: number; args: { name: string } }) => `${e.pid}:${e.args.name}`);
    assert.deepEqual(names, [`0:rank 0 (${schedule})`, `1:rank 1 (${schedule})`]);
    for (const pid of [0, 1]) assert.ok(t.traceEvents.filter((e: { ph: string; pid: number }) => e.ph === 'X' && e.pid === pid).length > 100, `rank ${pid}'s kernels`);
    // The report draws both ranks' timelines: one rect per kernel of each.
    const html = fs.readFileSync(report, 'utf8');
    assert.match(html, new RegExp(`Timeline: ${schedule}, rank 1`));
    assert.equal((html.match(/<rect class="k"/g) ?? []).length, t.traceEvents.filter((e: { ph: string }) => e.ph === 'X').length);
    for (const file of [out, `${out}.rank1`]) {
      const got = readSafetensors(file).tensors;
      for (const p of graph.params.filter((q) => q.trainable)) {
        const p0 = initial.get(p.name)!.data as Float32Array;
        const expected = p0.map((v, i) => v - 0.1 * ((grads[0].get(p.name)![i] + grads[1].get(p.name)![i]) / 2 + 1e-4 * v));
        const e = relativeError(got.get(p.name)!.data as Float32Array, expected);
        assert.ok(e < 1e-5, `${schedule} ${path.basename(file)} ${p.name}: ${e}`);
      }
    }
  }
});

test('gloo: a peer that never arrives gives a clear error within the timeout, no hang', async (t) => {
  const { addon } = await import('../src/native');
  if (!addon().buildInfo().gloo.found) return t.skip('built without libgloo-dev');
  const dir = tempDir('stepscope-gloo-alone-');
  const start = Date.now();
  const r = cli(['step', '--batch', '2', '--resolution', '32', '--width', '4', '--classes', '10', '--iterations', '1',
    '--comm', 'gloo', '--comm-timeout-ms', '800'], { RANK: '0', WORLD_SIZE: '2', STEPSCOPE_GLOO_STORE: dir });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /gloo rank 0 of 2: rendezvous failed within 800 ms/);
  assert.ok(Date.now() - start < 20_000);
  const mismatch = cli(['step', '--comm', 'gloo', '--workers', '4'], { RANK: '0', WORLD_SIZE: '2', STEPSCOPE_GLOO_STORE: dir });
  assert.equal(mismatch.status, 2);
  assert.match(mismatch.stderr, /--workers 4 is not allowed with --comm gloo and WORLD_SIZE 2/);
  const noEnv = cli(['step', '--comm', 'gloo']);
  assert.equal(noEnv.status, 2);
  assert.match(noEnv.stderr, /start the ranks with `stepscope launch -n N -- step/);
});

test('gloo: ranks that reduce different numbers of values get ERR_COMM after the timeout, not a terminated process', async (t) => {
  const { addon } = await import('../src/native');
  if (!addon().buildInfo().gloo.found) return t.skip('built without libgloo-dev');
  // A timeout Gloo would take as none (a dead peer: a stream blocked forever) is refused.
  for (const timeoutMs of [0, -5, 3_600_001]) {
    assert.throws(() => new (addon().GlooCommunicator)({ rank: 0, size: 2, storePath: '/tmp', timeoutMs }), (e: Error & { code?: string }) =>
      e.code === 'ERR_INVALID_ARG' && e.message === `gloo: timeoutMs ${timeoutMs} is not in 1..3600000`);
  }
  // In a child: before the fix Gloo's event loop aborted the whole process on the size mismatch.
  const script = `
    const a = require(${JSON.stringify(path.join(ROOT, 'dist', 'src', 'native'))}).addon();
    (async () => {
      const comms = [0, 1].map((rank) => new a.GlooCommunicator({ rank, size: 2, storePath: ${JSON.stringify(tempDir('stepscope-gloo-sizes-'))}, timeoutMs: 1000 }));
      await Promise.all(comms.map((c) => c.connect()));
      const streams = [new a.Stream('comm0'), new a.Stream('comm1')];
      const buffers = [new a.Buffer(1000), new a.Buffer(10)];
      buffers.forEach((b) => b.fill(1));
      comms.forEach((c, r) => c.allreduce(streams[r], buffers[r], 1, 'bucket0'));
      const settled = await Promise.allSettled(streams.map((s) => s.synchronize()));
      console.log(JSON.stringify(settled.map((x) => (x.status === 'rejected' ? x.reason.code + ': ' + x.reason.message : 'ok'))));
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const errors = JSON.parse(r.stdout) as string[];
  assert.equal(errors.length, 2);
  for (const [rank, e] of errors.entries()) {
    assert.match(e, new RegExp(`^ERR_COMM: stream 'comm${rank}': gloo rank ${rank}: all-reduce of ${rank === 0 ? 1000 : 10} values failed \\(a peer died, or reduced another number of values, or did not answer within 1000 ms\\)`));
  }
});

test('gloo: a peer that dies mid-run, or stops answering, gives a clear error on the other rank, no hang', async (t) => {
  const { addon } = await import('../src/native');
  if (!addon().buildInfo().gloo.found) return t.skip('built without libgloo-dev');
  for (const fate of ['SIGKILL', 'SIGSTOP'] as const) {
    const port = await freePort();
    const env = { WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), OMP_NUM_THREADS: '1' };
    const args = ['step', '--comm', 'gloo', '--batch', '2', '--resolution', '32', '--width', '4', '--classes', '10',
      '--iterations', '100000', '--warmup', '0', '--comm-timeout-ms', '1500', '--json'];
    const ranks = [0, 1].map((rank) => spawn(process.execPath, [path.join(ROOT, 'bin', 'stepscope.js'), ...args], {
      env: { ...process.env, ...env, RANK: String(rank) }, stdio: ['ignore', 'pipe', 'pipe'],
    }));
    let stderr0 = '';
    ranks[0].stderr!.on('data', (c: Buffer) => (stderr0 += c.toString()));
    const exit0 = new Promise<number | null>((resolve) => ranks[0].on('close', (code) => resolve(code)));
    // Let the ranks meet and run some iterations (each all-reduces every gradient bucket), then fail rank 1.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(ranks[0].exitCode, null, `rank 0 ended before the fault: ${stderr0}`);
    const faultAt = Date.now();
    ranks[1].kill(fate);
    const code = await Promise.race([exit0, new Promise<'hang'>((r) => setTimeout(() => r('hang'), 20_000))]);
    ranks[1].kill('SIGKILL');
    ranks[0].kill('SIGKILL');
    assert.notEqual(code, 'hang', `${fate}: rank 0 still running 20 s after the fault`);
    assert.equal(code, 1, `${fate}: ${stderr0}`);
    assert.match(stderr0, /gloo rank 0: all-reduce of \d+ values failed/, fate);
    assert.doesNotMatch(stderr0, /\n\s+at /, 'a communication error is reported without a JS stack');
    // A dead peer is noticed at once; a silent one after the timeout (1.5 s).
    if (fate === 'SIGSTOP') assert.ok(Date.now() - faultAt >= 1400, `${fate}: gave up before the timeout`);
  }
});

test('gloo: a TCP store that is never served, or a bad MASTER_PORT, gives a clear error', async (t) => {
  const { addon } = await import('../src/native');
  if (!addon().buildInfo().gloo.found) return t.skip('built without libgloo-dev');
  const port = await freePort();
  const args = ['step', '--batch', '2', '--resolution', '32', '--width', '4', '--classes', '10', '--iterations', '1', '--comm', 'gloo', '--comm-timeout-ms', '800'];
  const r = cli(args, { RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) });
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`gloo rank 1 of 2: rendezvous failed within 800 ms \\(tcp store 127.0.0.1:${port}\\).*not reachable`));
  const bad = cli(args, { RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '70000' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /MASTER_PORT.*70000/);
});

test('sweep prints and saves iteration time per workers x link x schedule', () => {
  const dir = tempDir('stepscope-sweep-');
  const out = path.join(dir, 'sweep.json');
  const report = path.join(dir, 'sweep.html');
  const r = cli(['sweep', '--workers', '2,32', '--link', '0.01,50', '--batch', '2', '--resolution', '32', '--width', '4', '--iterations', '1', '--warmup', '0', '--save', out, '--report', report]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((fs.readFileSync(report, 'utf8').match(/<tr>/g) ?? []).length, 1 + 2 * 2 * 2, 'a header and a row per point');
  const saved = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(saved.format, 'stepscope-sweep');
  assert.equal(saved.points.length, 2 * 2 * 2);
  // The modeled link at 0.01 GB/s holds the stream ~75 ms longer than at 50 GB/s (0.4 MB of gradients).
  const get = (w: number, g: number, s: string) => saved.points.find((p: { workers: number; gbps: number; schedule: string }) => p.workers === w && p.gbps === g && p.schedule === s);
  assert.ok(get(32, 0.01, 'serialized').reductionMs > get(32, 50, 'serialized').reductionMs + 40);
  assert.match(r.stdout, /iteration ms\s+reduction ms\s+exposed ms\s+overlap %/);
  const bad = cli(['sweep', '--workers', '1']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--workers '1' is not allowed/);
});
