// Explaining runs (issue #7): the replay's arithmetic on hand-built models,
// the critical path on a hand-built timeline, the attribution that sums to
// the measured difference, what-if predictions against a measured run, saved
// run versions and damage, profiles, the progress bar, and the HTML report
// rendered in headless Chromium.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { KernelRecord, WaitRecord } from '../binding';
import { attribute, decompose, PARTS } from '../src/analysis/attribution';
import { criticalPath } from '../src/analysis/critical-path';
import { contentionFromIterations } from '../src/run/contention';
import { progressBar } from '../src/report/progress';
import { loadProfile, shippedProfiles } from '../src/run/profile';
import { readRun, readRuns } from '../src/run/run-file';
import { replay } from '../src/whatif/replay';
import { checkKernelSource, kernelsFromRun } from '../src/whatif/changes';
import type { Run } from '../src/run/training';
import type { StepModel } from '../src/whatif/step-model';
import { browserEnv, cli, findChromium, renderedDom, tempDir } from './helpers';
import { addon } from '../src/native';

const dir = tempDir('stepscope-analysis-');

/** Two compute tasks of backward, each producing one gradient, then one optimizer task. */
function model(over: Partial<StepModel["comm"]> = {}, contention = { compute: 0, memory: 0, comm: 0, uncovered: 0 }): StepModel {
  return {
    dataMs: 1,
    compute: [
      { op: 'conv', pass: 'fwd', layer: 'a', variant: 'v', phase: 'forward', ms: 10, gapMs: 0 },
      { op: 'conv', pass: 'bwd-filter', layer: 'b', variant: 'v', phase: 'backward', ms: 10, gapMs: 0 },
      { op: 'conv', pass: 'bwd-filter', layer: 'a', variant: 'v', phase: 'backward', ms: 10, gapMs: 0 },
      { op: 'sgd', pass: 'update', layer: 'a', variant: 'v', phase: 'optimizer', ms: 2, gapMs: 0 },
    ],
    // 1 MB each: one bucket per gradient with 1 MB buckets.
    gradients: [{ param: 'b.weight', bytes: 2 ** 20, after: 1 }, { param: 'a.weight', bytes: 2 ** 20, after: 2 }],
    comm: { comm: 'local', workers: 2, schedule: 'serialized', bucketMb: 1, firstBucketMb: 1, allreduce: { fixedMs: 0, msPerByte: 8 / 2 ** 20, fitWorkers: 2, samples: 2 }, ...over },
    contention,
    notes: [],
  };
}

test('replay: serialized adds the reduction; overlapped hides it behind backward; contention slows both', () => {
  const s = replay(model());
  // 1 data + 30 compute + 2 x 8 reduction + 2 optimizer.
  assert.equal(s.breakdown.totalMs.toFixed(3), '49.000');
  assert.equal(s.breakdown.reductionExposedMs.toFixed(3), '16.000');
  const o = replay(model({ schedule: 'overlapped' }));
  // Bucket 0 (b.weight) ready at 20 ms, reduced 20..28 beside the last backward kernel (20..30);
  // bucket 1 ready at 30, reduced 30..38; the optimizer then runs 38..40.
  assert.equal(o.breakdown.totalMs.toFixed(3), '41.000');
  assert.equal(o.breakdown.reductionExposedMs.toFixed(3), '8.000');
  const comm = o.timeline.filter((k) => k.pass === 'comm');
  assert.deepEqual(comm.map((k) => [k.startNs / 1e6, k.endNs / 1e6]), [[20, 28], [30, 38]]);
  // Contention 1.0 both ways: while both run, each goes at half speed. The
  // first reduction (8 ms of work) and the last backward kernel (10) share
  // 20..36, doing 8 each; the kernel ends alone at 38, the second reduction
  // runs 38..46, the optimizer 46..48.
  const c = replay(model({ schedule: 'overlapped' }, { compute: 1, memory: 1, comm: 1, uncovered: 0 }));
  const k = c.timeline.find((r) => r.layer === 'a' && r.pass === 'bwd-filter')!;
  assert.deepEqual([k.startNs / 1e6, k.endNs / 1e6], [20, 38]);
  assert.equal(c.breakdown.totalMs.toFixed(3), '49.000');
  // Uncovered slowdown 0.5: every compute kernel of the overlapped arrangement takes 1.5x (forward 10 -> 15,
  // backward ends at 45, the second bucket reduced 45..53, optimizer 53..56); the serialized replay is unchanged.
  const u = replay(model({ schedule: 'overlapped' }, { compute: 0, memory: 0, comm: 0, uncovered: 0.5 }));
  assert.equal(u.breakdown.forwardMs.toFixed(3), '15.000');
  assert.equal(u.breakdown.totalMs.toFixed(3), '57.000');
  assert.equal(replay(model({}, { compute: 0, memory: 0, comm: 0, uncovered: 0.5 })).breakdown.totalMs.toFixed(3), '49.000');
});

