// Bad shapes, bad names and bad buffers give typed errors that name the bad
// value and what is allowed; nothing crashes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConvPass, ConvShape, NativeError } from '../binding';
import { addon } from '../src/native';

const native = addon();
const good: ConvShape = { n: 1, c: 4, h: 8, w: 8, k: 4, r: 3, s: 3, stride: 1, pad: 1 };

test('bad shapes are rejected with the field and the allowed range', () => {
  const cases: [Partial<ConvShape>, RegExp][] = [
    [{ n: 0 }, /'n' is 0: allowed 1/],
    [{ c: -1 }, /'c' is -1/],
    [{ stride: 0 }, /'stride' is 0/],
    [{ pad: 3 }, /pad 3 must be smaller than the filter/],
    [{ h: 1, w: 1, pad: 0 }, /smaller than the filter/],
  ];
  for (const [change, message] of cases) {
    assert.throws(
      () => new native.ConvKernel({ ...good, ...change }, 'fwd', 'direct'),
      (e: NativeError) => e.code === 'ERR_BAD_SHAPE' && message.test(e.message),
      JSON.stringify(change),
    );
  }
  assert.throws(() => new native.ConvKernel({ ...good, h: 2.5 }, 'fwd', 'direct'), (e: NativeError) => e.code === 'ERR_INVALID_ARG');
  assert.throws(
    () => new native.ConvKernel({ n: 1 } as ConvShape, 'fwd', 'direct'),
    (e: NativeError) => e.code === 'ERR_INVALID_ARG' && /shape.c/.test(e.message),
  );
});

test('unknown variants and passes list the valid names', () => {
  assert.throws(
    () => new native.ConvKernel(good, 'fwd', 'winograd'),
    (e: NativeError) =>
      e.code === 'ERR_UNKNOWN_VARIANT' && /'winograd'/.test(e.message) && /reference, direct, im2col-gemm/.test(e.message),
  );
  assert.throws(
    () => new native.ConvKernel(good, 'backward' as ConvPass, 'direct'),
    (e: NativeError) => e.code === 'ERR_INVALID_ARG' && /allowed fwd, bwd-data, bwd-filter/.test(e.message),
  );
});

test('buffers of the wrong size or kind are refused before any work is queued', () => {
  const stream = new native.Stream('s');
  const k = new native.ConvKernel(good, 'fwd', 'im2col-gemm');
  const d = k.describe();
  const x = new native.Buffer(d.xLength), w = new native.Buffer(d.wLength), y = new native.Buffer(d.yLength);
  assert.throws(
    () => k.enqueue(stream, x, w, new native.Buffer(d.yLength - 1)),
    (e: NativeError) => e.code === 'ERR_INVALID_ARG' && /buffer 'y' holds 255 values, the shape needs 256/.test(e.message),
  );
  assert.throws(() => k.enqueue(stream, x, w, {} as never), (e: NativeError) => /'y' must be a Buffer/.test(e.message));
  assert.throws(() => k.enqueue({} as never, x, w, y), (e: NativeError) => /'stream' must be a Stream/.test(e.message));
  assert.equal(stream.pending, 0);
});
