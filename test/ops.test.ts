// Every op of the step other than convolution, reference and fast variants:
// finite-difference gradient checks on small random inputs, fast against
// reference, and the error paths. Conv's backward passes are checked here by
// finite differences of the reference forward (its variants are checked
// against the reference in conv-variants.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConvShape, NativeError, OpName } from '../binding';
import { addon } from '../src/native';
import { runOp, type OpParams } from '../src/ops/op';
import { relativeError } from '../src/ops/conv';

const native = addon();
const stream = new native.Stream('ops');
const VARIANTS = ['reference', 'fast'];

let seed = 1;
function random(n: number, lo = -1, hi = 1): Float32Array {
  const b = new native.Buffer(n);
  b.fillUniform(seed++, lo, hi);
  return b.read();
}

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * b[i], 0);

/**
 * Checks d(sum(R * out))/d(input) against central differences at `samples`
 * random positions. fp32 forward, so the step is large-ish and the tolerance
 * is on the error relative to the largest gradient entry.
 */
async function gradCheck(opts: {
  forward: (inputs: Record<string, Float32Array>) => Promise<Float32Array>;
  inputs: Record<string, Float32Array>;
  wrt: string;
  analytic: Float32Array;
  projection: Float32Array;
  h?: number;
  samples?: number;
  tolerance?: number;
}): Promise<void> {
  const h = opts.h ?? 1e-2;
  const x = opts.inputs[opts.wrt];
  const scale = Math.max(...opts.analytic.map(Math.abs), 1e-6);
  const samples = Math.min(opts.samples ?? 12, x.length);
  for (let s = 0; s < samples; s++) {
    const i = Math.floor(((s * 7919 + 13) % 104729) / 104729 * x.length);
    const plus = new Float32Array(x), minus = new Float32Array(x);
    plus[i] += h;
    minus[i] -= h;
    const lp = dot(await opts.forward({ ...opts.inputs, [opts.wrt]: plus }), opts.projection);
    const lm = dot(await opts.forward({ ...opts.inputs, [opts.wrt]: minus }), opts.projection);
    const numeric = (lp - lm) / (2 * h);
    const err = Math.abs(numeric - opts.analytic[i]) / scale;
    assert.ok(err < (opts.tolerance ?? 2e-2), `d/d${opts.wrt}[${i}]: numeric ${numeric}, analytic ${opts.analytic[i]} (error ${err})`);
  }
}

