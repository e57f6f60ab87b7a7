// The typed surface of the native addon (build/Release/stepscope.node).
// Hand-written, checked by the TypeScript compiler in the test run, and the
// only door between the TypeScript library and native code.

/** Native errors carry a stable code, e.g. ERR_BAD_SHAPE, ERR_UNKNOWN_VARIANT. */
export interface NativeError extends Error {
  code: string;
}

/** Device memory of fp32 elements (host memory on the CPU backend). */
export declare class Buffer {
  /**
   * With a stream, the buffer is meant for work in order on that stream and
   * may reuse memory freed there by release(stream) at once.
   */
  constructor(length: number, stream?: Stream);
  readonly length: number;
  /** Copies data in at `offset` (elements). Not stream-ordered: synchronize first. */
  write(data: Float32Array, offset?: number): void;
  /** Copies `count` elements out from `offset`. Not stream-ordered: synchronize first. */
  read(offset?: number, count?: number): Float32Array;
  /**
   * The buffer's own memory as a Float32Array, no copy: writes through it change the buffer. It keeps the
   * memory alive, also after release(). Not stream-ordered: synchronize first.
   */
  view(): Float32Array;
  /** Sets every element (NaN poisons an output before a correctness check). */
  fill(value: number): void;
  /** Uniform values in [lo, hi) from a counter-based generator keyed by seed. */
  fillUniform(seed: number, lo: number, hi: number): void;
  /**
   * Frees the memory now; later use of this handle throws. With a stream: a
   * stream-ordered free (like cudaFreeAsync): work already queued still sees
   * the data, later work on that stream may reuse the memory at once, other
   * users once the stream has passed this point. Without: the memory returns
   * when queued work holding the buffer has run.
   */
  release(stream?: Stream): void;
  readonly released: boolean;
}

/** A point on a stream; fires with a timestamp when the stream reaches it. */
export declare class Event {
  constructor();
  /** True when the latest record has fired (or the event was never recorded). */
  readonly complete: boolean;
  /** Nanoseconds on the timeline clock when the latest record fired, or null. */
  readonly timestampNs: number | null;
  synchronize(): Promise<void>;
}

/** An ordered queue of work run by its own worker thread. */
export declare class Stream {
  constructor(name?: string);
  readonly id: number;
  readonly name: string;
  /** Tasks queued or running. */
  readonly pending: number;
  record(event: Event): this;
  /** Later work on this stream waits until the event's latest record fires. */
  wait(event: Event): this;
  /** Resolves when all work enqueued so far has run; rejects with the stream's first error. */
  synchronize(): Promise<void>;
}

export interface ConvShape {
  n: number; c: number; h: number; w: number;
  k: number; r: number; s: number;
  stride: number; pad: number;
}

export type ConvPass = 'fwd' | 'bwd-data' | 'bwd-filter';

export interface ConvKernelDescription {
  variant: string;
  pass: ConvPass;
  layer: string;
  /** What really runs, e.g. "jit:avx512_core" or "own sgemm, avx512 8x32, ...". */
  implementation: string;
  flops: number;
  bytes: number;
  workspaceBytes: number;
  xLength: number;
  wLength: number;
  yLength: number;
}

/**
 * One prepared convolution variant for one pass and shape.
 * enqueue(stream, x, w, y): fwd reads x, w and writes y; bwd-data reads w and
 * y (= dy) and writes x (= dx); bwd-filter reads x and y (= dy) and writes w (= dw).
 */
/** How activations are held: plain NCHW, or oneDNN's nChw16c blocks of 16 channels. */
export type ActivationLayout = 'nchw' | 'nChw16c';

export declare class ConvKernel {
  /** layouts: of x (or dx) and y (or dy); nChw16c only with the `onednn` variant. */
  constructor(shape: ConvShape, pass: ConvPass, variant: string, layer?: string, layouts?: { x?: ActivationLayout; y?: ActivationLayout });
  enqueue(stream: Stream, x: Buffer, w: Buffer, y: Buffer): void;
  describe(): ConvKernelDescription;
}

/** The ops of the step other than convolution, and their buffers in order. */
export type OpName =
  | 'batchnorm-fwd' | 'batchnorm-bwd' | 'relu-fwd' | 'relu-bwd' | 'add'
  | 'maxpool-fwd' | 'maxpool-bwd' | 'avgpool-fwd' | 'avgpool-bwd'
  | 'fc-fwd' | 'fc-bwd' | 'softmax-xent' | 'sgd' | 'allreduce-local' | 'link-hold'
  | 'input'; // CUDA only: the step's fp32 NCHW batch into its activations' layout (nhwc) and dtype (bf16)

