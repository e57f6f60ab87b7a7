// `stepscope bench data`: images per second of the input pipeline, raw
// (decode + augment) and records (read + augment), per thread count, on one
// ImageFolder and the records packed from it. Timed per batch after warm-up;
// files are in the page cache after the first pass (this measures CPU work,
// not the disk).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addon } from '../native';
import { UsageError } from '../errors';
import { scanImageFolder } from '../data/imagefolder';
import { makeImageFolder } from '../data/make';
import { packImageFolder } from '../data/pack';
import { batchSamples } from '../data/sampler';
import { summarize, type Summary } from './stats';

export interface DataBenchOptions {
  dataset: string;
  threads: number[];
  batch: number;
  batches: number;
  warmup: number;
  size: number;
  packSize: number;
  kinds: ('raw' | 'records')[];
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface DataBenchRow {
  kind: 'raw' | 'records';
  threads: number;
  /** Images per second over the batch (median, min, max over timed batches). */
  imagesPerSec: Summary;
  /** Median images per second divided by the threads. */
  perThread: number;
  /** Median images per second against the same kind on the fewest threads. */
  scaling: number;
}

/** Classes of the ImageFolder bench data generates when no --dataset is given. */
export const BENCH_CLASSES = 4;

/**
 * bench data without --dataset: a generated ImageFolder of `images` images in
 * BENCH_CLASSES classes, in a new temporary directory (the caller removes it).
 * Refused before anything is written when there are fewer images than
 * classes; on a failure the directory is removed.
 */
export async function makeBenchImageFolder(images: number, threads: number): Promise<string> {
  if (!Number.isInteger(images) || images < BENCH_CLASSES) {
    throw new UsageError(`--images ${images} is not allowed: bench data generates ${BENCH_CLASSES} classes and every class needs an image (give --images ${BENCH_CLASSES} or more, or --dataset)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stepscope-bench-images-'));
  try {
    await makeImageFolder(dir, images, BENCH_CLASSES, 1, threads, 90, undefined, { name: 'the generated ImageFolder' });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

export async function benchData(o: DataBenchOptions): Promise<{ rows: DataBenchRow[]; images: number; meanJpegBytes: number; recordsBytes: number }> {
  const native = addon();
  const folder = scanImageFolder(o.dataset);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stepscope-bench-data-'));
  const recordsPath = path.join(tmp, 'bench.records');
  let recordsBytes = 0;
  try {
    if (o.kinds.includes('records')) recordsBytes = (await packImageFolder(o.dataset, recordsPath, o.packSize, Math.max(...o.threads), 'fail', undefined, { folder: '--dataset', out: 'the benchmark records file' })).bytes;
    const rows: DataBenchRow[] = [];
    for (const kind of o.kinds) {
      for (const threads of o.threads) {
        o.onProgress?.(rows.length, o.kinds.length * o.threads.length, `${kind}, ${threads} thread(s)`);
        const source = kind === 'raw' ? { kind, files: folder.files, labels: folder.labels } as const : { kind, path: recordsPath } as const;
        const loader = new native.DataLoader(source, { threads, size: o.size, onBadImage: 'fail' });
        const rates: number[] = [];
        for (let i = 0; i < o.warmup + o.batches; i++) {
          const { epoch, indices } = batchSamples(loader.length, o.batch, i, 1);
          const t0 = process.hrtime.bigint();
          await loader.load(indices, epoch, 1);
          const s = Number(process.hrtime.bigint() - t0) / 1e9;
          if (i >= o.warmup) rates.push(o.batch / s);
        }
        const imagesPerSec = summarize(rates);
        const base = rows.find((r) => r.kind === kind);
        rows.push({ kind, threads, imagesPerSec, perThread: imagesPerSec.median / threads, scaling: base ? imagesPerSec.median / base.imagesPerSec.median : 1 });
      }
    }
    const meanJpegBytes = folder.files.reduce((s, f) => s + fs.statSync(f).size, 0) / folder.files.length;
    return { rows, images: folder.files.length, meanJpegBytes, recordsBytes };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