for (const variant of VARIANTS) {
  test(`batchnorm (${variant}): gradients of x, gamma, beta; statistics and running update`, async () => {
    for (const relu of [false, true]) {
      const p: OpParams = { n: 3, c: 4, hw: 5, relu, momentum: 0.1, eps: 1e-5 };
      const N = 60;
      const base = { x: random(N, -2, 2), gamma: random(4, 0.5, 1.5), beta: random(4, -0.5, 0.5), running_mean: random(4), running_var: random(4, 0.5, 1.5) };
      const fwd = await runOp(stream, 'batchnorm-fwd', variant, p, base);
      // Statistics against a plain computation.
      for (let c = 0; c < 4; c++) {
        const vals: number[] = [];
        for (let n = 0; n < 3; n++) for (let i = 0; i < 5; i++) vals.push(base.x[(n * 4 + c) * 5 + i]);
        const mean = vals.reduce((a, b) => a + b) / 15;
        const varB = vals.reduce((a, b) => a + (b - mean) ** 2, 0) / 15;
        assert.ok(Math.abs(fwd.save_mean[c] - mean) < 1e-5);
        assert.ok(Math.abs(fwd.save_invstd[c] - 1 / Math.sqrt(varB + 1e-5)) < 1e-3);
        assert.ok(Math.abs(fwd.running_mean[c] - (0.9 * base.running_mean[c] + 0.1 * mean)) < 1e-5);
        assert.ok(Math.abs(fwd.running_var[c] - (0.9 * base.running_var[c] + 0.1 * varB * 15 / 14)) < 1e-5);
      }
      if (relu) assert.ok(fwd.y.every((v) => v >= 0));
      const R = random(N);
      const forward = async (inp: Record<string, Float32Array>) => (await runOp(stream, 'batchnorm-fwd', variant, p, { ...base, ...inp })).y;
      const bwd = await runOp(stream, 'batchnorm-bwd', variant, p, {
        x: base.x, gamma: base.gamma, save_mean: fwd.save_mean, save_invstd: fwd.save_invstd, dy: R, ...(relu ? { y: fwd.y } : {}),
      });
      await gradCheck({ forward, inputs: base, wrt: 'x', analytic: bwd.dx, projection: R, h: 1e-3 });
      await gradCheck({ forward, inputs: base, wrt: 'gamma', analytic: bwd.dgamma, projection: R, h: 1e-3 });
      await gradCheck({ forward, inputs: base, wrt: 'beta', analytic: bwd.dbeta, projection: R, h: 1e-3 });
    }
  });

  test(`relu and add (${variant}): values and gradients`, async () => {
    const x = random(50).map((v) => (Math.abs(v) < 0.05 ? v + 0.1 : v)); // away from the kink
    const f = await runOp(stream, 'relu-fwd', variant, { size: 50 }, { x });
    assert.deepEqual([...f.y], [...x].map((v) => Math.max(v, 0)));
    const R = random(50);
    const b = await runOp(stream, 'relu-bwd', variant, { size: 50 }, { y: f.y, dy: R });
    await gradCheck({ forward: async (i) => (await runOp(stream, 'relu-fwd', variant, { size: 50 }, i)).y, inputs: { x }, wrt: 'x', analytic: b.dx, projection: R, h: 1e-3 });
    const a = random(50), c = random(50);
    const sum = await runOp(stream, 'add', variant, { size: 50 }, { a, b: c });
    sum.y.forEach((v, i) => assert.equal(v, Math.fround(a[i] + c[i])));
    const sumRelu = await runOp(stream, 'add', variant, { size: 50, relu: true }, { a, b: c });
    sumRelu.y.forEach((v, i) => assert.equal(v, Math.max(Math.fround(a[i] + c[i]), 0)));
  });

  test(`maxpool 3x3/2 and global avgpool (${variant}): values and gradients`, async () => {
    const p = { n: 2, c: 3, h: 7, w: 6, k: 3, stride: 2, pad: 1 };
    const x = random(2 * 3 * 7 * 6);
    const f = await runOp(stream, 'maxpool-fwd', variant, p, { x });
    assert.equal(f.y.length, 2 * 3 * 4 * 3);
    // y[0,0,0,0] is the max of the top-left 2x2 window (padding never wins).
    assert.equal(f.y[0], Math.max(x[0], x[1], x[6], x[7]));
    const R = random(f.y.length);
    const b = await runOp(stream, 'maxpool-bwd', variant, p, { dy: R, argmax: f.argmax });
    await gradCheck({ forward: async (i) => (await runOp(stream, 'maxpool-fwd', variant, p, i)).y, inputs: { x }, wrt: 'x', analytic: b.dx, projection: R, h: 1e-4, samples: 30 });
    const ap = { n: 2, c: 3, hw: 10 };
    const xa = random(60);
    const fa = await runOp(stream, 'avgpool-fwd', variant, ap, { x: xa });
    assert.ok(Math.abs(fa.y[1] - xa.slice(10, 20).reduce((s, v) => s + v) / 10) < 1e-6);
    const Ra = random(6);
    const ba = await runOp(stream, 'avgpool-bwd', variant, ap, { dy: Ra });
    await gradCheck({ forward: async (i) => (await runOp(stream, 'avgpool-fwd', variant, ap, i)).y, inputs: { x: xa }, wrt: 'x', analytic: ba.dx, projection: Ra, h: 1e-2 });
  });

  test(`fully connected (${variant}): gradients of x, w, b`, async () => {
    const p = { n: 3, in: 37, out: 11 };
    const base = { x: random(3 * 37), w: random(11 * 37), b: random(11) };
    const forward = async (i: Record<string, Float32Array>) => (await runOp(stream, 'fc-fwd', variant, p, { ...base, ...i })).y;
    const y = await forward({});
    let expected = 0;
    for (let k = 0; k < 37; k++) expected += base.x[37 + k] * base.w[2 * 37 + k];
    assert.ok(Math.abs(y[11 + 2] - (expected + base.b[2])) < 1e-4);
    const R = random(33);
    const g = await runOp(stream, 'fc-bwd', variant, p, { x: base.x, w: base.w, dy: R });
    for (const [wrt, analytic] of [['x', g.dx], ['w', g.dw], ['b', g.db]] as const) {
      await gradCheck({ forward, inputs: base, wrt, analytic, projection: R });
    }
  });

  test(`softmax cross-entropy (${variant}): loss and its gradient`, async () => {
    const p = { n: 4, classes: 7 };
    const logits = random(28, -3, 3);
    const labels = new Float32Array([0, 6, 3, 3]);
    const out = await runOp(stream, 'softmax-xent', variant, p, { logits, labels });
    let loss = 0;
    for (let i = 0; i < 4; i++) {
      const row = [...logits.slice(i * 7, i * 7 + 7)];
      const lse = Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
      loss += lse - row[labels[i]];
    }
    assert.ok(Math.abs(out.loss[0] - loss / 4) < 1e-5);
    await gradCheck({
      forward: async (i) => (await runOp(stream, 'softmax-xent', variant, p, { logits, labels, ...i })).loss,
      inputs: { logits }, wrt: 'logits', analytic: out.dlogits, projection: new Float32Array([1]), h: 1e-2, samples: 28,
    });
  });

  test(`sgd (${variant}): PyTorch's momentum and weight decay semantics over two steps`, async () => {
    const p = { size: 9, lr: 0.1, momentum: 0.9, weightDecay: 0.01 };
    const param = random(9), g1 = random(9), g2 = random(9);
    const s1 = await runOp(stream, 'sgd', variant, p, { param, grad: g1, momentum_buffer: new Float32Array(9) });
    const s2 = await runOp(stream, 'sgd', variant, p, { param: s1.param, grad: g2, momentum_buffer: s1.momentum_buffer });
    for (let i = 0; i < 9; i++) {
      const d1 = g1[i] + 0.01 * param[i];
      const p1 = param[i] - 0.1 * d1;
      const buf2 = 0.9 * d1 + g2[i] + 0.01 * p1;
      assert.ok(Math.abs(s2.param[i] - (p1 - 0.1 * buf2)) < 1e-6);
    }
    // tensors=k: k tensors in one kernel, each as its own sgd.
    const sizes = [9, 1, 70000];
    const group = { tensors: 3, size0: 9, size1: 1, size2: 70000, lr: 0.1, momentum: 0.9, weightDecay: 0.01 };
    const ins: Record<string, Float32Array> = {};
    sizes.forEach((n, t) => Object.assign(ins, { [`param.${t}`]: random(n), [`grad.${t}`]: random(n), [`momentum_buffer.${t}`]: random(n) }));
    const together = await runOp(stream, 'sgd', variant, group, ins);
    for (const [t, n] of sizes.entries()) {
      const alone = await runOp(stream, 'sgd', variant, { size: n, lr: 0.1, momentum: 0.9, weightDecay: 0.01 },
        { param: ins[`param.${t}`], grad: ins[`grad.${t}`], momentum_buffer: ins[`momentum_buffer.${t}`] });
      assert.deepEqual(together[`param.${t}`], alone.param, `tensor ${t}`);
      assert.deepEqual(together[`momentum_buffer.${t}`], alone.momentum_buffer, `tensor ${t}`);
    }
  });
}

