// The typed surface of the CUDA addon (build/stepscope_cuda.node), loaded
// lazily by src/native-cuda.ts. Hand-written like binding.d.ts. Errors carry
// `code` (ERR_NO_DEVICE, ERR_OUT_OF_MEMORY, ERR_UNSUPPORTED, ERR_CUDA,
// ERR_CUDNN, ERR_CUBLAS, ERR_UNKNOWN_VARIANT, ERR_INVALID_ARG, ERR_BAD_SHAPE)
// and, for library failures, `status` (e.g. CUDNN_STATUS_NOT_SUPPORTED) and `layer`.
import type { ConvPass, ConvShape, KernelRecord, MemoryStats, NativeError, OpKernelDescription, OpName, OpVariantInfo, WaitRecord } from './binding';

export interface CudaError extends NativeError {
  status?: string;
  layer?: string;
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  computeCapability: string;
  memoryBytes: number;
  multiprocessors: number;
}

export interface CudaInfo {
  available: boolean;
  /** Why there is no usable device, in CUDA's words. */
  reason?: string;
  deviceCount: number;
  /** The selected GPU (setDevice; 0 unless changed). */
  device?: CudaDeviceInfo;
  /** Every visible GPU. */
  devices?: CudaDeviceInfo[];
  /** null without a driver. */
  driverVersion: string | null;
  runtimeVersion: string;
  /** cuDNN's version and the CUDA runtime it was built for, or why it cannot be used (no cuDNN call is made then). */
  cudnn: { found: boolean; version?: string; cudart?: string; reason?: string };
  cublas: string;
  nccl: { found: boolean; version?: string; reason?: string };
  compiler: string;
  /** CMake's CUDA architectures, e.g. "80-real,90". */
  architectures: string;
}

/**
 * Device memory of fp32 or bf16 elements. Copies are synchronous: synchronize
 * streams first. A bf16 buffer is read and written as floats (rounded to
 * nearest even on the way in).
 *
 * Several GPUs in one process: a Buffer, Stream, ConvKernel or communicator
 * lives on the GPU of its `device` option (default: the process's GPU,
 * setDevice), an OpKernel on the GPU of its first enqueue, an Event on that
 * of the stream it was last recorded on. A kernel enqueued on a stream of
 * another GPU than its own or its buffers' is ERR_INVALID_ARG.
 */
export declare class Buffer {
  /** A CUDA Stream as the second argument puts the buffer on the stream's GPU; anything else without {dtype, device} (the CPU addon's stream, in shared code) is ignored. */
  constructor(length: number, options?: { dtype?: 'fp32' | 'bf16'; device?: number } | Stream | unknown);
  readonly length: number;
  readonly dtype: 'fp32' | 'bf16';
  readonly released: boolean;
  write(data: Float32Array, offset?: number): void;
  read(offset?: number, count?: number): Float32Array;
  /** NaN poisons (all-ones bytes). */
  fill(value: number): void;
  /** The CPU addon's generator on the device: the same seed gives the same values on both backends. */
  fillUniform(seed: number, lo: number, hi: number): void;
  /** Unusable from JS at once; the memory is freed now, or with the last graph that captured a kernel using it. */
  release(): void;
}

/** A cudaEvent_t: a point on a stream, as the CPU addon's Event. */
export declare class Event {
  constructor();
  /** True when the latest record has fired (or the event was never recorded). */
  readonly complete: boolean;
  /** Nanoseconds on this addon's nowNs() clock when the latest record fired, or null. */
  readonly timestampNs: number | null;
  /** Resolves when the latest record has fired; rejects as Stream.synchronize does (a failed device check of this GPU too). */
  synchronize(): Promise<void>;
}

/** A cudaStream_t. Kernels enqueued on it are timed with CUDA events. */
export declare class Stream {
  constructor(name?: string, options?: { device?: number });
  readonly id: number;
  readonly name: string;
  /** The GPU it runs on. */
  readonly device: number;
  record(event: Event): this;
  /** Later work on this stream waits for the event's latest record (timed: waitsDrain()). */
  wait(event: Event): this;
  /**
   * Resolves when the stream is idle; rejects with the first asynchronous CUDA error, or with a check a
   * kernel of this GPU made on the device and failed (ERR_INVALID_ARG: softmax-xent's bad label, with the
   * CPU backend's message), reported once, whichever stream or event of the GPU waits next.
   */
  synchronize(): Promise<void>;
  /**
   * Opens a CUDA graph capture: this stream's later work, and that of every
   * stream that waits on one of its captured events, is recorded, not run.
   * One capture at a time (ERR_INVALID_STATE).
   */
  beginCapture(): void;
  /** Closes the capture: the instantiated graph. ERR_CUDA when a joined stream did not rejoin, or a call that cannot be captured was made. */
  endCapture(): Graph;
  /**
   * Ends the capture this stream opened, if any, and discards what it captured without instantiating a graph (an
   * iteration that failed halfway). Events last recorded into it refuse waits (ERR_INVALID_STATE) until recorded again.
   */
  abortCapture(): void;
}

