// The native core: buffers, asynchronous streams, events and the timeline.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConvShape, NativeError } from '../binding';
import { addon } from '../src/native';
import { randomConvTensors } from '../src/ops/conv';

const native = addon();
const big: ConvShape = { n: 2, c: 64, h: 56, w: 56, k: 64, r: 3, s: 3, stride: 1, pad: 1 };

test('buffers copy in and out, fill, and generate reproducible random data', () => {
  const b = new native.Buffer(10);
  assert.equal(b.length, 10);
  b.write(new Float32Array([1, 2, 3]), 7);
  assert.deepEqual([...b.read(7)], [1, 2, 3]);
  b.fill(Number.NaN);
  assert.ok(b.read().every(Number.isNaN));
  const c = new native.Buffer(1000);
  b.fillUniform(42, -1, 1);
  c.fillUniform(42, -1, 1);
  assert.deepEqual(b.read(), c.read(0, 10));
  assert.ok(c.read().every((v) => v >= -1 && v < 1));
  assert.ok(new Set(c.read()).size > 990);
  // view(): the buffer's own memory, no copy: each side sees the other's writes; it outlives release().
  const v = c.view();
  assert.equal(v.length, 1000);
  assert.deepEqual(v.slice(0, 10), c.read(0, 10));
  c.write(new Float32Array([7]), 3);
  assert.equal(v[3], 7);
  v[4] = 9;
  assert.equal(c.read(4, 1)[0], 9);
  c.release();
  assert.equal(v[3], 7);
  assert.throws(() => c.view(), /released/);
  // Released in stream order while viewed: the block is not handed back for the stream's next buffer.
  const s = new native.Stream('view');
  const a = new native.Buffer(4096);
  a.fill(1);
  const va = a.view();
  a.release(s);
  const next = new native.Buffer(4096, s);
  next.fill(7);
  assert.equal(va[0], 1);
});

/** Buffer.fillUniform's element i, computed here independently (BigInt splitmix64; the sum in double, rounded once to float). */
function uniformReference(seed: number, i: number, lo: number, hi: number): number {
  const M = (1n << 64n) - 1n;
  const splitmix = (v: bigint) => {
    let x = (v + 0x9e3779b97f4a7c15n) & M;
    x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
    x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & M;
    return x ^ (x >> 31n);
  };
  const bits = splitmix(splitmix(BigInt(seed)) ^ BigInt(i));
  const scale = Math.fround(Math.fround(Math.fround(hi) - Math.fround(lo)) / 16777216);
  return Math.fround(Math.fround(lo) + Number(bits >> 40n) * scale);
}

test('fillUniform is the documented formula to the last bit (what the CUDA fill must match: no fused multiply-add can change it)', () => {
  const b = new native.Buffer(4099);
  b.fill(Number.NaN);
  b.fillUniform(12345, -0.5, 2);
  const got = b.read();
  const bad = [...got.keys()].filter((i) => got[i] !== uniformReference(12345, i, -0.5, 2));
  assert.deepEqual(bad.slice(0, 5), [], `${bad.length} of ${got.length} elements differ from the reference`);
  // The reference itself tells seeds and ranges apart.
  assert.notEqual(uniformReference(12345, 7, -0.5, 2), uniformReference(12346, 7, -0.5, 2));
});

test('bad buffer arguments throw typed errors naming the value', () => {
  assert.throws(() => new native.Buffer(0), (e: NativeError) => e.code === 'ERR_INVALID_ARG' && /length 0/.test(e.message));
  assert.throws(() => new native.Buffer(-3), (e: NativeError) => e.code === 'ERR_INVALID_ARG');
  const b = new native.Buffer(4);
  assert.throws(() => b.write(new Float32Array(3), 2), (e: NativeError) => /overrun/.test(e.message));
  assert.throws(() => b.write([1, 2] as unknown as Float32Array), (e: NativeError) => /Float32Array/.test(e.message));
  assert.throws(() => b.read(5), (e: NativeError) => e.code === 'ERR_INVALID_ARG');
  assert.throws(() => b.fillUniform(1, 1, 0), (e: NativeError) => /hi must be greater/.test(e.message));
});