// NCHW <-> nChw16c, to check the blocked kernels against the plain ones.
function toBlocked(x: Float32Array, n: number, c: number, hw: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++)
    for (let ch = 0; ch < c; ch++)
      for (let k = 0; k < hw; k++) out[((i * (c / 16) + Math.floor(ch / 16)) * hw + k) * 16 + (ch % 16)] = x[(i * c + ch) * hw + k];
  return out;
}

for (const variant of VARIANTS) {
  test(`blocked (nChw16c) batch norm and pooling match the NCHW kernels (${variant})`, async () => {
    const [n, c, h, w] = [2, 32, 6, 5];
    const hw = h * w;
    const x = random(n * c * hw, -2, 2), dy = random(n * c * hw);
    const stats = { gamma: random(c, 0.5, 1.5), beta: random(c), running_mean: random(c), running_var: random(c, 0.5, 1) };
    for (const relu of [false, true]) {
      const p = { n, c, hw, relu };
      const plain = await runOp(stream, 'batchnorm-fwd', variant, p, { x, ...stats });
      const blocked = await runOp(stream, 'batchnorm-fwd', variant, { ...p, blocked: true }, { x: toBlocked(x, n, c, hw), ...stats });
      assert.ok(relativeError(blocked.y, toBlocked(plain.y, n, c, hw)) < 1e-5);
      assert.ok(relativeError(blocked.running_var, plain.running_var) < 1e-6);
      const bw = { gamma: stats.gamma, save_mean: plain.save_mean, save_invstd: plain.save_invstd };
      const pb = await runOp(stream, 'batchnorm-bwd', variant, p, { x, dy, ...bw, ...(relu ? { y: plain.y } : {}) });
      const bb = await runOp(stream, 'batchnorm-bwd', variant, { ...p, blocked: true }, {
        x: toBlocked(x, n, c, hw), dy: toBlocked(dy, n, c, hw), ...bw, ...(relu ? { y: toBlocked(plain.y, n, c, hw) } : {}),
      });
      assert.ok(relativeError(bb.dx, toBlocked(pb.dx, n, c, hw)) < 1e-5);
      assert.ok(relativeError(bb.dgamma, pb.dgamma) < 1e-5 && relativeError(bb.dbeta, pb.dbeta) < 1e-5);
    }
    const mp = { n, c, h, w, k: 3, stride: 2, pad: 1 };
    const pf = await runOp(stream, 'maxpool-fwd', variant, mp, { x });
    const bf = await runOp(stream, 'maxpool-fwd', variant, { ...mp, blocked: true }, { x: toBlocked(x, n, c, hw) });
    assert.deepEqual(bf.y, toBlocked(pf.y, n, c, 3 * 3));
    const g = random(n * c * 9);
    const pbw = await runOp(stream, 'maxpool-bwd', variant, mp, { dy: g, argmax: pf.argmax });
    const bbw = await runOp(stream, 'maxpool-bwd', variant, { ...mp, blocked: true }, { dy: toBlocked(g, n, c, 9), argmax: bf.argmax });
    assert.deepEqual(bbw.dx, toBlocked(pbw.dx, n, c, hw));
    const ap = { n, c, hw };
    const pa = await runOp(stream, 'avgpool-fwd', variant, ap, { x });
    const ba = await runOp(stream, 'avgpool-fwd', variant, { ...ap, blocked: true }, { x: toBlocked(x, n, c, hw) });
    assert.ok(relativeError(ba.y, pa.y) < 1e-6);
    const gy = random(n * c);
    const pab = await runOp(stream, 'avgpool-bwd', variant, ap, { dy: gy });
    const bab = await runOp(stream, 'avgpool-bwd', variant, { ...ap, blocked: true }, { dy: gy });
    assert.deepEqual(bab.dx, toBlocked(pab.dx, n, c, hw));
    assert.throws(() => new native.OpKernel('batchnorm-fwd', variant, { n: 1, c: 20, hw: 4, blocked: true }), /divisible by 16, got c=20/);
  });
}

