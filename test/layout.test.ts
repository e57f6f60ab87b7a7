// NCHW <-> NHWC on the host (src/ops/layout.ts), which the device checks of
// the NHWC kernels use to feed and read them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromNhwc, toNhwc } from '../src/ops/layout';

test('toNhwc puts channels last; fromNhwc undoes it; a tensor of the wrong size is refused', () => {
  // [n=1, c=2, s=3]: channel 0 = 0 1 2, channel 1 = 10 11 12 -> per position (c0, c1).
  assert.deepEqual(toNhwc(Float32Array.from([0, 1, 2, 10, 11, 12]), 2, 3), Float32Array.from([0, 10, 1, 11, 2, 12]));
  const x = Float32Array.from({ length: 2 * 5 * 7 }, (_, i) => Math.sin(i + 1));
  const t = toNhwc(x, 5, 7);
  assert.notDeepEqual(t, x);
  assert.deepEqual(fromNhwc(t, 5, 7), x);
  // Element (n, c, s) lands at (n * S + s) * C + c, as native/cuda/op_index.h's actIndex.
  assert.equal(t[(1 * 7 + 4) * 5 + 3], x[(1 * 5 + 3) * 7 + 4]);
  assert.throws(() => toNhwc(new Float32Array(10), 3, 3), /not \[n, 3, 3\]/);
});

test('roundBf16Value rounds to the nearest bf16, ties to even, as the device does', async () => {
  const { roundBf16Value, roundBf16 } = await import('../src/ops/bf16');
  assert.equal(roundBf16Value(1), 1);
  assert.equal(roundBf16Value(1 + 2 ** -8), 1); // a tie: the even neighbour
  assert.equal(roundBf16Value(1 + 3 * 2 ** -8), 1 + 2 ** -6); // a tie: 1 + 2^-7 is odd, so up
  assert.equal(roundBf16Value(1 + 2 ** -9), 1);
  assert.equal(roundBf16Value(-2.5), -2.5);
  assert.equal(roundBf16Value(3.4028234663852886e38), Infinity); // above the largest bf16 plus half a unit
  assert.ok(Number.isNaN(roundBf16Value(Number.NaN)));
  for (const f of [0.1, -7.3, 1234.5678, 1e-20]) {
    const r = roundBf16Value(f);
    assert.ok(Math.abs(r - f) <= 2 ** -8 * Math.abs(f), `${f} -> ${r}`);
  }
  assert.deepEqual(roundBf16(Float32Array.from([1, 1 + 2 ** -9])), Float32Array.from([1, 1]));
});
