// The convolution microbenchmark on the CUDA backend: the same rows as
// bench/conv-bench.ts. Each (unique shape, pass, variant) is checked against
// the CPU reference first (at --check-batch), then timed at the requested
// batch with CUDA events around the kernel (the CUDA timeline), and its timed
// output checked again against an fp32 cuDNN kernel's on the same inputs
// (at the timed batch a variant may run another algorithm or split K). A variant
// that has no such pass, or that cuDNN cannot run for the layer, is a row
// with status 'unsupported' and the library's reason: nothing is replaced.
// The timed calls are queued behind a short hold of the stream, so each
// record brackets GPU time only (see QUEUE_HOLD_US).
import type { ConvPass } from '../../binding';
import type { CudaConvDtype, CudaPeak } from '../../binding-cuda';
import { describeShape } from '../model/resnet50';
import { cudaAddon, cudaTimelineDrain } from '../native-cuda';
import { randomConvTensors, relativeError } from '../ops/conv';
import { checkCudaConvVariants, cudaConvTolerance, refusalOf, releaseDevice, rewriteDevice, toDevice, type CudaConvTensors } from '../ops/conv-cuda';
import { sortBenchRows, uniqueShapes, type ConvBenchOptions, type ConvBenchRow } from './conv-bench';
import { summarize } from './stats';

export interface CudaConvBenchOptions extends Omit<ConvBenchOptions, 'peakGflops' | 'cold'> {
  dtype: CudaConvDtype;
  /** nhwc: x and y channels-last (cudnn:* only), as step --layout nhwc runs them. */
  layout?: 'nchw' | 'nhwc';
  /** The GPU's measured peaks: each row's % of peak is against the peak of its precision. */
  peak?: CudaPeak;
  /** `--variant all`: per pass, only the variants that have the pass (a named one without it is an unsupported row). */
  onlyWithPass?: boolean;
  /** Each row as it is made (a run stopped early can still write what it measured). */
  onRow?: (row: ConvBenchRow) => void;
}

/**
 * The timed calls of a row are enqueued back to back behind a hold of the stream (a host function that
 * sleeps this long: the modeled link's op with no bytes), so the host has queued them all before the GPU
 * reaches the first. A call made while the GPU idles would put the host's latency (the launch, cuDNN's
 * host work: several us) between its start event and its kernel, a large share of a small layer's time,
 * and PyTorch's peer times queued calls (bench/pytorch_gpu.py).
 */
const QUEUE_HOLD_US = 5000;
/** The hold of a row's second try, when the GPU reached the calls before the host had queued them all. */
const LONG_QUEUE_HOLD_US = 100_000;

/**
 * The reference of the check at the timed batch: cuDNN's plainest algorithm per pass in fp32 (FMA) math, itself
 * checked against the CPU at --check-batch when it is among the variants. bf16 rows (bf16 buffers) are not
 * checked again: their check-batch check stands.
 */
const TIMED_REFERENCE: Record<ConvPass, string> = { fwd: 'cudnn:implicit-gemm', 'bwd-data': 'cudnn:algo-0', 'bwd-filter': 'cudnn:algo-0' };
const outputOf = (device: CudaConvTensors, pass: ConvPass) => (pass === 'fwd' ? device.y : pass === 'bwd-data' ? device.x : device.w);

