// The training step on the CPU backend: PyTorch's numbers on a committed
// fixture, learning on a small synthetic task, gradient events, memory, and
// the step command's inputs and outputs.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readSafetensors, toFloat32, writeSafetensors } from '../src/io/safetensors';
import { resnet50Graph } from '../src/model/graph';
import { addon } from '../src/native';
import { defaultPlan, parsePlan, type Plan } from '../src/plan/plan';
import { TrainingStep } from '../src/run/executor';
import { initWeights, loadBatch, loadWeights } from '../src/run/weights';
import { relativeError } from '../src/ops/conv';
import { cli, ROOT, tempDir } from './helpers';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'step-small');
const tmp = tempDir('stepscope-step-');

/**
 * Tolerances against PyTorch (fp32 both, different summation orders), as
 * normwise relative errors per tensor: the loss 1e-5, logits 1e-4, every
 * gradient and updated parameter 5e-3 (batch norm over 8 values per channel
 * in the last stage amplifies rounding differences; seen: 3e-4 fast, 1.2e-3 reference).
 */
const TOL = { loss: 1e-5, logits: 1e-4, grad: 5e-3, updated: 5e-3 };

function fixtureStep(plan: Plan): { step: TrainingStep; expected: Map<string, Float32Array> } {
  const graph = resnet50Graph({ batch: 2, resolution: 64, width: 4, classes: 10 });
  const meta = readSafetensors(path.join(FIXTURE, 'expected.safetensors'));
  const step = new TrainingStep(graph, plan, {
    lr: Number(meta.metadata.lr), momentum: Number(meta.metadata.momentum), weightDecay: Number(meta.metadata.weight_decay),
  });
  loadWeights(step, path.join(FIXTURE, 'weights.safetensors'));
  const batch = loadBatch(graph, path.join(FIXTURE, 'batch.safetensors'));
  step.input.write(batch.input);
  step.labels.write(batch.labels);
  const expected = new Map([...meta.tensors].map(([k, v]) => [k, toFloat32(v, k)]));
  return { step, expected };
}

const plans: [string, string][] = [
  ['default plan (oneDNN or our GEMM, fused batch norm + ReLU)', ''],
  ['every op reference', 'conv=reference,batchnorm=reference,relu=reference,maxpool=reference,add=reference,avgpool=reference,fc=reference,loss=reference,sgd=reference'],
  ['our own kernels, unfused', 'conv=im2col-gemm,batchnorm=fast'],
];

for (const [name, kernels] of plans) {
  test(`one SGD step matches PyTorch: ${name}`, async () => {
    const graph = resnet50Graph({ batch: 2, resolution: 64, width: 4, classes: 10 });
    const { step, expected } = fixtureStep(parsePlan(kernels, graph));
    const r = await step.iteration(0);
    assert.ok(Math.abs(r.loss - expected.get('loss')![0]) / expected.get('loss')![0] < TOL.loss, `loss ${r.loss}`);
    assert.ok(relativeError(step.readLogits(), expected.get('logits')!) < TOL.logits);
    for (const p of graph.params) {
      if (p.trainable) {
        const e = relativeError(step.grads.get(p.name)!.read(), expected.get(`grad.${p.name}`)!);
        assert.ok(e < TOL.grad, `grad of ${p.name}: error ${e}`);
      }
      const u = relativeError(step.params.get(p.name)!.read(), expected.get(`updated.${p.name}`)!);
      assert.ok(u < TOL.updated, `${p.name} after the step: error ${u}`);
    }
  });
}

test('the fixture test can fail: a perturbed weight changes the loss beyond tolerance', async () => {
  const { step, expected } = fixtureStep(defaultPlan());
  const w = step.params.get('layer2.0.conv2.weight')!;
  const values = w.read();
  values[0] += 0.5;
  w.write(values);
  const r = await step.iteration(0);
  assert.ok(Math.abs(r.loss - expected.get('loss')![0]) / expected.get('loss')![0] > TOL.loss);
});