export interface OpKernelDescription {
  op: string;
  variant: string;
  pass: string;
  layer: string;
  flops: number;
  bytes: number;
  /** The buffers enqueue() takes, in order, with their exact lengths (and, on CUDA, dtype 'bf16' for bf16 activations; absent: fp32). */
  buffers: { name: string; length: number; dtype?: 'bf16' }[];
}

/**
 * One prepared op. Parameters (numbers or booleans) per op:
 * batchnorm-*: n, c, hw, eps?, momentum?, relu?, blocked?; relu-*: size; add: size, relu?;
 * maxpool-*: n, c, h, w, k?, stride?, pad?, blocked?; avgpool-*: n, c, hw, blocked?;
 * (blocked: activations in nChw16c; the avg-pool's output stays [n, c]);
 * fc-*: n, in, out; softmax-xent: n, classes; sgd: size, lr, momentum?, weightDecay? (or tensors: k with size0..size{k-1}: k tensors in one kernel, buffers param.i, grad.i, momentum_buffer.i);
 * allreduce-local: size, workers (buffers grad, replicas); link-hold: bytes, workers, gbps, latencyUs? (no buffers).
 */
export declare class OpKernel {
  constructor(op: OpName, variant: string, params: Record<string, number | boolean>, layer?: string);
  enqueue(stream: Stream, buffers: Buffer[]): void;
  describe(): OpKernelDescription;
}

export interface OpVariantInfo {
  op: string;
  name: string;
  description: string;
}

export interface MemoryStats {
  /** Bytes held by live buffers. */
  bytesInUse: number;
  /** Most bytes held at once since the last resetPeakMemory(). */
  peakBytes: number;
  /** Freed blocks the caching allocator keeps for reuse (not in bytesInUse). */
  cachedBytes: number;
}

/** One executed kernel. */
export interface KernelRecord {
  op: string;
  variant: string;
  layer: string;
  pass: string;
  stream: number;
  streamName: string;
  startNs: number;
  endNs: number;
  flops: number;
  bytes: number;
}

/** A stream waited for an event that another stream recorded. */
export interface WaitRecord {
  stream: number;
  /** The stream that waited. */
  streamName: string;
  /** The stream that recorded the event. */
  sourceStream: string;
  /** The waiting stream reached the wait, and went on. */
  startNs: number;
  endNs: number;
  /** When the event fired; -1 when not known (a later record replaced it). */
  firedNs: number;
}

export interface VariantInfo {
  name: string;
  description: string;
  available: boolean;
  unavailableReason?: string;
}

export interface PeakMeasurement {
  fmaGflops: number;
  bandwidthGBs: number;
  threads: number;
  fmaKernel: string;
}

export interface LibraryInfo {
  found: boolean;
  version?: string;
  reason?: string;
  threads?: number;
}

/** Where the ranks meet: a FileStore directory they share, or rank 0's TCP store (MASTER_ADDR:MASTER_PORT). */
export type GlooStore = { storePath: string } | { storeHost: string; storePort: number };

/** Real multi-process all-reduce with Gloo (TCP transport). */
export declare class GlooCommunicator {
  /** hostname: the address this rank's Gloo pairs listen on (reachable by the other ranks). storePrefix keeps several rendezvous of one process apart. */
  constructor(options: GlooStore & { rank: number; size: number; storePrefix?: string; hostname?: string; timeoutMs?: number });
  /** Rendezvous with the other ranks; rejects (ERR_COMM) after timeoutMs. */
  connect(): Promise<void>;
  /** Enqueues an in-place all-reduce on the stream: buffer = scale * sum over ranks. */
  allreduce(stream: Stream, buffer: Buffer, scale: number, layer?: string): void;
}

export interface BuildInfo {
  backend: 'cpu';
  compiler: string;
  threads: number;
  openmp: number;
  sgemmKernel: string;
  sanitize: boolean;
  onednn: LibraryInfo;
  openblas: LibraryInfo;
  gloo: LibraryInfo;
  /** libjpeg(-turbo), for the raw JPEG input pipeline. */
  jpeg: LibraryInfo;
}