test('replay, nccl: a bucket takes the run\'s own time while the buckets and workers are the run\'s, the fitted line otherwise', () => {
  // The fit says 8 ms per 1 MB bucket; the run measured bucket0 at 3 ms and bucket1 at 5 ms.
  const nccl = { comm: 'nccl' as const, measuredMs: { bucket0: 3, bucket1: 5 }, measuredBuckets: { bucketMb: 1, firstBucketMb: 1 } };
  const own = replay(model(nccl)).timeline.filter((k) => k.op === 'allreduce').map((k) => (k.endNs - k.startNs) / 1e6);
  assert.deepEqual(own, [3, 5]);
  // Re-bucketed (one 2 MB bucket): not bucket0's old time, the fit's 16 ms; other workers: the fit too.
  const rebucketed = replay(model({ ...nccl, bucketMb: 2, firstBucketMb: 2 })).timeline.filter((k) => k.op === 'allreduce').map((k) => (k.endNs - k.startNs) / 1e6);
  assert.deepEqual(rebucketed, [16]);
  const workers = replay(model({ ...nccl, workers: 4 })).timeline.filter((k) => k.op === 'allreduce').map((k) => (k.endNs - k.startNs) / 1e6);
  assert.deepEqual(workers, [8, 8]);
});

test('kernels from another run: several kernels of one key (reorders) keep their total; reorders the base lacks go into the conv', () => {
  const base: StepModel = { ...model(), compute: [
    { op: 'conv', pass: 'fwd', layer: 'a', variant: 'v', phase: 'forward', ms: 10, gapMs: 0 },
    { op: 'reorder', pass: 'fwd', layer: 'a', variant: 'v', phase: 'forward', ms: 1, gapMs: 0 },
    { op: 'conv', pass: 'fwd', layer: 'b', variant: 'v', phase: 'forward', ms: 10, gapMs: 0 },
  ] };
  const k = (layer: string, op: string, ms: number) => ({ op, pass: 'fwd', layer, variant: 'w', stream: 'compute', phase: 'forward' as const, bytes: 0, flops: 0, medianMs: ms, minMs: ms, maxMs: ms, meanMs: ms, startMs: 0, gapMs: 0 });
  // The source: layer a's conv with three reorders (2 ms each), layer b's conv with one reorder of 3 ms.
  const source = { config: { batch: 2, resolution: 32 }, kernels: [k('a', 'conv', 5), k('a', 'reorder', 2), k('a', 'reorder', 2), k('a', 'reorder', 2), k('b', 'conv', 4), k('b', 'reorder', 3)] } as unknown as Run;
  const { model: m } = kernelsFromRun(base, source, 'source');
  assert.deepEqual(m.compute.map((t) => `${t.op} ${t.layer} ${t.ms}`), ['conv a 5', 'reorder a 6', 'conv b 7']);
});

test('replay: a modeled link adds 2(W-1)/W bytes/bandwidth per bucket, and buckets follow the sizes', () => {
  const base = model({ comm: 'none', allreduce: { fixedMs: 0, msPerByte: 0, fitWorkers: 1, samples: 0 }, workers: 4, link: { gbps: 1, latencyUs: 0 } });
  const p = replay(base);
  const expected = (2 * 3 / 4) * (2 ** 20 / 1e9) * 1e3; // per 1 MB bucket
  const links = p.timeline.filter((k) => k.op === 'link');
  assert.equal(links.length, 2);
  for (const l of links) assert.ok(Math.abs((l.endNs - l.startNs) / 1e6 - expected) < 1e-3);
  const oneBucket = replay({ ...base, comm: { ...base.comm, bucketMb: 4, firstBucketMb: 4 } });
  assert.equal(oneBucket.buckets.length, 1);
  assert.equal(oneBucket.timeline.filter((k) => k.op === 'link').length, 1);
});

function rec(stream: string, op: string, pass: string, start: number, end: number, layer = op): KernelRecord {
  return { op, pass, layer, variant: 'v', stream: stream === 'compute' ? 0 : 1, streamName: stream, startNs: start * 1e6, endNs: end * 1e6, flops: 0, bytes: 0 };
}

