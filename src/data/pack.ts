// `stepscope data pack`: an ImageFolder decoded once, resized so the shorter
// side is `size`, stored as uint8 records with an index and checksums
// (format: native/data/records.h), so training only reads, crops, flips and normalizes.
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

export async function packImageFolder(root: string, out: string, size: number, threads: number, onBadImage: 'skip' | 'fail'): Promise<PackSummary> {
  const folder = scanImageFolder(root);
  const t0 = process.hrtime.bigint();
  const r = await addon().packRecords({ files: folder.files, labels: folder.labels, classes: folder.classes.length, out, size, threads, onBadImage });
  return { images: folder.files.length, records: r.records, classes: folder.classes.length, bytes: r.bytes, skipped: r.skipped, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}
