// `stepscope data pack`: an ImageFolder decoded once, resized so the shorter
// side is `size`, stored as uint8 records with an index and checksums
// (format: native/data/records.h), so training only reads, crops, flips and normalizes.
import * as fs from 'node:fs';
import type { SkippedSample } from '../../binding';
import { addon } from '../native';
import { scanImageFolder } from './imagefolder';

export interface PackSummary {
  images: number;
  records: number;
  classes: number;
  bytes: number;
  skipped: SkippedSample[];
  seconds: number;
}

/**
 * `onProgress(fraction)`: the records file is written in sample order into
 * `out.tmp`; its size against an estimate (a 4:3 image per sample, shorter
 * side `size`) is the fraction done, polled while the native call runs.
 */
export async function packImageFolder(root: string, out: string, size: number, threads: number, onBadImage: 'skip' | 'fail', onProgress?: (fraction: number) => void): Promise<PackSummary> {
  const folder = scanImageFolder(root);
  const t0 = process.hrtime.bigint();
  const estimate = folder.files.length * size * Math.round((size * 4) / 3) * 3;
  const poll = onProgress && setInterval(() => {
    try {
      onProgress(Math.min(0.99, fs.statSync(`${out}.tmp`).size / estimate));
    } catch {
      // not created yet, or renamed already
    }
  }, 200);
  let r;
  try {
    r = await addon().packRecords({ files: folder.files, labels: folder.labels, classes: folder.classes.length, out, size, threads, onBadImage });
  } finally {
    if (poll) clearInterval(poll);
  }
  return { images: folder.files.length, records: r.records, classes: folder.classes.length, bytes: r.bytes, skipped: r.skipped, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}