test('fast variants agree with the reference on larger shapes', async () => {
  const cases: [OpName, OpParams, Record<string, Float32Array>, string][] = [
    ['batchnorm-fwd', { n: 4, c: 16, hw: 49 }, { x: random(3136, -3, 3), gamma: random(16), beta: random(16), running_mean: random(16), running_var: random(16, 0.5, 1) }, 'y'],
    ['fc-fwd', { n: 8, in: 256, out: 100 }, { x: random(2048), w: random(25600), b: random(100) }, 'y'],
    ['maxpool-fwd', { n: 2, c: 8, h: 28, w: 28 }, { x: random(12544) }, 'y'],
  ];
  for (const [op, p, values, output] of cases) {
    const ref = await runOp(stream, op, 'reference', p, values);
    const fast = await runOp(stream, op, 'fast', p, values);
    assert.ok(relativeError(fast[output], ref[output]) < 1e-5, op);
  }
});

test('the reference conv backward passes are the gradients of its forward', async () => {
  const shape: ConvShape = { n: 2, c: 3, h: 6, w: 5, k: 4, r: 3, s: 3, stride: 2, pad: 1 };
  const { p, q } = { p: 3, q: 3 };
  const x = random(2 * 3 * 30), w = random(4 * 3 * 9), R = random(2 * 4 * p * q);
  const conv = async (xv: Float32Array, wv: Float32Array) => {
    const X = new native.Buffer(xv.length), W = new native.Buffer(wv.length), Y = new native.Buffer(R.length);
    X.write(xv); W.write(wv);
    new native.ConvKernel(shape, 'fwd', 'reference').enqueue(stream, X, W, Y);
    await stream.synchronize();
    return Y.read();
  };
  const X = new native.Buffer(x.length), W = new native.Buffer(w.length), DY = new native.Buffer(R.length);
  X.write(x); W.write(w); DY.write(R);
  const dX = new native.Buffer(x.length), dW = new native.Buffer(w.length);
  new native.ConvKernel(shape, 'bwd-data', 'reference').enqueue(stream, dX, W, DY);
  new native.ConvKernel(shape, 'bwd-filter', 'reference').enqueue(stream, X, dW, DY);
  await stream.synchronize();
  await gradCheck({ forward: async (i) => conv(i.x, i.w), inputs: { x, w }, wrt: 'x', analytic: dX.read(), projection: R });
  await gradCheck({ forward: async (i) => conv(i.x, i.w), inputs: { x, w }, wrt: 'w', analytic: dW.read(), projection: R });
});