/** Removes and returns every kernel record so far. */
export declare function timelineDrain(): KernelRecord[];
/** Clears the kernel records and the wait records. */
export declare function timelineClear(): void;
/** The waits of streams on events recorded since the last drain (the schedule's dependency edges). */
export declare function waitsDrain(): WaitRecord[];
/** The timeline clock, in nanoseconds. */
export declare function nowNs(): number;
export declare function convVariants(): VariantInfo[];
export declare function opVariants(): OpVariantInfo[];
export declare function memoryStats(): MemoryStats;
export declare function resetPeakMemory(): void;
/** Frees the caching allocator's kept blocks; returns the bytes freed. */
export declare function emptyCache(): number;
export declare function measurePeak(trials?: number): Promise<PeakMeasurement>;
export declare function buildInfo(): BuildInfo;

// ---- Input pipeline (issue #6) ----

/** An 8-bit RGB image, rows of width*3 bytes (HWC). */
export interface RgbImage {
  height: number;
  width: number;
  pixels: Uint8Array;
}

/** A sample that could not be used: `index` in the dataset, `source` names the file or record. */
export interface SkippedSample {
  index: number;
  source: string;
  message: string;
}

export interface LoadedBatch {
  /** batch x 3 x size x size, normalized with ImageNet's mean and std (NCHW float32); absent when loaded into a Buffer. */
  input?: Float32Array;
  labels: Float32Array;
  /** Bad samples replaced by the next ones in the dataset (onBadImage 'skip'). */
  skipped: SkippedSample[];
  /** Wall time the pool spent on this batch, and the per-sample times summed over its threads. */
  busyNs: number;
  threadNs: number;
}

export type DataSource = { kind: 'raw'; files: string[]; labels: number[] } | { kind: 'records'; path: string };

/**
 * Prepares batches on its own pool of `threads` native threads: per sample a
 * RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) to `size`, a horizontal
 * flip, normalization. Raw JPEGs decode only the crop (DCT scaling when it is
 * much larger than `size`). Crops and flips depend on (seed, epoch, index)
 * only. Opening records validates magic, version, header and index checksums
 * (throws ERR_BAD_RECORDS naming the file).
 */
export declare class DataLoader {
  constructor(source: DataSource, options: { threads?: number; size?: number; onBadImage?: 'skip' | 'fail' });
  readonly length: number;
  readonly threads: number;
  /** Classes recorded in a records file; 0 for raw sources. */
  readonly classes: number;
  labels(): number[];
  /**
   * Rejects with ERR_DATA_INDEX (an index past the end), ERR_BAD_IMAGE or
   * ERR_BAD_RECORDS (naming the file or record) when a sample is bad and
   * onBadImage is 'fail', or when 32 samples in a row are bad.
   */
  load(indices: number[], epoch: number, seed: number): Promise<LoadedBatch & { input: Float32Array }>;
  /**
   * The same written into `into` (exactly indices.length * 3 * size * size
   * values; it must not be in use by queued work until this resolves).
   */
  load(indices: number[], epoch: number, seed: number, into: Buffer): Promise<LoadedBatch>;
  /** Sample i before augmentation: the decoded JPEG, or the stored record. */
  sample(index: number): RgbImage & { label: number };
}

/** Decodes a JPEG file; with `shorter`, resized so its shorter side is that (as `data pack` stores it). */
export declare function jpegDecode(path: string, shorter?: number): RgbImage;
/** Writes an image as a JPEG file; returns its size in bytes. */
export declare function jpegEncode(path: string, image: RgbImage, quality: number): number;
/** The crop box (source pixels) and flip of a sample. */
export declare function augmentParams(seed: number, epoch: number, index: number, height: number, width: number): {
  top: number; left: number; height: number; width: number; flip: boolean;
};
/** Decodes, resizes (shorter side `size`, default 256) and writes records; files in order, bad ones skipped or fatal. */
export declare function packRecords(options: {
  files: string[]; labels: number[]; classes: number; out: string; size?: number; threads?: number; onBadImage?: 'skip' | 'fail';
}): Promise<{ records: number; bytes: number; skipped: SkippedSample[] }>;
/** Writes synthetic photographs (JPEG) of the given classes. */
export declare function makeImages(options: {
  files: string[]; labels: number[]; classes: number; seed?: number; threads?: number; quality?: number;
  /** files[i] is image first + i of the seed's sequence (default 0). */
  first?: number;
}): Promise<void>;
