// The training step's input pipeline: raw JPEGs or packed records through a
// native DataLoader, with a prefetch queue. With prefetch 0 each batch is
// prepared when the step asks for it (as in the published comparison); with
// K > 0 up to K later batches are being prepared while the step computes.
// The step's data time is what it waited; the pipeline's own busy time is
// reported beside it. Batches are written straight into a ring of K+1 input
// buffers that the step reads in turn (batch i and the K in flight after it
// never share one), so handing a batch over copies nothing.
import * as fs from 'node:fs';
import type { Buffer, DataLoader, LoadedBatch, SkippedSample } from '../../binding';
import { addon } from '../native';
import { UsageError } from '../errors';
import { FOLDER_NEEDED, scanImageFolder } from './imagefolder';
import { batchSamples } from './sampler';

export type DataKind = 'synthetic' | 'raw' | 'records';

export interface DataOptions {
  kind: DataKind;
  /** An ImageFolder (raw) or a records file (records). */
  dataset?: string;
  threads: number;
  prefetch: number;
  onBadImage: 'skip' | 'fail';
}

export interface PreparedBatch {
  /** The step's input for this iteration: free again once the iteration has run. */
  input: Buffer;
  labels: Float32Array;
  /** Wall time the pipeline spent preparing this batch (not necessarily waited for). */
  busyMs: number;
  skipped: SkippedSample[];
}

export function openLoader(kind: 'raw' | 'records', dataset: string, threads: number, size: number, onBadImage: 'skip' | 'fail'): { loader: DataLoader; classes: number } {
  const native = addon();
  if (kind === 'raw') {
    const folder = scanImageFolder(dataset);
    const loader = new native.DataLoader({ kind: 'raw', files: folder.files, labels: folder.labels }, { threads, size, onBadImage });
    return { loader, classes: folder.classes.length };
  }
  // The CLI checked this before any work (checkDataOptions); a library caller reaches here directly.
  checkRecordsFile(dataset);
  const loader = new native.DataLoader({ kind: 'records', path: dataset }, { threads, size, onBadImage });
  return { loader, classes: loader.classes };
}

const RECORDS_NEEDED = 'a records file made by `stepscope data pack` is needed';

/** --data records: `--dataset` must be an existing regular file (not a directory, not missing), named in the error. */
function checkRecordsFile(dataset: string): void {
  const option = '--dataset';
  let st: fs.Stats;
  try {
    st = fs.statSync(dataset);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${option} '${dataset}' is not allowed with --data records: ${code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file' : `cannot read it (${code})`}; ${RECORDS_NEEDED}`);
  }
  if (st.isDirectory()) {
    throw new UsageError(`${option} '${dataset}' is not allowed with --data records: it is a directory; ${RECORDS_NEEDED} (for an ImageFolder directory, use --data raw, or pack it first)`);
  }
  if (!st.isFile()) throw new UsageError(`${option} '${dataset}' is not allowed with --data records: it is not a regular file; ${RECORDS_NEEDED}`);
  try {
    fs.accessSync(dataset, fs.constants.R_OK);
  } catch {
    throw new UsageError(`${option} '${dataset}' is not allowed with --data records: it is not readable; ${RECORDS_NEEDED}`);
  }
}

/** --data raw: `--dataset` must be a directory (its class folders are scanned when the pipeline opens). */
function checkFolder(dataset: string): void {
  const option = '--dataset';
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dataset);
  } catch {
    st = undefined;
  }
  if (!st?.isDirectory()) throw new UsageError(`${option} '${dataset}' is not allowed: ${FOLDER_NEEDED}${st?.isFile() ? ' (it is a file: for a records file, use --data records)' : ''}`);
}

export class DataPipeline {
  readonly loader: DataLoader;
  readonly classes: number;
  private queue = new Map<number, Promise<LoadedBatch>>();
  private ring: Buffer[];
  /** The ring's input buffers, each batch's `input` one of them in turn (the CUDA step pins them once: run/host-pins.ts). */
  get ringBuffers(): readonly Buffer[] {
    return this.ring;
  }
  /** Distinct samples skipped as bad, by source. */
  readonly skipped = new Map<string, string>();

  constructor(
    readonly options: DataOptions & { kind: 'raw' | 'records'; dataset: string },
    readonly batch: number,
    readonly size: number,
    readonly seed: number,
    /** Batches the run will take: none is prefetched past the last. */
    readonly total: number,
    /** This worker's share of the dataset (data-parallel training). */
    readonly shard: { rank: number; workers: number } = { rank: 0, workers: 1 },
  ) {
    ({ loader: this.loader, classes: this.classes } = openLoader(options.kind, options.dataset, options.threads, size, options.onBadImage));
    if (this.loader.length < shard.workers) {
      throw new UsageError(`the dataset ${options.dataset} has ${this.loader.length} images: fewer than the ${shard.workers} workers that share it`);
    }
    const native = addon();
    this.ring = Array.from({ length: options.prefetch + 1 }, () => new native.Buffer(batch * 3 * size * size));
  }

  private closed = false;

  private start(i: number): void {
    if (this.closed || i >= this.total || this.queue.has(i)) return;
    const { epoch, indices } = batchSamples(this.loader.length, this.batch, i, this.seed, this.shard.rank, this.shard.workers);
    const p = this.loader.load(indices, epoch, this.seed, this.ring[i % this.ring.length]);
    p.catch(() => undefined); // observed when taken; not an unhandled rejection meanwhile
    this.queue.set(i, p);
  }

  /**
   * Batch i; starts it if needed, and the next `prefetch` ones behind it.
   * Call only once the iteration that used batch i-1 has run (its buffer is reused).
   */
  async take(i: number): Promise<PreparedBatch> {
    this.start(i);
    // The batches ahead start once the caller has enqueued its iteration (it
    // does so synchronously after this resolves): started now, the pool's
    // threads would take the cores from the thread that enqueues (seen: 3-6 ms
    // of extra wait on 2 cores).
    if (this.options.prefetch > 0) {
      setImmediate(() => {
        for (let k = 1; k <= this.options.prefetch; k++) this.start(i + k);
      });
    }
    const p = this.queue.get(i)!;
    this.queue.delete(i);
    const b = await p;
    for (const s of b.skipped) this.skipped.set(s.source, s.message);
    return { input: this.ring[i % this.ring.length], labels: b.labels, busyMs: b.busyNs / 1e6, skipped: b.skipped };
  }

  /** Waits for batches still in flight (so no native work outlives the run). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.queue.values()]);
    this.queue.clear();
    for (const b of this.ring) b.release();
  }
}

export function checkDataOptions(o: DataOptions): void {
  if (o.kind !== 'synthetic' && o.dataset === '') throw new UsageError(`--dataset '' is not allowed: give ${o.kind === 'raw' ? 'an ImageFolder directory' : 'a records file made by `stepscope data pack`'}`);
  if (o.kind !== 'synthetic' && !o.dataset) {
    throw new UsageError(`--data ${o.kind} needs --dataset: ${o.kind === 'raw' ? 'an ImageFolder directory (one subfolder of JPEGs per class)' : 'a records file made by `stepscope data pack`'}`);
  }
  if (o.kind === 'synthetic' && o.dataset !== undefined) throw new UsageError(`--dataset '${o.dataset}' is not allowed with --data synthetic: choose --data raw or --data records`);
  // Before any work: a missing dataset, or the wrong kind of path, is named now, not when the pipeline opens.
  if (o.kind === 'records') checkRecordsFile(o.dataset!);
  if (o.kind === 'raw') checkFolder(o.dataset!);
}