/**
 * Host memory page-locked (cudaHostRegister) while the pin lives, so a Buffer.write from it is a DMA at the
 * link's speed instead of a copy through pageable staging. The pin holds the array; release() unregisters.
 * A refused registration (no device, the system's limits) is no error: `pinned` is false, `reason` says why,
 * and copies from the array still work.
 */
export declare class HostPin {
  constructor(array: Float32Array);
  readonly pinned: boolean;
  readonly reason: string | undefined;
  release(): void;
}

/** A captured iteration (a CUDA graph). Its kernels keep their timeline records, timed by external event nodes. */
export declare class Graph {
  /**
   * One launch of the whole graph on the stream; its kernels' records go on the timeline (drain before the next launch).
   * ERR_COMM (nothing launched) when a communicator whose all-reduce it captured was aborted by its watchdog.
   */
  launch(stream: Stream): void;
  /** Destroys the graph now, not at garbage collection (a communicator whose all-reduce it captured can then be destroyed); later calls throw ERR_INVALID_STATE. */
  release(): void;
  readonly nodes: number;
  /** Timed kernels captured (timeline records per launch). */
  readonly kernels: number;
}

/** bf16: x and y (dx, dy) are bf16 buffers, the weights fp32 (cudnn:* only). */
export type CudaConvDtype = 'fp32' | 'tf32' | 'bf16';

export interface CudaConvKernelDescription {
  variant: string;
  pass: ConvPass;
  layer: string;
  /** What really runs, e.g. "cudnn:autotune -> cudnn:fft-tiling (...)". */
  implementation: string;
  /** Precision of the products: sets the tolerance of the reference check. */
  precision: 'fp32' | 'tf32' | 'bf16';
  /** The layout of x and y. */
  layout: 'nchw' | 'nhwc';
  /** The GPU it was prepared on (enqueued on its streams only). */
  device: number;
  flops: number;
  bytes: number;
  workspaceBytes: number;
  xLength: number;
  wLength: number;
  yLength: number;
}

/**
 * One prepared CUDA convolution variant for one pass and shape; roles of x,
 * w, y per pass as in binding.d.ts. The name and pass are checked before the
 * device: ERR_UNKNOWN_VARIANT lists the valid names, ERR_UNSUPPORTED says
 * the variant has no such pass (or cuDNN cannot run the layer with it).
 */
export declare class ConvKernel {
  /** layout nhwc: x and y NHWC, w still KCRS (cudnn:* only; our own kernels: ERR_UNSUPPORTED). */
  constructor(shape: ConvShape, pass: ConvPass, variant: string, layer?: string, options?: { dtype?: CudaConvDtype; layout?: 'nchw' | 'nhwc'; device?: number });
  enqueue(stream: Stream, x: Buffer, w: Buffer, y: Buffer): void;
  describe(): CudaConvKernelDescription;
  /** Frees its workspace and weight copy now (or with the last graph that captured it); enqueue and describe then throw ERR_INVALID_STATE. */
  release(): void;
  /**
   * This bwd-data kernel reads the weight copy that `forward` (the same layer's fwd kernel) makes for cuDNN with NHWC
   * or bf16 buffers, instead of converting the weights again: valid while each of its launches follows one of
   * `forward` with the same weights (a training step). ERR_UNSUPPORTED where there is no copy to share.
   */
  useWeightCopyOf(forward: ConvKernel): void;
}

export interface CudaConvVariantInfo {
  name: string;
  description: string;
  passes: ConvPass[];
}

/** The step's other ops (batch norm, ReLU, add, pooling, FC, loss, SGD): the CPU addon's op names, parameters and buffers; variant `cuda`. */
export declare class OpKernel {
  /** Needs no device (describe() works anywhere); enqueue does, and binds it to the stream's GPU. */
  constructor(op: OpName, variant: string, params: Record<string, number | boolean>, layer?: string);
  enqueue(stream: Stream, buffers: Buffer[]): void;
  describe(): OpKernelDescription;
  /** Frees its scratch now (or with the last graph that captured it); enqueue and describe then throw ERR_INVALID_STATE. */
  release(): void;
}

