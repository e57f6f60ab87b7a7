// The CUDA backend's non-convolution ops against the CPU backend's
// `reference` kernels: fresh random inputs (ranges that fit each buffer's
// role), outputs poisoned with NaN on the device, the same inputs through
// both, every output compared. Needs a device.
import type { Buffer as CpuBuffer, OpName } from '../../binding';
import type { Buffer as CudaBuffer, OpKernel as CudaOpKernel } from '../../binding-cuda';
import { addon } from '../native';
import { cudaAddon } from '../native-cuda';
import { relativeError } from './conv';
import { refusalOf } from './conv-cuda';
import { fromNhwc, toNhwc } from './layout';
import { roundBf16 } from './bf16';

export interface OpCase {
  op: OpName;
  /** The CUDA variant checked (default `cuda`, our kernels). */
  variant?: string;
  /** nhwc=1: these buffers are [n, c, s] activations held NHWC on the device (name -> s). */
  nhwc?: Record<string, number>;
  params: Record<string, number | boolean>;
  /** Buffers the op writes (the rest are inputs); `inout` ones start from the inputs' data. */
  outputs: string[];
  inout?: string[];
  tolerance: number;
}

const bn = { n: 2, c: 16, hw: 49 };
const pool = { n: 2, c: 3, h: 9, w: 9, k: 3, stride: 2, pad: 1 };
/** A small instance of every op the step uses, each mode (fused ReLU or not) once. */
export const CUDA_OP_CASES: OpCase[] = [
  ...[false, true].flatMap((relu): OpCase[] => [
    { op: 'batchnorm-fwd', params: { ...bn, relu }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-5 },
    { op: 'batchnorm-bwd', params: { ...bn, relu }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-4 },
    { op: 'add', params: { size: 1000, relu }, outputs: ['y'], tolerance: 1e-6 },
  ]),
  // cuDNN's batch norm (no fused ReLU): the same buffers against the same reference.
  { op: 'batchnorm-fwd', variant: 'cudnn', params: { ...bn, relu: false }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-5 },
  { op: 'batchnorm-bwd', variant: 'cudnn', params: { ...bn, relu: false }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-4 },
  // The NHWC layout (step --layout nhwc): the device buffers transposed, the reference NCHW.
  ...[false, true].flatMap((relu): OpCase[] => [
    { op: 'batchnorm-fwd', params: { ...bn, relu, nhwc: true }, nhwc: { x: bn.hw, y: bn.hw }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-5 },
    { op: 'batchnorm-bwd', params: { ...bn, relu, nhwc: true }, nhwc: { x: bn.hw, dy: bn.hw, dx: bn.hw, y: bn.hw }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-4 },
  ]),
  { op: 'batchnorm-fwd', variant: 'cudnn', params: { ...bn, relu: false, nhwc: true }, nhwc: { x: bn.hw, y: bn.hw }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-5 },
  { op: 'batchnorm-bwd', variant: 'cudnn', params: { ...bn, relu: false, nhwc: true }, nhwc: { x: bn.hw, dy: bn.hw, dx: bn.hw }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-4 },
  { op: 'maxpool-fwd', params: { ...pool, nhwc: true }, nhwc: { x: 81, y: 25, argmax: 25 }, outputs: ['y', 'argmax'], tolerance: 0 },
  { op: 'maxpool-bwd', params: { ...pool, nhwc: true }, nhwc: { dy: 25, argmax: 25, dx: 81 }, outputs: ['dx'], tolerance: 1e-6 },
  { op: 'avgpool-fwd', params: { n: 2, c: 8, hw: 49, nhwc: true }, nhwc: { x: 49 }, outputs: ['y'], tolerance: 1e-6 },
  { op: 'avgpool-bwd', params: { n: 2, c: 8, hw: 49, nhwc: true }, nhwc: { dx: 49 }, outputs: ['dx'], tolerance: 1e-6 },
  // bf16 activations (step --dtype bf16): the inputs rounded to bf16 for both sides, the outputs rounded once.
  ...[false, true].flatMap((relu): OpCase[] => [
    { op: 'batchnorm-fwd', params: { ...bn, relu, bf16: true }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-2 },
    { op: 'batchnorm-bwd', params: { ...bn, relu, bf16: true }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-2 },
    { op: 'add', params: { size: 1000, relu, bf16: true }, outputs: ['y'], tolerance: 1e-2 },
  ]),
  { op: 'batchnorm-fwd', params: { ...bn, relu: true, nhwc: true, bf16: true }, nhwc: { x: bn.hw, y: bn.hw }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-2 },
  { op: 'batchnorm-bwd', params: { ...bn, relu: true, nhwc: true, bf16: true }, nhwc: { x: bn.hw, dy: bn.hw, dx: bn.hw, y: bn.hw }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-2 },
  { op: 'batchnorm-fwd', variant: 'cudnn', params: { ...bn, relu: false, bf16: true }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-2 },
  { op: 'batchnorm-bwd', variant: 'cudnn', params: { ...bn, relu: false, bf16: true }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-2 },
  // Our batch norm's launches (bn_schedule.h) beyond one tile: NHWC several tiles and channel blocks (the second
  // partly filled) and the tile cap (m > 512 tiles x 128 rows); NCHW several tiles of 4096 values, read in vectors
  // (hw a multiple of 4) or one at a time (hw 3001), and bf16 vectors.
  ...[{ n: 4, c: 48, hw: 300 }, { n: 2, c: 40, hw: 40000 }].flatMap((big): OpCase[] => [
    { op: 'batchnorm-fwd', params: { ...big, relu: true, nhwc: true }, nhwc: { x: big.hw, y: big.hw }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-5 },
    { op: 'batchnorm-bwd', params: { ...big, relu: true, nhwc: true }, nhwc: { x: big.hw, dy: big.hw, dx: big.hw, y: big.hw }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: 1e-4 },
  ]),
  ...[{ n: 2, c: 6, hw: 40000 }, { n: 3, c: 5, hw: 3001 }, { n: 2, c: 4, hw: 6000, bf16: true }].flatMap(({ bf16, ...big }): OpCase[] => [
    { op: 'batchnorm-fwd', params: { ...big, relu: true, bf16: !!bf16 }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: bf16 ? 1e-2 : 1e-5 },
    { op: 'batchnorm-bwd', params: { ...big, relu: true, bf16: !!bf16 }, outputs: ['dx', 'dgamma', 'dbeta'], tolerance: bf16 ? 1e-2 : 1e-4 },
  ]),
  { op: 'batchnorm-fwd', variant: 'cudnn', params: { ...bn, relu: false, nhwc: true, bf16: true }, nhwc: { x: bn.hw, y: bn.hw }, outputs: ['y', 'save_mean', 'save_invstd', 'running_mean', 'running_var'], inout: ['running_mean', 'running_var'], tolerance: 1e-2 },
  { op: 'maxpool-fwd', params: { ...pool, nhwc: true, bf16: true }, nhwc: { x: 81, y: 25, argmax: 25 }, outputs: ['y', 'argmax'], tolerance: 0 },
  { op: 'avgpool-bwd', params: { n: 2, c: 8, hw: 49, nhwc: true, bf16: true }, nhwc: { dx: 49 }, outputs: ['dx'], tolerance: 1e-2 },
  { op: 'relu-fwd', params: { size: 1000, bf16: true }, outputs: ['y'], tolerance: 0 },
  { op: 'relu-bwd', params: { size: 1000, bf16: true }, outputs: ['dx'], tolerance: 0 },
  { op: 'maxpool-fwd', params: { ...pool, bf16: true }, outputs: ['y', 'argmax'], tolerance: 0 },
  { op: 'maxpool-bwd', params: { ...pool, bf16: true }, outputs: ['dx'], tolerance: 1e-2 },
  { op: 'avgpool-fwd', params: { n: 2, c: 8, hw: 49, bf16: true }, outputs: ['y'], tolerance: 1e-5 },
  { op: 'avgpool-bwd', params: { n: 2, c: 8, hw: 49, bf16: true }, outputs: ['dx'], tolerance: 1e-2 },
  { op: 'relu-fwd', params: { size: 1000 }, outputs: ['y'], tolerance: 0 },
  // The elementwise kernels' scalar path (a size that is not a multiple of their 4-element vectors).
  { op: 'add', params: { size: 1001, relu: true }, outputs: ['y'], tolerance: 1e-6 },
  { op: 'relu-bwd', params: { size: 999, bf16: true }, outputs: ['dx'], tolerance: 0 },
  { op: 'relu-bwd', params: { size: 1000 }, outputs: ['dx'], tolerance: 0 },
  { op: 'maxpool-fwd', params: pool, outputs: ['y', 'argmax'], tolerance: 0 },
  { op: 'maxpool-bwd', params: pool, outputs: ['dx'], tolerance: 1e-6 },
  { op: 'avgpool-fwd', params: { n: 2, c: 8, hw: 49 }, outputs: ['y'], tolerance: 1e-6 },
  { op: 'avgpool-bwd', params: { n: 2, c: 8, hw: 49 }, outputs: ['dx'], tolerance: 1e-6 },
  { op: 'fc-fwd', params: { n: 4, in: 64, out: 10 }, outputs: ['y'], tolerance: 1e-5 },
  { op: 'fc-bwd', params: { n: 4, in: 64, out: 10 }, outputs: ['dx', 'dw', 'db'], tolerance: 1e-5 },
  { op: 'softmax-xent', params: { n: 5, classes: 10 }, outputs: ['loss', 'dlogits'], tolerance: 1e-6 },
  { op: 'sgd', params: { size: 1000, lr: 0.1, momentum: 0.9, weightDecay: 1e-4 }, outputs: ['param', 'momentum_buffer'], inout: ['param', 'momentum_buffer'], tolerance: 1e-6 },
  // The step's one-launch optimizer (tensors=k): spans of 8192 values, a tensor of several and tensors of one value.
  {
    op: 'sgd', params: { tensors: 3, size0: 1, size1: 140000, size2: 7, lr: 0.1, momentum: 0.9, weightDecay: 1e-4 },
    outputs: [0, 1, 2].flatMap((t) => [`param.${t}`, `momentum_buffer.${t}`]), inout: [0, 1, 2].flatMap((t) => [`param.${t}`, `momentum_buffer.${t}`]), tolerance: 1e-6,
  },
  { op: 'allreduce-local', params: { size: 1000, workers: 3 }, outputs: ['grad', 'replicas'], inout: ['grad'], tolerance: 1e-6 },
];

