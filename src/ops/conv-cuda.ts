// CUDA convolution helpers: device copies of CPU tensors, the tolerance of
// each precision, and the check of CUDA variants against the CPU reference
// (fresh random data, reference computed once per shape and pass by the CPU
// addon's `reference` variant, each variant's output poisoned with NaN).
import type { ConvPass, ConvShape } from '../../binding';
import type { Buffer as CudaBuffer, CudaConvDtype, CudaError, Stream as CudaStream } from '../../binding-cuda';
import { addon } from '../native';
import { cudaAddon } from '../native-cuda';
import { convOutput, convTolerance, randomConvTensors, relativeError, runConv, type ConvTensors } from './conv';
import { fromNhwc, toNhwc } from './layout';

export type Precision = 'fp32' | 'tf32' | 'bf16';

export interface CudaConvTensors {
  x: CudaBuffer;
  w: CudaBuffer;
  y: CudaBuffer;
}

/**
 * Device copies of x, w, y; with nhwc, x and y are transposed to NHWC (w stays
 * KCRS); with dtype bf16, x and y are bf16 buffers (w stays fp32).
 */
export function toDevice(t: ConvTensors, shape?: ConvShape, layout: 'nchw' | 'nhwc' = 'nchw', dtype: CudaConvDtype = 'fp32'): CudaConvTensors {
  const cuda = cudaAddon();
  const made = (length: number, activation: boolean) => new cuda.Buffer(length, activation && dtype === 'bf16' ? { dtype: 'bf16' } : undefined);
  const d = { x: made(t.x.length, true), w: made(t.w.length, false), y: made(t.y.length, true) };
  rewriteDevice(d, t, shape, layout);
  return d;
}

/** The host tensors written again into device ones made by toDevice (the same arrangement): a pass's inputs restored. */
export function rewriteDevice(d: CudaConvTensors, t: ConvTensors, shape?: ConvShape, layout: 'nchw' | 'nhwc' = 'nchw'): void {
  const nhwc = layout === 'nhwc' && shape;
  d.x.write(nhwc ? toNhwc(t.x.read(), shape.c, shape.h * shape.w) : t.x.read());
  d.w.write(t.w.read());
  d.y.write(nhwc ? toNhwc(t.y.read(), shape.k, outputPlane(shape)) : t.y.read());
}

function outputPlane(s: ConvShape): number {
  const p = Math.floor((s.h + 2 * s.pad - s.r) / s.stride) + 1, q = Math.floor((s.w + 2 * s.pad - s.s) / s.stride) + 1;
  return p * q;
}

export function releaseDevice(t: CudaConvTensors): void {
  t.x.release();
  t.w.release();
  t.y.release();
}

/**
 * Normwise tolerance (max |out - ref| / max |ref|, as on the CPU) by the
 * precision of the products. fp32: the CPU bound, but at least 1e-4, as FFT
 * and Winograd algorithms round differently from a direct sum. tf32 (10-bit
 * mantissa) and bf16 (7-bit): the inputs' rounding dominates, about the
 * format's epsilon times a small factor, independent of the sum's length.
 */
export function cudaConvTolerance(shape: ConvShape, pass: ConvPass, precision: Precision): number {
  if (precision === 'tf32') return 1e-2;
  if (precision === 'bf16') return 2e-2;
  return Math.max(1e-4, convTolerance(shape, pass));
}

/** Variants that a name or a layer does not support are reported, never replaced. */
export function isUnsupported(err: unknown): err is CudaError {
  return (err as CudaError)?.code === 'ERR_UNSUPPORTED';
}

/**
 * What a variant's row says of an error that leaves the others able to run: 'unsupported' (ERR_UNSUPPORTED),
 * or 'error' for a cuDNN call that returned another failure status (ERR_CUDNN: bad parameters, execution
 * failed; the device is still usable). Undefined: the run must stop. CUDA errors (a failed launch, an
 * illegal address), and cuDNN's statuses that wrap one (*_CUDART, *_CUDA_DRIVER), can leave the context
 * unusable; those that say cuDNN cannot run here at all (an incompatible driver or runtime, another
 * architecture, a missing prerequisite or sub-library) fail every row alike.
 */
export function refusalOf(err: unknown): 'unsupported' | 'error' | undefined {
  if (isUnsupported(err)) return 'unsupported';
  const e = err as CudaError | undefined;
  return e?.code === 'ERR_CUDNN' && !CUDNN_FATAL.test(e.status ?? '') ? 'error' : undefined;
}
const CUDNN_FATAL = /CUDART|CUDA_DRIVER|INCOMPATIBLE|ARCH_MISMATCH|PREREQUISITE|SUBLIBRARY/;

export type CudaCheck =
  | { variant: string; pass: ConvPass; status: 'ok' | 'failed-check'; maxRelErr: number; tolerance: number; precision: Precision; implementation: string }
  | { variant: string; pass: ConvPass; status: 'unsupported'; reason: string }
  | { variant: string; pass: ConvPass; status: 'error'; reason: string };

export async function checkCudaConvVariants(
  cudaStream: CudaStream,
  shape: ConvShape,
  pass: ConvPass,
  variants: readonly string[],
  dtype: CudaConvDtype,
  seed: number,
  /** Named in errors (a check's shape is the layer's at a smaller batch). */
  layer = '',
  /** nhwc: x and y on the device are NHWC (transposed here, the reference stays NCHW). */
  layout: 'nchw' | 'nhwc' = 'nchw',
): Promise<CudaCheck[]> {
  const cpu = addon();
  const cuda = cudaAddon();
  const host = randomConvTensors(shape, seed);
  const cpuStream = new cpu.Stream('reference');
  convOutput(host, pass).fill(Number.NaN);
  await runConv(cpuStream, shape, pass, 'reference', host);
  const ref = convOutput(host, pass).read();
  const checks: CudaCheck[] = [];
  const device = toDevice(host, shape, layout, dtype);
  // The output as NCHW: x and y come back from NHWC in that layout.
  const readOut = (out: CudaBuffer): Float32Array => {
    const v = out.read();
    if (layout !== 'nhwc' || pass === 'bwd-filter') return v;
    return pass === 'fwd' ? fromNhwc(v, shape.k, outputPlane(shape)) : fromNhwc(v, shape.c, shape.h * shape.w);
  };
  try {
    for (const variant of variants) {
      const out = pass === 'fwd' ? device.y : pass === 'bwd-data' ? device.x : device.w;
      out.fill(Number.NaN);
      try {
        const kernel = new cuda.ConvKernel(shape, pass, variant, layer, { dtype, layout });
        kernel.enqueue(cudaStream, device.x, device.w, device.y);
        await cudaStream.synchronize();
        cuda.timelineClear();
        const d = kernel.describe();
        const maxRelErr = relativeError(readOut(out), ref);
        const tolerance = cudaConvTolerance(shape, pass, d.precision);
        checks.push({ variant, pass, status: maxRelErr <= tolerance ? 'ok' : 'failed-check', maxRelErr, tolerance, precision: d.precision, implementation: d.implementation });
      } catch (err) {
        const status = refusalOf(err);
        if (!status) throw err;
        checks.push({ variant, pass, status, reason: (err as Error).message });
      }
    }
  } finally {
    releaseDevice(device);
  }
  return checks;
}