test('enqueue returns before the work is done: streams are asynchronous', async () => {
  const stream = new native.Stream('async');
  const t = randomConvTensors(big, 1);
  const kernel = new native.ConvKernel(big, 'fwd', 'direct', 'res2a_branch2b');
  native.timelineDrain();
  const before = native.nowNs();
  kernel.enqueue(stream, t.x, t.w, t.y);
  kernel.enqueue(stream, t.x, t.w, t.y);
  const returned = native.nowNs();
  assert.ok(stream.pending >= 1, 'work should still be queued or running');
  await stream.synchronize();
  assert.equal(stream.pending, 0);
  const records = native.timelineDrain();
  assert.equal(records.length, 2);
  assert.ok(records[1].endNs > returned, 'the kernels finished after enqueue returned');
  assert.ok(records[0].startNs >= before && records[1].startNs >= records[0].endNs, 'one stream runs in order');
});

test('timeline records carry op, variant, layer, pass, stream, times, flops and bytes', async () => {
  const stream = new native.Stream('compute');
  const shape: ConvShape = { n: 1, c: 8, h: 8, w: 8, k: 8, r: 3, s: 3, stride: 1, pad: 1 };
  const t = randomConvTensors(shape, 2);
  native.timelineDrain();
  new native.ConvKernel(shape, 'bwd-filter', 'im2col-gemm', 'res2a_branch2b').enqueue(stream, t.x, t.w, t.y);
  await stream.synchronize();
  const [r] = native.timelineDrain();
  assert.equal(r.op, 'conv');
  assert.equal(r.variant, 'im2col-gemm');
  assert.equal(r.layer, 'res2a_branch2b');
  assert.equal(r.pass, 'bwd-filter');
  assert.equal(r.stream, stream.id);
  assert.equal(r.streamName, 'compute');
  assert.ok(r.endNs >= r.startNs);
  assert.equal(r.flops, 2 * 8 * 8 * 8 * 8 * 9);
  assert.equal(r.bytes, 4 * (8 * 64 + 8 * 8 * 9 + 8 * 64));
});

test('events fire with timestamps; a stream waiting on an event runs after it', async () => {
  const a = new native.Stream('a');
  const b = new native.Stream('b');
  const done = new native.Event();
  assert.equal(done.timestampNs, null);
  assert.equal(done.complete, true, 'an event never recorded counts as complete');
  const t = randomConvTensors(big, 3);
  const small: ConvShape = { n: 1, c: 4, h: 4, w: 4, k: 4, r: 1, s: 1, stride: 1, pad: 0 };
  const u = randomConvTensors(small, 4);
  native.timelineDrain();
  native.waitsDrain();
  new native.ConvKernel(big, 'fwd', 'direct', 'long').enqueue(a, t.x, t.w, t.y);
  a.record(done);
  b.wait(done);
  new native.ConvKernel(small, 'fwd', 'direct', 'after').enqueue(b, u.x, u.w, u.y);
  await Promise.all([a.synchronize(), b.synchronize(), done.synchronize()]);
  const records = native.timelineDrain();
  const long = records.find((r) => r.layer === 'long')!;
  const after = records.find((r) => r.layer === 'after')!;
  assert.ok(done.timestampNs !== null && done.timestampNs >= long.endNs);
  assert.ok(after.startNs >= long.endNs, 'b waited for the event recorded after a long kernel on a');
  assert.equal(after.stream, b.id);
  // The wait is recorded as an edge: b waited for a, from before the long kernel ended until the event fired.
  const waits = native.waitsDrain();
  assert.equal(waits.length, 1);
  const [w] = waits;
  assert.deepEqual([w.streamName, w.sourceStream, w.stream], ['b', 'a', b.id]);
  assert.equal(w.firedNs, done.timestampNs);
  assert.ok(w.startNs < long.endNs && w.endNs >= w.firedNs && w.endNs <= after.startNs, JSON.stringify({ w, long, after }));
  // Waiting on an event that was never recorded is no edge at all.
  b.wait(new native.Event());
  await b.synchronize();
  assert.equal(native.waitsDrain().length, 0);
});

test('long work does not block the event loop', async () => {
  const stream = new native.Stream('busy');
  const t = randomConvTensors(big, 5);
  const kernel = new native.ConvKernel(big, 'bwd-data', 'direct');
  kernel.enqueue(stream, t.x, t.w, t.y);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  await stream.synchronize();
  clearInterval(timer);
  assert.ok(ticks > 0, 'timers ran while the stream worked');
});

test('measurePeak reports positive FMA and bandwidth figures', async () => {
  const peak = await native.measurePeak(1);
  assert.ok(peak.fmaGflops > 1 && peak.bandwidthGBs > 0.5 && peak.threads >= 1);
  await assert.rejects(native.measurePeak(0), (e: NativeError) => e.code === 'ERR_INVALID_ARG');
});