function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Random data for a buffer by its role. */
function inputData(name: string, length: number, c: OpCase, rand: () => number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    if (name === 'labels') out[i] = Math.floor(rand() * Number(c.params.classes));
    else if (name === 'gamma') out[i] = 0.5 + rand();
    else if (name === 'running_var' || name === 'save_invstd') out[i] = 0.5 + 1.5 * rand();
    else out[i] = 4 * rand() - 2;
  }
  return out;
}

export interface OpCheckRow {
  op: string;
  variant: string;
  params: Record<string, number | boolean>;
  buffer: string;
  maxRelErr: number;
  tolerance: number;
  ok: boolean;
  /** The library refused or failed the case (cuDNN's status): every output of the case is a row with it. */
  error?: string;
}

export async function checkCudaOps(cases: OpCase[] = CUDA_OP_CASES, seed = 5): Promise<OpCheckRow[]> {
  const cpu = addon(), cuda = cudaAddon();
  const cpuStream = new cpu.Stream('op-check'), gpuStream = new cuda.Stream('op-check');
  const rows: OpCheckRow[] = [];
  for (const [index, c] of cases.entries()) {
    const rand = lcg(seed * 1000 + index);
    const { nhwc: _layout, bf16: _dtype, ...cpuParams } = c.params; // the reference computes NCHW, fp32
    const ref = new cpu.OpKernel(c.op, 'reference', cpuParams, 'check');
    const channels = Number(c.params.c);
    const toDevice = (name: string, v: Float32Array) => (c.nhwc?.[name] ? toNhwc(v, channels, c.nhwc[name]) : v);
    const fromDevice = (name: string, v: Float32Array) => (c.nhwc?.[name] ? fromNhwc(v, channels, c.nhwc[name]) : v);
    const spec = ref.describe().buffers;
    const data = new Map<string, Float32Array>();
    const row = { op: c.op, variant: c.variant ?? 'cuda', params: c.params, tolerance: c.tolerance };
    // cuDNN refusing a case (e.g. its legacy batch norm and bf16), when the kernel is made or launched, fails
    // that case's rows with the library's words; the other cases still run. Anything else stops the check.
    const refused = (err: unknown) => {
      if (!refusalOf(err)) throw err;
      for (const name of c.outputs) rows.push({ ...row, buffer: name, maxRelErr: Number.NaN, ok: false, error: (err as Error).message });
    };
    let kernel: CudaOpKernel;
    try {
      kernel = new cuda.OpKernel(c.op, row.variant, c.params, 'check');
    } catch (err) {
      refused(err);
      continue;
    }
    // The kernel's own buffer dtypes (bf16 activations): inputs rounded first, so both sides read the same values.
    const gpuSpec = kernel.describe().buffers;
    const isBf16 = (name: string) => gpuSpec.find((b) => b.name === name)?.dtype === 'bf16';
    for (const b of spec) {
      if (c.outputs.includes(b.name) && !c.inout?.includes(b.name)) continue;
      const d = inputData(b.name, b.length, c, rand);
      data.set(b.name, isBf16(b.name) ? roundBf16(d) : d);
    }
    if (c.op === 'maxpool-bwd') {
      // The argmax must come from a forward pass of the same shape.
      const fwd = new cpu.OpKernel('maxpool-fwd', 'reference', cpuParams, 'check');
      const [x, y, arg] = fwd.describe().buffers.map((b) => new cpu.Buffer(b.length));
      x.write(inputData('x', x.length, c, rand));
      fwd.enqueue(cpuStream, [x, y, arg]);
      await cpuStream.synchronize();
      data.set('argmax', arg.read());
    }
    const cpuBuffers: CpuBuffer[] = spec.map((b) => {
      const buf = new cpu.Buffer(b.length);
      const d = data.get(b.name);
      if (d) buf.write(d);
      else buf.fill(NaN);
      return buf;
    });
    ref.enqueue(cpuStream, cpuBuffers);
    await cpuStream.synchronize();
    const gpuBuffers: CudaBuffer[] = spec.map((b) => {
      const buf = new cuda.Buffer(b.length, isBf16(b.name) ? { dtype: 'bf16' } : undefined);
      const d = data.get(b.name);
      if (d) buf.write(toDevice(b.name, d));
      else buf.fill(NaN);
      return buf;
    });
    try {
      kernel.enqueue(gpuStream, gpuBuffers);
      await gpuStream.synchronize();
      spec.forEach((b, i) => {
        if (!c.outputs.includes(b.name)) return;
        const maxRelErr = relativeError(fromDevice(b.name, gpuBuffers[i].read()), cpuBuffers[i].read());
        rows.push({ ...row, buffer: b.name, maxRelErr, ok: maxRelErr <= c.tolerance });
      });
    } catch (err) {
      refused(err);
    } finally {
      for (const b of [...cpuBuffers, ...gpuBuffers]) b.release();
    }
  }
  return rows;
}