/**
 * Gradient all-reduce across GPUs with NCCL, one rank per process. Rank 0
 * makes the id (uniqueId()), every rank constructs with it and awaits
 * connect(), which rejects (ERR_COMM) after timeoutMs. A peer
 * that dies later aborts the communicator (a watchdog), so no stream waits
 * forever; the next call throws ERR_COMM with the reason. ERR_UNAVAILABLE
 * when the addon was built without NCCL.
 *
 * All local GPUs in one process: local(devices) makes one communicator per
 * GPU (ranks in that order; connect() each), and allreduceGroup() reduces a
 * bucket on all of them in one NCCL group (one thread must issue every
 * local rank's call together); destroyGroup() releases them together, and a
 * failure of one aborts them all.
 */
export declare class NcclCommunicator {
  static uniqueId(): Uint8Array;
  static local(devices: number[], options?: { timeoutMs?: number }): NcclCommunicator[];
  /** Each call: one local rank's buffers on its stream (same sizes on every rank); one record per stream. Not in a graph capture (ERR_UNSUPPORTED). */
  static allreduceGroup(calls: { comm: NcclCommunicator; stream: Stream; buffers: Buffer | Buffer[] }[], scale: number, layer?: string): void;
  /**
   * Releases every communicator of one local() clique together (one grouped finalize; an abort of all on failure). A member's own destroy() is ERR_INVALID_STATE.
   * ERR_COMM after releasing them when the clique was aborted during the run (its watchdog: the all-reduces since returned without reducing) or the finalize failed.
   */
  static destroyGroup(comms: NcclCommunicator[]): void;
  constructor(options: { id: Uint8Array; rank: number; size: number; timeoutMs?: number; device?: number });
  readonly rank: number;
  readonly size: number;
  /** The GPU of this rank. */
  readonly device: number;
  /** Resolves when every rank has joined (the event loop stays free meanwhile). */
  connect(): Promise<void>;
  /** Enqueues on the stream, in place, one grouped launch (one kernel record, variant 'nccl'): each buffer = scale * sum over ranks. */
  allreduce(stream: Stream, buffers: Buffer | Buffer[], scale: number, layer?: string): void;
  /**
   * Waits for the issued collectives and releases the communicator (every rank calls it); ERR_INVALID_STATE while a graph that captured its all-reduce lives (release it first).
   * ERR_COMM after releasing it when it was aborted during the run (its watchdog: the all-reduces since returned without reducing) or the finalize failed.
   */
  destroy(): void;
}

/** This process's default GPU (one rank per GPU: objects made without a device option go there), before any stream or buffer; ERR_INVALID_ARG out of range, ERR_INVALID_STATE once device objects exist. */
export declare function setDevice(index: number): void;

/** The GPU's measured peaks: cuBLAS 8192^3 GEMMs (fp32 without tensor cores, TF32, bf16) and device-to-device copy bandwidth (read + write); the best of `trials`. */
export interface CudaPeak {
  fp32Gflops: number;
  tf32Gflops: number;
  bf16Gflops: number;
  bandwidthGBs: number;
  gemmSize: number;
  trials: number;
}
export declare function measurePeak(trials?: number): Promise<CudaPeak>;
/** An NVTX range on this thread (Nsight Systems): the step's phases around their kernels' ranges. */
export declare function nvtxRangePush(name: string): void;
export declare function nvtxRangePop(): void;
/** An NVTX range that need not nest (replicas on several GPUs enqueued in turn from one thread): its id for nvtxRangeEnd. */
export declare function nvtxRangeStart(name: string): number;
export declare function nvtxRangeEnd(id: number): void;
export declare function opVariants(): OpVariantInfo[];
export declare function cudaInfo(): CudaInfo;
export declare function convVariants(): CudaConvVariantInfo[];
/** Waits for the recorded kernels and returns them, on this addon's nowNs() clock. */
export declare function timelineDrain(): KernelRecord[];
export declare function timelineClear(): void;
/** The streams' waits for other streams' events since the last drain, on the nowNs() clock. */
export declare function waitsDrain(): WaitRecord[];
/** The CPU addon's MemoryStats (the Buffers' bytes), plus the kernels' device scratch. */
export interface CudaMemoryStats extends MemoryStats {
  /** The kernels' device scratch now: cuDNN workspaces, NHWC/bf16 weight copies, tap tables (PyTorch's max_memory_allocated counts its workspaces too). */
  scratchBytes: number;
  /** Most bytes of Buffers and scratch together at once since the last resetPeakMemory(). */
  peakTotalBytes: number;
}
/** Device memory held by live Buffers, and by released ones a live graph captured (cachedBytes: 0, no caching allocator yet), and apart the kernels' scratch: of the process, or of one GPU. */
export declare function memoryStats(device?: number): CudaMemoryStats;
export declare function resetPeakMemory(device?: number): void;
export declare function nowNs(): number;