test('op errors name the op, the parameter or buffer, and what is allowed', async () => {
  const cases: [() => unknown, RegExp][] = [
    [() => new native.OpKernel('softmax' as OpName, 'fast', {}), /unknown op 'softmax': allowed .*batchnorm-fwd/],
    [() => new native.OpKernel('relu-fwd', 'turbo', { size: 4 }), /unknown relu-fwd variant 'turbo': allowed reference, fast/],
    [() => new native.OpKernel('relu-fwd', 'fast', {}), /parameter 'size' is missing/],
    [() => new native.OpKernel('batchnorm-fwd', 'fast', { n: 2, c: 0, hw: 4 }), /parameter 'c' is 0.*allowed an integer from 1/],
    [() => new native.OpKernel('sgd', 'fast', { size: 4, lr: Number.NaN }), /'lr' is nan, not finite/],
    [() => new native.OpKernel('maxpool-fwd', 'fast', { n: 1, c: 1, h: 1, w: 1, k: 3, pad: 0 }), /gives no output/],
    // The modeled link: a negative size, or a hold past an hour (a sleep of days, or of infinity, would hang the stream).
    [() => new native.OpKernel('link-hold', 'fast', { bytes: -1, workers: 2, gbps: 1 }), /'bytes' must be a finite number >= 0/],
    [() => new native.OpKernel('link-hold', 'fast', { bytes: 1e300, workers: 2, gbps: 1e-300 }), /hold the link inf s, more than the 3600 s allowed \(raise gbps or lower bytes\)/],
    [() => new native.OpKernel('link-hold', 'fast', { bytes: 1e11, workers: 4, gbps: 0.01 }), /1e\+11 bytes among 4 workers at 0.01 GB\/s and 0 us hold the link 15000 s, more than the 3600 s allowed/],
  ];
  for (const [make, message] of cases) assert.throws(make, (e: NativeError) => message.test(e.message), String(message));
  const k = new native.OpKernel('add', 'fast', { size: 4 });
  assert.throws(() => k.enqueue(stream, [new native.Buffer(4)]), /got 1 buffers, needs 3 \(a, b, y\)/);
  assert.throws(() => k.enqueue(stream, [new native.Buffer(4), new native.Buffer(5), new native.Buffer(4)]), /'b' holds 5 values, needs 4/);
  const released = new native.Buffer(4);
  released.release();
  assert.throws(() => k.enqueue(stream, [released, new native.Buffer(4), new native.Buffer(4)]), /'a' was released/);
  // A bad label is found when the kernel runs: the stream reports it, the process lives on.
  const loss = new native.OpKernel('softmax-xent', 'fast', { n: 2, classes: 3 });
  const bufs = [new native.Buffer(6), new native.Buffer(2), new native.Buffer(1), new native.Buffer(6)];
  bufs[1].write(new Float32Array([1, 5]));
  loss.enqueue(stream, bufs);
  await assert.rejects(stream.synchronize(), /label 5 of sample 1 is not a class index in 0..2/);
  await stream.synchronize(); // the error was reported once and cleared
});

test('NaN propagates through ReLU, fused batch norm + ReLU, add + ReLU and max-pool (never silently dropped)', async () => {
  for (const variant of VARIANTS) {
    const x = new Float32Array([1, Number.NaN, -1, 2]);
    assert.ok(Number.isNaN((await runOp(stream, 'relu-fwd', variant, { size: 4 }, { x })).y[1]));
    assert.ok(Number.isNaN((await runOp(stream, 'add', variant, { size: 4, relu: true }, { a: x, b: x })).y[1]));
    const pooled = await runOp(stream, 'maxpool-fwd', variant, { n: 1, c: 1, h: 2, w: 2, k: 3, stride: 2, pad: 1 }, { x });
    assert.ok(Number.isNaN(pooled.y[0]));
    const bn = await runOp(stream, 'batchnorm-fwd', variant, { n: 1, c: 1, hw: 4, relu: true },
      { x, gamma: new Float32Array([1]), beta: new Float32Array([0]), running_mean: new Float32Array(1), running_var: new Float32Array([1]) });
    assert.ok(bn.y.every(Number.isNaN));
  }
});

test('memory statistics follow allocation and release', () => {
  const before = native.memoryStats().bytesInUse;
  native.resetPeakMemory();
  const b = new native.Buffer(1 << 20);
  assert.equal(native.memoryStats().bytesInUse - before, 4 << 20);
  b.release();
  assert.equal(b.released, true);
  assert.equal(native.memoryStats().bytesInUse, before);
  assert.ok(native.memoryStats().peakBytes >= before + (4 << 20));
  assert.throws(() => b.read(), /released/);
});