test('contention from both arrangements: extra time over covered time, per class, after the machine drift', () => {
  // Overlapped: a conv 0..12 covered 0..8 by an all-reduce on comm; a relu 20..22 nothing covered.
  // The relu's 8 ms gap is a recorded wait of the compute stream for the comm stream: not host time, left out.
  const overlapped = [{
    records: [rec('compute', 'conv', 'bwd-data', 0, 12, 'l1'), rec('comm', 'allreduce', 'comm', 0, 8, 'l1.weight'), rec('compute', 'relu', 'bwd', 20, 22, 'r1')],
    waits: [wait('compute', 'comm', 12, 20)],
  }];
  // Serialized, on a machine running twice as fast (the relu: 1 ms): conv 4 ms alone, all-reduce 3 ms.
  const serialized = [{ records: [rec('compute', 'conv', 'bwd-data', 0, 4, 'l1'), rec('compute', 'relu', 'bwd', 4, 5, 'r1'), rec('compute', 'allreduce', 'comm', 10, 13, 'l1.weight')] }];
  const c = contentionFromIterations(overlapped, serialized, 'test');
  // drift 2: conv alone 8 ms, covered 8/12 of 12 ms -> (12 - 8) / (8 * 8/12) = 0.75; the all-reduce, at its
  // serialized speed alone (the drift is the compute stream's), (8 - 3) / 3.
  assert.equal(c.compute.toFixed(3), '0.750');
  assert.equal(c.comm.toFixed(3), '1.667');
  assert.equal(c.memory, undefined, 'no memory-bound kernel was covered: the conv figure applies');
  assert.match(c.source, /uncovered kernels overlapped \/ serialized 2\.000/);
  assert.equal(c.uncovered, 0.25, 'the uncovered kernels took 2x: bounded to 25%');
  // A host gap before a kernel is the stream thread's work: covered and slowed like the kernel.
  const gapped = contentionFromIterations(
    [{ records: [rec('compute', 'relu', 'bwd', 0, 1, 'r0'), rec('compute', 'conv', 'bwd-data', 2, 12, 'l1'), rec('comm', 'allreduce', 'comm', 0, 12, 'l1.weight')] }],
    [{ records: [rec('compute', 'relu', 'bwd', 0, 1, 'r0'), rec('compute', 'conv', 'bwd-data', 1.5, 7.5, 'l1')] }], 'test');
  // conv with its gap: 11 ms overlapped, all covered, against 6.5 ms serialized: (11 - 6.5) / 6.5.
  assert.equal(gapped.compute.toFixed(3), (4.5 / 6.5).toFixed(3));
  // A long gap with no wait recorded is the stream thread waiting for a core (3 threads on 2 cores): it counts.
  const preempted = contentionFromIterations(
    [{ records: [rec('compute', 'relu', 'bwd', 0, 1, 'r0'), rec('compute', 'conv', 'bwd-data', 5, 12, 'l1'), rec('comm', 'allreduce', 'comm', 0, 12, 'l1.weight')] }],
    [{ records: [rec('compute', 'relu', 'bwd', 0, 1, 'r0'), rec('compute', 'conv', 'bwd-data', 1.5, 7.5, 'l1')] }], 'test');
  assert.equal(preempted.compute.toFixed(3), (4.5 / 6.5).toFixed(3));
  // A link hold uses no core: it covers nothing.
  const held = contentionFromIterations([{ records: [rec('compute', 'conv', 'bwd-data', 0, 12, 'l1'), rec('comm', 'link', 'comm', 0, 8, 'bucket0')] }], [{ records: [rec('compute', 'conv', 'bwd-data', 0, 12, 'l1')] }], 'test');
  assert.equal(held.compute, 0);
});

function wait(stream: string, source: string, start: number, end: number, fired = end): WaitRecord {
  return { stream: stream === 'compute' ? 0 : 1, streamName: stream, sourceStream: source, startNs: start * 1e6, endNs: end * 1e6, firedNs: fired * 1e6 };
}