test('the loss falls over 50 steps on a small learnable task', async () => {
  const graph = resnet50Graph({ batch: 8, resolution: 32, width: 4, classes: 4 });
  const step = new TrainingStep(graph, defaultPlan(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  initWeights(step, 3);
  // Class k lights up channel k % 3 in quadrant k, over uniform noise.
  const [n, c, h, w] = graph.inputShape;
  let state = 12345;
  const rand = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const losses: number[] = [];
  for (let i = 0; i < 50; i++) {
    const input = new Float32Array(n * c * h * w);
    const labels = new Float32Array(n);
    for (let s = 0; s < n; s++) {
      const k = Math.floor(rand() * 4);
      labels[s] = k;
      for (let ch = 0; ch < c; ch++)
        for (let y = 0; y < h; y++)
          for (let x = 0; x < w; x++) {
            const lit = ch === k % 3 && (y < h / 2) === (k < 2) && (x < w / 2) === (k % 2 === 0);
            input[((s * c + ch) * h + y) * w + x] = rand() - 0.5 + (lit ? 1.5 : 0);
          }
    }
    step.input.write(input);
    step.labels.write(labels);
    losses.push((await step.iteration(i)).loss);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b) / xs.length;
  const first = mean(losses.slice(0, 5)), last = mean(losses.slice(-10));
  assert.ok(last < 0.6 * first, `loss went from ${first.toFixed(3)} to ${last.toFixed(3)}`);
});

test('gradients are marked by events in reverse layer order, and memory is released', async () => {
  const graph = resnet50Graph({ batch: 2, resolution: 32, width: 4, classes: 10 });
  const step = new TrainingStep(graph, defaultPlan(), { lr: 0.01, momentum: 0.9, weightDecay: 0 });
  initWeights(step, 1);
  step.input.fillUniform(5, -1, 1);
  step.labels.write(new Float32Array([3, 8]));
  const native = addon();
  const trainable = graph.params.filter((p) => p.trainable).map((p) => p.name);
  const before = native.memoryStats().bytesInUse;
  await step.iteration(0);
  const inUse = native.memoryStats().bytesInUse;
  const r = await step.iteration(1);
  assert.equal(native.memoryStats().bytesInUse, inUse, 'no memory is left behind by an iteration');
  const order = step.gradientEvents.map((e) => e.param);
  assert.deepEqual([...order].sort(), [...trainable].sort());
  assert.deepEqual(order.slice(0, 2), ['fc.weight', 'fc.bias']);
  assert.equal(order.at(-1), 'conv1.weight');
  assert.ok(order.indexOf('layer4.2.conv3.weight') < order.indexOf('layer1.0.conv1.weight'));
  const stamps = step.gradientEvents.map((e) => e.event.timestampNs!);
  assert.ok(stamps.every((t, i) => t !== null && (i === 0 || t >= stamps[i - 1])), 'events fire in order');
  assert.ok(stamps[0] > r.forwardEndNs && stamps.at(-1)! <= r.backwardEndNs);
  // The activations an iteration holds at its peak (kept by the step for the
  // next iteration) are well below every activation and its gradient at once
  // (other tests' objects may still hold memory).
  const everything = [...graph.tensors.values()].reduce((a, b) => a + b, 0) * 4 * 2;
  const added = r.peakBytes - before;
  assert.ok(added > 0 && added < 0.75 * everything, `an iteration added ${added} bytes at its peak; all tensors twice: ${everything}`);
  step.releaseActivations();
  await step.stream.synchronize();
  assert.ok(native.memoryStats().bytesInUse < inUse, 'the step gives its activations back');
});

test('step prints the phases and top kernels, saves the run and round-trips weights', () => {
  const small = ['--batch', '2', '--resolution', '32', '--width', '4', '--classes', '10', '--iterations', '2', '--warmup', '1'];
  const runFile = path.join(tmp, 'run.json');
  const weightsFile = path.join(tmp, 'w.safetensors');
  const r = cli(['step', ...small, '--save', runFile, '--save-weights', weightsFile, '--kernels', 'conv=im2col-gemm,res2a_branch2b=direct']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /total\s+[\d.]+/);
  assert.match(r.stdout, /forward/);
  assert.match(r.stdout, /top kernels/);
  assert.match(r.stdout, /peak memory \d+ MiB/);
  const run = JSON.parse(fs.readFileSync(runFile, 'utf8'));
  assert.equal(run.format, 'stepscope-run');
  assert.equal(run.version, 3);
  assert.equal(run.kernels.length, run.timeline.length, 'one figure per kernel of the iteration');
  assert.equal(run.iterations.length, 3);
  assert.ok(run.timeline.some((k: { layer: string; variant: string }) => k.layer === 'res2a_branch2b' && k.variant === 'direct'));
  assert.ok(run.timeline.some((k: { layer: string; variant: string }) => k.layer === 'res3a_branch2b' && k.variant === 'im2col-gemm'));
  const w = readSafetensors(weightsFile);
  assert.equal(w.tensors.get('fc.weight')!.shape.join(), '10,128');
  const again = cli(['step', ...small, '--weights', weightsFile, '--json']);
  assert.equal(again.status, 0, again.stderr);
  assert.ok(Number.isFinite(JSON.parse(again.stdout).summary.loss.median));
});

test('bad step input: clear errors naming the tensor, option or step; exit 2 (1 for a diverged step)', () => {
  const small = ['--batch', '2', '--resolution', '64', '--width', '4', '--classes', '10', '--iterations', '1', '--warmup', '0'];
  const good = path.join(FIXTURE, 'weights.safetensors');
  const renamed = path.join(tmp, 'renamed.safetensors');
  const wrongShape = path.join(tmp, 'shape.safetensors');
  const truncated = path.join(tmp, 'truncated.safetensors');
  const nanBatch = path.join(tmp, 'nan.safetensors');
  const w = readSafetensors(good).tensors;
  const fc = w.get('fc.bias')!;
  w.delete('fc.bias');
  writeSafetensors(renamed, new Map([...w, ['fc.b', fc]]));
  writeSafetensors(wrongShape, new Map([...w, ['fc.bias', { dtype: 'F32', shape: [11], data: new Float32Array(11) }]]));
  const bytes = fs.readFileSync(good);
  fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 100));
  const batch = readSafetensors(path.join(FIXTURE, 'batch.safetensors')).tensors;
  const input = batch.get('input')!.data as Float32Array;
  input[5] = Number.NaN;
  writeSafetensors(nanBatch, batch);
  const cases: [string[], number, RegExp][] = [
    [['--weights', renamed], 2, /tensor 'fc.b' is not a parameter of this network/],
    [['--weights', wrongShape], 2, /tensor 'fc.bias' has shape \[11\], this network needs \[10\]/],
    [['--weights', truncated], 2, /truncated|past the end|shorter/],
    [['--weights', path.join(tmp, 'missing.safetensors')], 2, /missing.safetensors/],
    [['--input', path.join(FIXTURE, 'weights.safetensors')], 2, /tensor 'input' is missing/],
    [['--weights', good, '--input', nanBatch], 1, /loss of step 0 is NaN/],
    [['--kernels', 'conv=winograd'], 2, /variant 'winograd' is not allowed for conv; allowed: .*im2col-gemm/],
    [['--kernels', 'res9z_branch2b=direct'], 2, /'res9z_branch2b' is neither an op .* nor a layer/],
    [['--kernels', 'bn2a_branch2a=im2col-gemm'], 2, /not allowed for batchnorm; allowed: reference, fast, fused-relu/],
    [['--lr', '-1'], 2, /--lr '-1' is not allowed/],
    [['--batch', '0'], 2, /--batch '0'/],
  ];
  for (const [args, status, message] of cases) {
    const r = cli(['step', ...small, ...args]);
    assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
});

const NO_ONEDNN = addon().buildInfo().onednn.found ? false : `built without oneDNN: ${addon().buildInfo().onednn.reason ?? 'not found'}`;

test("oneDNN's blocked layout kept between layers gives the NCHW step's results", { skip: NO_ONEDNN }, async () => {
  // Resolution 64, not 32: at 32 the last stage is 1x1, its batch norm sees 2
  // values per channel, and any two correct implementations drift apart.
  // Weight seed 6: with seeds 4 and 5 (since fillUniform rounds once, session
  // 9) a ReLU input sits within rounding of 0, so the two layouts (different
  // summation orders) take opposite sides of the kink and a few gradients
  // differ by 5-23%; that is the ReLU, not the layout. Seed 6 has no such
  // input: every gradient agrees within 9e-4 whichever ISA oneDNN takes
  // (SSE4.1 to AVX-512). The loss is held to the logits' 1e-4: the two
  // summation orders alone move it by up to 2e-5.
  const graph = resnet50Graph({ batch: 2, resolution: 64, width: 16, classes: 10 });
  const results = [];
  for (const layout of ['nchw', 'nChw16c'] as const) {
    const step = new TrainingStep(graph, parsePlan('conv=onednn', graph), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 }, layout);
    assert.equal(step.layout, layout);
    initWeights(step, 6);
    step.input.fillUniform(9, -2, 2);
    step.labels.write(new Float32Array([1, 7]));
    const r = await step.iteration(0);
    results.push({ loss: r.loss, logits: step.readLogits(), step });
  }
  const [plain, blocked] = results;
  assert.ok(Math.abs(plain.loss - blocked.loss) / plain.loss < 1e-4);
  assert.ok(relativeError(blocked.logits, plain.logits) < 1e-4);
  for (const p of graph.params) {
    if (!p.trainable) continue;
    const e = relativeError(blocked.step.grads.get(p.name)!.read(), plain.step.grads.get(p.name)!.read());
    assert.ok(e < 2e-3, `grad of ${p.name}: ${e}`);
  }
  for (const name of ['layer3.1.bn2.running_var', 'layer1.0.downsample.1.running_mean']) {
    assert.ok(relativeError(blocked.step.params.get(name)!.read(), plain.step.params.get(name)!.read()) < 1e-4, name);
  }
});

test('the blocked layout is taken only where it can be, and refused with a reason when forced', { skip: NO_ONEDNN }, () => {
  const narrow = resnet50Graph({ batch: 2, resolution: 32, width: 4, classes: 10 });
  assert.equal(new TrainingStep(narrow, defaultPlan(), { lr: 0.1, momentum: 0, weightDecay: 0 }).layout, 'nchw');
  assert.throws(
    () => new TrainingStep(narrow, defaultPlan(), { lr: 0.1, momentum: 0, weightDecay: 0 }, 'nChw16c'),
    /--layout nChw16c: conv .* not divisible by 16/,
  );
  const wide = resnet50Graph({ batch: 2, resolution: 32, width: 16, classes: 10 });
  assert.throws(
    () => new TrainingStep(wide, parsePlan('res3a_branch2b=im2col-gemm', wide), { lr: 0.1, momentum: 0, weightDecay: 0 }, 'nChw16c'),
    /conv res3a_branch2b runs 'im2col-gemm', which takes NCHW only/,
  );
});
