// Convolution helpers over the addon: tensors for a shape, which tensor a
// pass writes, running a kernel to completion, and checking a variant
// against the reference on fresh random data with a poisoned output.
import type { Buffer, ConvPass, ConvShape, Stream } from '../../binding';
import { addon } from '../native';

export const CONV_PASSES: readonly ConvPass[] = ['fwd', 'bwd-data', 'bwd-filter'];

export interface ConvTensors {
  x: Buffer;
  w: Buffer;
  y: Buffer;
}

export function outputSize(shape: ConvShape): { p: number; q: number } {
  return {
    p: Math.floor((shape.h + 2 * shape.pad - shape.r) / shape.stride) + 1,
    q: Math.floor((shape.w + 2 * shape.pad - shape.s) / shape.stride) + 1,
  };
}

/** Allocates x, w, y for a shape and fills all three with uniform [-1, 1) values. */
export function randomConvTensors(shape: ConvShape, seed: number): ConvTensors {
  const { Buffer } = addon();
  const { p, q } = outputSize(shape);
  const t = {
    x: new Buffer(shape.n * shape.c * shape.h * shape.w),
    w: new Buffer(shape.k * shape.c * shape.r * shape.s),
    y: new Buffer(shape.n * shape.k * p * q),
  };
  t.x.fillUniform(seed * 3 + 1, -1, 1);
  t.w.fillUniform(seed * 3 + 2, -1, 1);
  t.y.fillUniform(seed * 3 + 3, -1, 1);
  return t;
}

/** The tensor a pass writes: y for fwd, x (dx) for bwd-data, w (dw) for bwd-filter. */
export function convOutput(t: ConvTensors, pass: ConvPass): Buffer {
  return pass === 'fwd' ? t.y : pass === 'bwd-data' ? t.x : t.w;
}

/** Length of the sum behind each output element, which sets the fp32 error. */
export function reductionLength(shape: ConvShape, pass: ConvPass): number {
  const { p, q } = outputSize(shape);
  if (pass === 'fwd') return shape.c * shape.r * shape.s;
  if (pass === 'bwd-data') return shape.k * Math.ceil((shape.r * shape.s) / (shape.stride * shape.stride));
  return shape.n * p * q;
}

const FP32_EPSILON = 2 ** -23;

/**
 * Tolerance on the normwise relative error (max |out - ref| / max |ref|) of
 * an fp32 result: rounding errors of a sum of L terms grow like sqrt(L) eps
 * in practice; 8x that allows for blocked summation orders.
 */
export function convTolerance(shape: ConvShape, pass: ConvPass): number {
  return Math.max(1e-6, 8 * FP32_EPSILON * Math.sqrt(reductionLength(shape, pass)));
}

/** max |out - ref| / max |ref|; Infinity if out has a NaN or infinity (poison left over). */
export function relativeError(out: Float32Array, ref: Float32Array): number {
  if (out.length !== ref.length) throw new Error(`relativeError: lengths differ (${out.length} vs ${ref.length})`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < out.length; i++) {
    const o = out[i];
    if (!Number.isFinite(o)) return Infinity;
    const d = Math.abs(o - ref[i]);
    if (d > maxDiff) maxDiff = d;
    const a = Math.abs(ref[i]);
    if (a > maxRef) maxRef = a;
  }
  return maxRef === 0 ? (maxDiff === 0 ? 0 : Infinity) : maxDiff / maxRef;
}

export async function runConv(
  stream: Stream,
  shape: ConvShape,
  pass: ConvPass,
  variant: string,
  t: ConvTensors,
  layer = '',
): Promise<void> {
  const kernel = new (addon().ConvKernel)(shape, pass, variant, layer);
  kernel.enqueue(stream, t.x, t.w, t.y);
  await stream.synchronize();
}

export interface ConvCheck {
  variant: string;
  pass: ConvPass;
  maxRelErr: number;
  tolerance: number;
  ok: boolean;
}

/**
 * Checks variants of one pass against the reference: fresh random inputs,
 * the reference result computed once, each variant's output poisoned with
 * NaN before it runs.
 */
export async function checkConvVariants(
  stream: Stream,
  shape: ConvShape,
  pass: ConvPass,
  variants: readonly string[],
  seed: number,
): Promise<ConvCheck[]> {
  const t = randomConvTensors(shape, seed);
  const out = convOutput(t, pass);
  out.fill(Number.NaN);
  await runConv(stream, shape, pass, 'reference', t);
  const ref = out.read();
  const tolerance = convTolerance(shape, pass);
  const checks: ConvCheck[] = [];
  for (const variant of variants) {
    out.fill(Number.NaN);
    await runConv(stream, shape, pass, variant, t);
    const maxRelErr = relativeError(out.read(), ref);
    checks.push({ variant, pass, maxRelErr, tolerance, ok: maxRelErr <= tolerance });
  }
  return checks;
}