test('critical path: follows the recorded waits across streams, and its parts add up to the iteration', () => {
  // forward 0..10, backward 10..30 (gradient at 20), reduction of bucket 0 at 21..40 on comm,
  // the optimizer waits for it: 41..45.
  const records = [
    rec('compute', 'conv', 'fwd', 0, 10), rec('compute', 'conv', 'bwd-filter', 10, 20, 'l2'), rec('compute', 'conv', 'bwd-filter', 20, 30, 'l1'),
    rec('comm', 'allreduce', 'comm', 21, 40, 'l2.weight'), rec('compute', 'sgd', 'update', 41, 45),
  ];
  const marks = { startNs: 0, forwardEndNs: 10e6, backwardEndNs: 30e6, reducedNs: 40.5e6, endNs: 45e6 };
  // comm waited from 0 for l2's gradient (fired at 20); compute waited 30..40.5 for the reduction.
  const waits = [wait('comm', 'compute', 0, 20.5, 20), wait('compute', 'comm', 30, 40.5, 40)];
  const p = criticalPath(records, marks, 2, waits);
  const kernels = p.segments.filter((s) => s.kind === 'kernel').map((s) => s.kernel!.layer);
  assert.deepEqual(kernels, ['conv', 'l2', 'l2.weight', 'sgd'], 'the path goes through the reduction, not the last backward kernel');
  assert.deepEqual(p.segments.filter((s) => s.waitedFor).map((s) => `${s.kernel!.layer}<-${s.waitedFor}`), ['l2.weight<-compute', 'sgd<-comm']);
  assert.equal(p.totalMs.toFixed(3), '47.000');
  assert.equal(p.share.reduction.toFixed(3), '19.000');
  assert.equal(p.share.idle.toFixed(3), '2.000'); // 20..21 and 40..41
  const sum = Object.values(p.share).reduce((a, b) => a + b, 0);
  assert.equal(sum.toFixed(6), p.totalMs.toFixed(6));
  // Without the wait edges the same timeline is one stream's chain: the last compute kernel, then sgd.
  const alone = criticalPath(records, marks, 2, []);
  assert.deepEqual(alone.segments.filter((s) => s.kind === 'kernel').map((s) => s.kernel!.layer), ['conv', 'l2', 'l1', 'sgd']);
  // A wait that did not block (its event fired before the stream got there) keeps the stream's own order.
  const early = criticalPath(records, marks, 2, [wait('compute', 'comm', 30, 30, 29)]);
  assert.ok(!early.segments.some((s) => s.kernel?.layer === 'l2.weight'));
});

// Two small real runs: serialized and overlapped, 2 workers, a slow modeled link.
const runsFile = path.join(dir, 'compare.json');
const args = ['--batch', '2', '--resolution', '32', '--width', '8', '--classes', '10', '--iterations', '3', '--warmup', '1', '--workers', '2', '--link', '1', '--latency', '2000', '--bucket-mb', '0.05', '--first-bucket-mb', '0.01'];

test('step --compare saves both runs; explain: the parts sum to the measured difference', () => {
  const r = cli(['step', ...args, '--compare', '--save', runsFile]);
  assert.equal(r.status, 0, r.stderr);
  const [a, b] = readRuns(runsFile);
  assert.equal(a.version, 3);
  const x = attribute(a, b);
  const sum = PARTS.reduce((s, p) => s + x.delta[p], 0);
  assert.ok(Math.abs(sum - x.differenceMs) < 1e-6, `parts ${sum} vs difference ${x.differenceMs}`);
  for (const run of [a, b]) {
    const d = decompose(run);
    const it = run.iterations.find((f) => f.index === run.timelineIteration)!;
    assert.ok(Math.abs(d.totalMs - it.totalMs) < 0.05, `the saved iteration's parts (${d.totalMs}) make its total (${it.totalMs})`);
    assert.ok(PARTS.every((p) => d.parts[p] >= -0.05), JSON.stringify(d.parts));
  }
  // The printed medians are the saved iterations: the attribution adds up to their difference.
  assert.ok(Math.abs(x.differenceMs - (b.summary.totalMs.median - a.summary.totalMs.median)) < 0.05);
  // Wait edges: none in the serialized run (one stream); the overlapped run's comm stream waited for
  // each bucket's gradient and compute waited for the reduction; the slow link puts that edge on the path.
  assert.equal(a.waits.length, 0);
  assert.ok(b.waits.some((w) => w.streamName === 'comm' && w.sourceStream === 'compute'), JSON.stringify(b.waits));
  assert.ok(b.waits.some((w) => w.streamName === 'compute' && w.sourceStream === 'comm'));
  assert.ok(b.waits.every((w) => w.startNs <= w.endNs && w.firedNs <= w.endNs + 1e3));
  const pathB = criticalPath(b.timeline, b.marks, 0, b.waits);
  assert.ok(pathB.segments.some((s) => s.waitedFor === 'comm' && s.kernel!.op === 'sgd'), 'the optimizer waited for the exposed reduction');
  // The overlapped schedule hides most of the slow link's time.
  assert.ok(x.delta.exposedReduction < 0, `exposed reduction moved by ${x.delta.exposedReduction}`);
  const e = cli(['explain', runsFile, '--report', path.join(dir, 'explain.html')]);
  assert.equal(e.status, 0, e.stderr);
  assert.match(e.stdout, /B minus A: [-+]\d+\.\d ms per iteration; the parts sum to [-+]?\d+\.\d ms/);
  // Each run's label says how it ran: backend and layout, batch, plan, reduction.
  assert.match(e.stdout, /^A = .*compare\.json:0: cpu (nchw|nChw16c), batch 2, 32px, conv \S+, 2 workers serialized 1 GB\/s$/m);
  assert.match(e.stdout, /critical path of B: .* on the communication stream/);
  assert.match(e.stdout, /layers that differ most/);
  assert.ok(x.layers.length > 0 && x.layers.every((l, i) => i === 0 || Math.abs(l.msB - l.msA) <= Math.abs(x.layers[i - 1].msB - x.layers[i - 1].msA)));
  assert.ok(fs.statSync(path.join(dir, 'explain.html')).size > 10_000);
});

