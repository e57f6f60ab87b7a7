// Every CPU conv variant, every pass, every shape class of ResNet-50, at a
// reduced batch and size, against the reference on fresh random data with
// the output poisoned first.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConvPass, ConvShape } from '../binding';
import { uniqueShapes } from '../src/bench/conv-bench';
import { resnet50Convs, shapeClass } from '../src/model/resnet50';
import { addon } from '../src/native';
import { CONV_PASSES, checkConvVariants, convOutput, randomConvTensors, relativeError, runConv } from '../src/ops/conv';
import { availableConvVariants } from '../src/variants';

const variants = availableConvVariants().timedByDefault;
// The whole network at batch 2, 64x64, base width 8: every layer's topology.
const small = uniqueShapes(resnet50Convs({ batch: 2, resolution: 64, width: 8 })).map((g) => g.first);
// Odd sizes that leave partial GEMM tiles and uneven borders.
const odd: { name: string; shape: ConvShape }[] = [
  { name: 'odd-7x7/2', shape: { n: 3, c: 3, h: 23, w: 19, k: 5, r: 7, s: 7, stride: 2, pad: 3 } },
  { name: 'odd-3x3/2', shape: { n: 1, c: 7, h: 9, w: 11, k: 13, r: 3, s: 3, stride: 2, pad: 1 } },
  { name: 'odd-3x3/1', shape: { n: 5, c: 9, h: 6, w: 5, k: 33, r: 3, s: 3, stride: 1, pad: 1 } },
  { name: 'odd-1x1/2', shape: { n: 2, c: 17, h: 7, w: 7, k: 40, r: 1, s: 1, stride: 2, pad: 0 } },
  { name: 'odd-1x1/1', shape: { n: 3, c: 70, h: 3, w: 4, k: 9, r: 1, s: 1, stride: 1, pad: 0 } },
  // 1x1 outputs (res5 at 32 px): GEMM dimensions of 1, whose strides BLAS still checks.
  { name: 'one-pixel-3x3/1', shape: { n: 1, c: 16, h: 1, w: 1, k: 8, r: 3, s: 3, stride: 1, pad: 1 } },
  { name: 'one-pixel-3x3/2', shape: { n: 2, c: 16, h: 2, w: 2, k: 8, r: 3, s: 3, stride: 2, pad: 1 } },
  { name: 'one-pixel-1x1/1', shape: { n: 1, c: 12, h: 1, w: 1, k: 20, r: 1, s: 1, stride: 1, pad: 0 } },
];

test('the reduced network covers every ResNet-50 shape class, 7x7/2 with 3 input channels', () => {
  const classes = new Set(small.map((l) => shapeClass(l.shape)));
  for (const c of ['1x1/1', '1x1/2', '3x3/1', '3x3/2', '7x7/2']) assert.ok(classes.has(c), `missing ${c}`);
  assert.equal(small.find((l) => l.shape.r === 7)?.shape.c, 3);
});

test('variants under test include our own GEMM and the libraries', () => {
  for (const v of ['direct', 'im2col-gemm']) assert.ok(variants.includes(v));
});

for (const { name, shape } of [...small, ...odd]) {
  for (const pass of CONV_PASSES) {
    test(`${name} ${shapeClass(shape)} ${pass}: every variant matches the reference`, async () => {
      const stream = new (addon().Stream)('test');
      const checks = await checkConvVariants(stream, shape, pass, variants, 11);
      for (const c of checks) {
        assert.ok(c.ok, `${c.variant} ${pass} ${name}: error ${c.maxRelErr} > tolerance ${c.tolerance}`);
      }
    });
  }
}

test('the check can fail: a wrong result or leftover poison is caught', async () => {
  const shape: ConvShape = { n: 1, c: 4, h: 6, w: 6, k: 4, r: 3, s: 3, stride: 1, pad: 1 };
  const stream = new (addon().Stream)('test');
  const t = randomConvTensors(shape, 3);
  await runConv(stream, shape, 'fwd', 'reference', t);
  const ref = t.y.read();
  const wrong = ref.slice();
  wrong[5] += 0.01 * Math.max(...ref.map(Math.abs));
  assert.ok(relativeError(wrong, ref) > 1e-3);
  const poisoned = ref.slice();
  poisoned[0] = Number.NaN;
  assert.equal(relativeError(poisoned, ref), Infinity);
});

test('the reference is deterministic and the data is not zeros', async () => {
  const shape: ConvShape = { n: 2, c: 5, h: 7, w: 7, k: 6, r: 3, s: 3, stride: 2, pad: 1 };
  const stream = new (addon().Stream)('test');
  const outs: Float32Array[] = [];
  for (const pass of ['fwd', 'bwd-data', 'bwd-filter'] as ConvPass[]) {
    const t = randomConvTensors(shape, 5);
    assert.ok(t.x.read().some((v) => v !== 0));
    convOutput(t, pass).fill(Number.NaN);
    await runConv(stream, shape, pass, 'reference', t);
    const first = convOutput(t, pass).read();
    await runConv(stream, shape, pass, 'reference', t);
    assert.deepEqual(convOutput(t, pass).read(), first);
    outs.push(first);
  }
  for (const o of outs) assert.ok(o.every(Number.isFinite) && o.some((v) => v !== 0));
});