export async function benchConvCuda(options: CudaConvBenchOptions): Promise<ConvBenchRow[]> {
  const cuda = cudaAddon();
  const stream = new cuda.Stream('bench');
  const holdFor = (us: number) => new cuda.OpKernel('link-hold', 'cuda', { bytes: 0, workers: 2, gbps: 1, latencyUs: us / 2 }, 'queue-hold');
  const holds = [holdFor(QUEUE_HOLD_US), holdFor(LONG_QUEUE_HOLD_US)];
  const groups = uniqueShapes(options.layers);
  const rows: ConvBenchRow[] = [];
  const table = new Map(cuda.convVariants().map((v) => [v.name, v.passes]));
  const variantsOf = (pass: ConvPass) => options.variants.filter((v) => !options.onlyWithPass || table.get(v)?.includes(pass));
  const total = groups.length * options.passes.reduce((n, p) => n + variantsOf(p).length, 0);
  let done = 0;
  const seed = options.seed ?? 1;

  for (const group of groups) {
    const shape = group.first.shape;
    const checkShape = { ...shape, n: Math.min(shape.n, options.checkBatch) };
    const host = randomConvTensors(shape, seed);
    const layout = options.layout ?? 'nchw';
    const device = toDevice(host, shape, layout, options.dtype);
    try {
      for (const pass of options.passes) {
        const checks = await checkCudaConvVariants(stream, checkShape, pass, variantsOf(pass), options.dtype, seed + 7, group.first.name, layout);
        // This pass's inputs as drawn (the previous pass wrote one of them: its last variant's output, maybe wrong),
        // and the reference output at the timed batch on them, the output poisoned first.
        if (options.dtype !== 'bf16') rewriteDevice(device, host, shape, layout);
        let timedReference: Float32Array | undefined;
        let noTimedReference: string | undefined = options.dtype === 'bf16' ? 'bf16 buffers' : undefined;
        if (!noTimedReference) {
          let ref;
          try {
            ref = new cuda.ConvKernel(shape, pass, TIMED_REFERENCE[pass], group.first.name, { dtype: 'fp32', layout });
            outputOf(device, pass).fill(Number.NaN);
            ref.enqueue(stream, device.x, device.w, device.y);
            await stream.synchronize();
            timedReference = outputOf(device, pass).read();
            cudaTimelineDrain();
          } catch (err) {
            if (!refusalOf(err)) throw err;
            noTimedReference = `${TIMED_REFERENCE[pass]}: ${(err as Error).message}`;
          } finally {
            ref?.release();
          }
        }
        for (const check of checks) {
          const variant = check.variant;
          options.onProgress?.(done++, total, `${group.first.name} ${pass} ${variant}`);
          const base = { shape, shapeText: describeShape(shape), pass, variant, reorderMs: 0, gflops: null, pctPeak: null };
          const push = (row: Omit<ConvBenchRow, 'layer'>) => {
            for (const layer of group.all) {
              const made = { ...row, layer: layer.name, ...(layer.name === group.first.name ? {} : { sameShapeAs: group.first.name }) };
              rows.push(made);
              options.onRow?.(made);
            }
          };
          const notTimed = { medianMs: null, minMs: null, maxMs: null };
          if (check.status === 'unsupported' || check.status === 'error') {
            push({ ...base, ...notTimed, status: check.status, reason: check.reason, implementation: variant, maxRelErr: Number.NaN, tolerance: Number.NaN });
            continue;
          }
          const checked = { maxRelErr: check.maxRelErr, tolerance: check.tolerance, precision: check.precision };
          if (check.status !== 'ok') {
            push({ ...base, ...notTimed, ...checked, status: 'failed-check', implementation: check.implementation });
            continue;
          }
          let kernel;
          const times: number[] = [];
          try {
            kernel = new cuda.ConvKernel(shape, pass, variant, group.first.name, { dtype: options.dtype, layout });
            // Poisoned first, so an output this variant does not write fails the check at the timed batch below.
            if (timedReference) outputOf(device, pass).fill(Number.NaN);
            // At least one call alone first, whatever --warmup says: a first call sets up the library's plans and
            // loads modules (which may synchronize), host work the queued calls must not include.
            for (let i = 0; i < Math.max(1, options.warmup); i++) {
              kernel.enqueue(stream, device.x, device.w, device.y);
              await stream.synchronize();
            }
            for (const hold of holds) {
              cuda.timelineClear();
              hold.enqueue(stream, []);
              for (let i = 0; i < options.repeat; i++) kernel.enqueue(stream, device.x, device.w, device.y);
              const queuedNs = cuda.nowNs();
              await stream.synchronize();
              const drained = cudaTimelineDrain();
              const records = drained.filter((r) => r.op === 'conv');
              if (records.length !== options.repeat) throw new Error(`bench conv: ${records.length} conv records for ${options.repeat} calls of ${variant}`);
              times.length = 0;
              for (const r of records) times.push((r.endNs - r.startNs) / 1e6);
              // The hold must outlast the queueing; if the GPU got there first, the longer hold once more.
              const held = drained.find((r) => r.op === 'link');
              if (!held || held.endNs >= queuedNs) break;
            }
          } catch (err) {
            // Supported at the check's batch, not at this one (e.g. FFT size limits), or cuDNN failed it here:
            // that row says so, the others still run.
            kernel?.release();
            const status = refusalOf(err);
            if (!status) throw err;
            push({ ...base, ...notTimed, ...checked, status, reason: (err as Error).message, implementation: variant });
            continue;
          }
          const d = kernel.describe();
          kernel.release();
          // What the timed calls computed, against the reference at this batch (before the next variant overwrites it).
          let timedMaxRelErr: number | null = null;
          if (timedReference) {
            const err = relativeError(outputOf(device, pass).read(), timedReference);
            const tolerance = cudaConvTolerance(shape, pass, d.precision);
            if (!(err <= tolerance)) {
              const finite = Number.isFinite(err);
              push({ ...base, ...notTimed, ...checked, status: 'failed-check', implementation: d.implementation, timedMaxRelErr: finite ? err : null, timedTolerance: tolerance,
                reason: `at the timed batch ${shape.n} its output ${finite ? `differs from ${TIMED_REFERENCE[pass]}'s (fp32) by ${err.toPrecision(3)} > ${tolerance}` : `is not finite where ${TIMED_REFERENCE[pass]}'s (fp32) is (an element unwritten or NaN)`} (the check at batch ${checkShape.n} passed)` });
              continue;
            }
            timedMaxRelErr = err;
          }
          const time = summarize(times);
          push({
            ...base,
            ...checked,
            status: 'ok',
            implementation: d.implementation,
            timedMaxRelErr,
            ...(noTimedReference ? { timedCheck: `not checked at the timed batch: ${noTimedReference}` } : {}),
            medianMs: time.median,
            minMs: time.min,
            maxMs: time.max,
            gflops: d.flops / (time.median * 1e6),
            pctPeak: options.peak ? (100 * d.flops) / (time.median * 1e6) / peakOf(options.peak, d.precision) : null,
          });
        }
      }
    } finally {
      releaseDevice(device);
    }
  }
  return sortBenchRows(rows, options);
}

/** The peak a row's precision is measured against (fp32 without tensor cores; tf32, bf16 with). */
export function peakOf(peak: CudaPeak, precision: 'fp32' | 'tf32' | 'bf16'): number {
  return precision === 'bf16' ? peak.bf16Gflops : precision === 'tf32' ? peak.tf32Gflops : peak.fp32Gflops;
}