test('whatif: the replay of a run predicts the other schedule of the same run within the noise', () => {
  const overlapped = readRuns(runsFile)[1];
  const r = cli(['whatif', `${runsFile}:0`, '--schedule', 'overlapped', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  const measured = overlapped.summary.totalMs.median;
  const err = Math.abs(out.prediction.totalMs - measured) / measured;
  // A loose bound: tests run beside other work; bench/whatif-accuracy.js measures the real error.
  assert.ok(err < 0.35, `predicted ${out.prediction.totalMs.toFixed(1)} ms, measured ${measured.toFixed(1)} ms`);
  assert.ok(out.prediction.breakdown.reductionExposedMs < out.prediction.breakdown.reductionMs);
  // Each run also ran its contention iterations in the other arrangement; the what-if of that schedule is
  // checked against them (the same prediction as above, against the run's own iterations).
  const [a, b] = readRuns(runsFile);
  assert.equal(a.contention!.other!.schedule, 'overlapped');
  assert.equal(b.contention!.other!.schedule, 'serialized');
  for (const run of [a, b]) assert.ok(run.contention!.other!.totalMs.length === 3 && run.contention!.other!.totalMs.every((t) => t > 0));
  assert.equal(out.check.schedule, 'overlapped');
  assert.ok(Math.abs(out.check.predictedMs - out.prediction.totalMs) < 1e-6);
  assert.ok(Math.abs(out.check.errorPct - (100 * (out.check.predictedMs - out.check.measuredMs)) / out.check.measuredMs) < 1e-9);
  const html = path.join(dir, 'whatif.html');
  assert.equal(cli(['whatif', `${runsFile}:0`, '--schedule', 'overlapped', '--report', html]).status, 0);
  assert.ok(fs.readFileSync(html, 'utf8').includes("check: reduction overlapped (the run&#39;s own 3 iterations)") ||
    fs.readFileSync(html, 'utf8').includes("check: reduction overlapped (the run's own 3 iterations)"), 'the report has the in-run check row');
  const text = cli(['whatif', `${runsFile}:1`, '--bucket-mb', '1']);
  assert.match(text.stdout, /check: this run also ran 3 iterations with the reduction serialized \(median \d+\.\d ms; .*\); the model's replay of them gives \d+\.\d ms \([-+]\d+\.\d%\)/);
  const scale = cli(['whatif', `${runsFile}:1`, '--scale-out', '1,2,64', '--link', '10', '--latency', '5']);
  assert.equal(scale.status, 0, scale.stderr);
  assert.match(scale.stdout, /scale-out projection/);
  assert.match(scale.stdout, /^64\s+\d+\.\d\s+\d+\.\d/m);
});

test('whatif --kernels <plan>: the convolutions the plan changes are measured at the run shapes and replace the run kernels', () => {
  const run = readRuns(runsFile)[0];
  const convs = run.kernels.filter((k) => k.op === 'conv');
  // A variant the run does not use (im2col-gemm, or without oneDNN, where that is the default, direct).
  const variant = run.config.plan.ops.conv === 'im2col-gemm' ? 'direct' : 'im2col-gemm';
  assert.ok(convs.every((k) => k.variant !== variant), 'the run does not use the plan\'s variant yet');
  const planFile = path.join(dir, 'plan.json');
  fs.writeFileSync(planFile, JSON.stringify({ ops: { conv: variant }, layers: { res2a_branch2b: run.config.plan.ops.conv } }));
  const r = cli(['whatif', `${runsFile}:0`, '--kernels', planFile, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  const layers = new Set(convs.map((k) => k.layer));
  assert.match(out.changes[0], new RegExp(`conv kernels of the plan .*plan\\.json \\(${layers.size - 1} layers changed`));
  assert.ok(out.prediction.notes.some((n: string) => /the plan's variants.*convolution kernels matched/.test(n)), out.prediction.notes.join('\n'));
  assert.notEqual(out.prediction.totalMs.toFixed(3), (out.prediction.baseline.replayMs * out.prediction.calibration).toFixed(3), 'the changed kernels move the prediction');
  // The same plan as pairs; a plan that changes another op than convolutions needs a recorded run.
  const pairs = cli(['whatif', `${runsFile}:0`, '--kernels', `conv=${variant},res2a_branch2b=${run.config.plan.ops.conv}`, '--json']);
  assert.equal(pairs.status, 0, pairs.stderr);
  assert.match(JSON.parse(pairs.stdout).changes[0], /layers changed/);
  // A plan per pass (as step --save-plan writes): only that pass is measured and replaced.
  const perPass = cli(['whatif', `${runsFile}:0`, '--kernels', `res2a_branch2b/fwd=${variant}`, '--json']);
  assert.equal(perPass.status, 0, perPass.stderr);
  const pp = JSON.parse(perPass.stdout);
  assert.match(pp.changes[0], /\(1 layers changed, 1 passes,/);
  assert.ok(pp.prediction.notes.some((n: string) => /the plan's variants\); 1 convolution kernels matched/.test(n)), pp.prediction.notes.join('\n'));
  const other = cli(['whatif', `${runsFile}:0`, '--kernels', 'batchnorm=reference']);
  assert.equal(other.status, 2);
  assert.match(other.stderr, /a plan can change convolution variants only .*'reference' in the plan and '[a-z-]+' in the run: record a run with the plan/);
});

test('whatif --kernels lays the plan over the run\'s own plan: what it does not name stays as the run had it', () => {
  // A run recorded with a plan of its own (not the default): a conv variant, per-pass entries, the reference batch norm.
  const base = readRuns(runsFile)[0].config.plan.ops.conv;
  const variant = base === 'im2col-gemm' ? 'direct' : 'im2col-gemm';
  const other = variant === 'direct' ? 'im2col-gemm' : 'direct';
  const runFile = path.join(dir, 'own-plan.json');
  const small = ['--batch', '2', '--resolution', '32', '--width', '8', '--classes', '10', '--iterations', '2', '--warmup', '1'];
  const own = `conv=${variant},batchnorm=reference,res2a_branch2b/fwd=${variant},res3a_branch2b/fwd=${variant}`;
  const rec = cli(['step', ...small, '--kernels', own, '--save', runFile]);
  assert.equal(rec.status, 0, rec.stderr);
  const convs = readRuns(runFile)[0].kernels.filter((k) => k.op === 'conv');
  const layers = new Set(convs.map((k) => k.layer)).size;
  const changes = (kernels: string) => {
    const r = cli(['whatif', runFile, '--kernels', kernels, '--json']);
    assert.equal(r.status, 0, `${kernels}: ${r.stderr}`);
    return JSON.parse(r.stdout).changes[0] as string;
  };
  // One pass named: one pass measured (it was every conv, against the default plan), and the run's batch norm is no change.
  assert.match(changes(`res2a_branch2b/fwd=${other}`), /\(1 layers changed, 1 passes,/);
  // A layer entry covers that layer's passes, the run's per-pass entry among them; an op entry every layer's of that op.
  assert.match(changes(`res2a_branch2b=${other}`), /\(1 layers changed, 3 passes,/);
  assert.match(changes(`conv=${other},res2a_branch2b=${variant}`), new RegExp(`\\(${layers - 1} layers changed, ${convs.length - 3} passes,`));
});

test('whatif kernel sources: on CUDA the precision and layout must be the run\'s too; on the CPU a layout change is a reorder', () => {
  const cpu = readRuns(runsFile)[0];
  const cuda = { ...cpu, config: { ...cpu.config, backend: 'cuda' }, environment: { ...cpu.environment, backend: 'cuda', dtype: 'tf32', layout: 'nhwc' } } as Run;
  const same = { backend: 'cuda', dtype: 'tf32', layout: 'nhwc', batch: cpu.config.batch, width: cpu.config.width };
  checkKernelSource('same.json', same, cuda); // no throw
  assert.throws(() => checkKernelSource('f.json', { ...same, dtype: 'fp32' }, cuda), /'f\.json' was measured with dtype fp32, the run's tf32/);
  assert.throws(() => checkKernelSource('f.json', { ...same, layout: 'nchw' }, cuda), /layout nchw, the run's nhwc/);
  assert.throws(() => checkKernelSource('f.json', { ...same, backend: 'cpu' }, cuda), /backend cpu, the run's cuda/);
  checkKernelSource('cpu.json', { backend: 'cpu', dtype: 'fp32', layout: 'nChw16c', width: cpu.config.width }, cpu); // a CPU layout differs by reorders only
});

test('bad input to explain and whatif: clear errors, exit 2', () => {
  const bad = (file: string, text: string) => {
    fs.writeFileSync(path.join(dir, file), text);
    return path.join(dir, file);
  };
  const run = JSON.parse(fs.readFileSync(runsFile, 'utf8'))[0];
  const cases: [string[], RegExp][] = [
    [['explain', bad('v1.json', JSON.stringify({ ...run, version: 1 }))], /run format version 1 is not supported; this stepscope reads version 3/],
    [['explain', bad('torn.json', JSON.stringify(run).slice(0, 500))], /is damaged \(not valid JSON/],
    [['explain', bad('other.json', '{"format":"something"}')], /not a stepscope run \(format is "something"/],
    [['explain', bad('nokernels.json', JSON.stringify({ ...run, kernels: undefined }))], /damaged run: "kernels" is missing/],
    [['explain', path.join(dir, 'missing.json')], /cannot read run file .*ENOENT/],
    [['explain', bad('badkernel.json', JSON.stringify({ ...run, timeline: [...run.timeline.slice(0, 3), { op: 'conv' }] }))], /damaged run: timeline\[3\] is not a kernel record/],
    [['explain', bad('badwait.json', JSON.stringify({ ...run, waits: [{ streamName: 'comm', startNs: 1 }] }))], /damaged run: waits\[0\] is not a wait record/],
    [['whatif', runsFile], /holds 2 runs; pick one as/],
    [['whatif', `${runsFile}:5`], /index 5 is past the end \(0\.\.1\)/],
    [['whatif', `${runsFile}:0`, '--schedule', 'sideways'], /--schedule/],
    [['whatif', `${runsFile}:0`, '--workers', '0'], /--workers/],
    [['whatif', `${runsFile}:0`, '--latency', '5'], /--latency needs --link/],
    [['whatif', `${runsFile}:0`, '--kernels', bad('bench.json', JSON.stringify({ batch: 64, rows: [] }))], /was measured with batch 64, the run's 2; width 64, the run's 8: its kernel times do not stand for this run's/],
    // Times measured on another backend (or, on CUDA, another dtype or layout) do not stand for the run's.
    [['whatif', `${runsFile}:0`, '--kernels', bad('bench-cuda.json', JSON.stringify({ backend: 'cuda', dtype: 'bf16', batch: 2, resolution: 32, rows: [] }))],
      /'.*bench-cuda\.json' was measured with backend cuda, the run's cpu; width 64, the run's 8/],
  ];
  for (const [argv, message] of cases) {
    const r = cli(argv);
    assert.equal(r.status, 2, `${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, argv.join(' '));
  }
  assert.throws(() => readRun(path.join(dir, 'v1.json')), /version 1 is not supported/);
});

test('profiles: the shipped presets load; a bad one names its bad field', () => {
  assert.deepEqual(shippedProfiles(), ['pytorch-like', 'tf-like']);
  assert.equal(loadProfile('pytorch-like').reduction.schedule, 'serialized');
  assert.equal(loadProfile('tf-like').data.kind, 'records');
  const p = path.join(dir, 'mine.json');
  fs.writeFileSync(p, JSON.stringify({ ...loadProfile('tf-like'), data: { kind: 'tape', prefetch: 0, threads: 1 } }));
  assert.throws(() => loadProfile(p), /data.kind "tape" is not allowed; use synthetic, raw or records/);
  assert.throws(() => loadProfile('nonesuch'), /neither a file nor a shipped profile \(pytorch-like, tf-like\)/);
});

test('progress bar: drawn on a terminal, silent otherwise', () => {
  const written: string[] = [];
  const fake = (isTTY: boolean) => ({ isTTY, columns: 80, write: (s: string) => written.push(s) }) as unknown as NodeJS.WriteStream;
  const quiet = progressBar(true, fake(false));
  quiet.update(0.5, 'half');
  quiet.done();
  assert.equal(written.length, 0);
  const off = progressBar(false, fake(true));
  off.update(0.5, 'half');
  assert.equal(written.length, 0);
  const bar = progressBar(true, fake(true));
  bar.update(0.5, 'half way');
  bar.done();
  assert.match(written[0], /^\r\[#{12}\.{12}\]  50% \d+s half way/);
  assert.equal(written.at(-1), '\n');
});

test('the HTML report renders in headless Chromium', (t) => {
  const chromium = findChromium();
  if (!chromium) return t.skip('no chromium on this machine (apt-get install chromium)');
  const html = path.join(dir, 'explain.html');
  const png = path.join(dir, 'explain.png');
  const shot = spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--window-size=1200,1600', `--screenshot=${png}`, `file://${html}`], { encoding: 'utf8', timeout: 60_000, env: browserEnv() });
  assert.equal(shot.status, 0, shot.stderr);
  assert.ok(fs.statSync(png).size > 20_000, 'a screenshot with content');
  const dom = { stdout: renderedDom(html)! };
  // The browser parsed the SVG timelines (one rect per kernel) and the tables.
  const rects = (dom.stdout.match(/<rect class="k"/g) ?? []).length;
  const [a, b] = readRuns(runsFile);
  assert.equal(rects, a.timeline.length + b.timeline.length);
  assert.match(dom.stdout, /Attribution of the difference/);
  assert.doesNotMatch(fs.readFileSync(html, 'utf8'), /<script|https?:\/\/(?!www\.w3\.org)/, 'self-contained: no script, no network');
});

test('reproduce: both profiles on generated data, the table, the attribution and the hypothesis, predicted then measured', { skip: addon().buildInfo().jpeg.found ? false : 'built without libjpeg: reproduce generates JPEGs' }, () => {
  const save = path.join(dir, 'reproduce');
  const report = path.join(dir, 'reproduce.html');
  const r = cli(['reproduce', '--batch', '2', '--resolution', '32', '--width', '4', '--images', '8', '--classes', '2', '--iterations', '2', '--warmup', '1',
    '--data-dir', path.join(dir, 'data'), '--save-dir', save, '--report', report]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ms\s+pytorch-like\s+tf-like\s+difference/);
  assert.match(r.stdout, /preprocessing \(data wait\)/);
  assert.match(r.stdout, /tf-like minus pytorch-like: [-+]?\d+\.\d ms per iteration; the parts sum to/);
  assert.match(r.stdout, /hypothesis: tf-like with pytorch-like's kernels\n\s+predicted from the two recorded runs: \d+\.\d ms per iteration; measured: \d+\.\d ms \(error [-+]\d+\.\d%\)/);
  const [a, b] = [readRun(path.join(save, 'pytorch-like.json')), readRun(path.join(save, 'tf-like.json'))];
  assert.equal(a.config.reduction!.schedule, 'serialized');
  assert.equal(b.config.reduction!.schedule, 'overlapped');
  assert.equal(a.data!.kind, 'raw');
  assert.equal(b.data!.kind, 'records');
  assert.ok(Object.keys(a.config.plan.layers).length >= 53, 'pytorch-like ran an autotuned plan (a variant per conv layer)');
  const hypothesis = readRun(path.join(save, 'tf-like+pytorch-like-kernels.json'));
  assert.deepEqual(hypothesis.config.plan, a.config.plan);
  assert.equal(hypothesis.config.reduction!.schedule, 'overlapped');
  assert.ok(fs.readFileSync(report, 'utf8').includes('Hypothesis: predicted, then measured'));
  for (const [argv, message] of [
    [['--profiles', 'tf-like'], /--profiles takes two profiles/],
    [['--profiles', 'tf-like,nonesuch'], /profile 'nonesuch' is neither a file nor a shipped profile/],
    [['--images', '1', '--batch', '4'], /--images 1 is fewer than one batch/],
    [['--workers', '0'], /--workers/],
  ] as [string[], RegExp][]) {
    const bad = cli(['reproduce', ...argv]);
    assert.equal(bad.status, 2, `${argv.join(' ')}: ${bad.stderr}`);
    assert.match(bad.stderr, message);
  }
});

test('peers: stepscope runs, a Python without the framework is named, not fatal; a --python that is not there is refused first; the report has the table', () => {
  const report = path.join(dir, 'peers.html');
  // A "Python" that runs but has no framework: its failure is a row, not the end of the command.
  const noFramework = path.join(dir, 'python-without-torch');
  fs.writeFileSync(noFramework, "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n", { mode: 0o755 });
  const r = cli(['peers', '--batch', '2', '--resolution', '32', '--iterations', '1', '--warmup', '0', '--framework', 'pytorch', '--python', noFramework, '--report', report]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /iteration \(median\)\s+\d+\.\d/);
  assert.match(r.stdout, /pytorch: .*No module named 'torch'/);
  const missing = cli(['peers', '--framework', 'pytorch', '--python', '/nonexistent/python3']);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--python '\/nonexistent\/python3' is not allowed: no such file/);
  assert.equal(missing.stdout, '', 'refused before the step ran');
  assert.match(fs.readFileSync(report, 'utf8'), /The same step in each framework/);
  const one = cli(['peers', '--batch', '1', '--resolution', '32', '--framework', 'pytorch']);
  assert.equal(one.status, 2);
  assert.match(one.stderr, /--batch 1 is not allowed at --resolution 32: res5's 1x1 plane leaves one value per channel/);
  const bad = cli(['peers', '--framework', 'jax']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--framework: unknown 'jax'/);
});
