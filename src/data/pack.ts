// `stepscope data pack`: an ImageFolder decoded once, resized so the shorter
// side is `size`, stored as uint8 records with an index and checksums
// (format: native/data/records.h), so training only reads, crops, flips and normalizes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SkippedSample } from '../../binding';
import { UsageError } from '../errors';
import { checkTargetDirectory, followLinks, viaLink } from '../io/output-path';
import { addon } from '../native';
import { scanImageFolder, type ImageFolder } from './imagefolder';

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
/** What the errors call the image folder and the output (the CLI's arguments or options). */
export interface PackNames {
  folder: string;
  out: string;
}

const PACK_NAMES: PackNames = { folder: 'data pack <imagefolder>', out: 'data pack <out>' };

function realDir(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/**
 * Where the records go: `out`, or the end of its symlink chain (the link is
 * kept, its target written). Refused with a UsageError naming `out`: empty,
 * a directory, a device or fifo (the records are renamed into place, which
 * would replace it), inside one of the image folder's class folders (it would
 * overwrite an image or be read as one), or in a directory that is missing or
 * not writable.
 */
export function checkRecordsOutput(out: string, folder: ImageFolder, name = PACK_NAMES.out): string {
  const bad = (why: string) => new UsageError(`${name} '${out}' is not allowed: ${why}`);
  if (out === '') throw bad('give the records file to write');
  const target = followLinks(out);
  const via = viaLink(out, target);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(target);
  } catch {
    st = undefined;
  }
  if (st?.isDirectory()) throw bad(`it is a directory${via}; give a file name, e.g. ${path.join(out, 'images.records')}`);
  if (st && !st.isFile()) throw bad(`it is not a regular file${via} (a device, fifo or socket): the records are written beside it and renamed into place`);
  const dir = path.dirname(target);
  const root = realDir(folder.root);
  const rel = path.relative(root, realDir(dir));
  if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)) {
    throw bad(`it is inside the image folder's class folder '${path.join(folder.root, rel.split(path.sep)[0])}'${via}: write it outside the class folders of '${folder.root}'`);
  }
  checkTargetDirectory(out, target, bad);
  return target;
}

export async function packImageFolder(root: string, out: string, size: number, threads: number, onBadImage: 'skip' | 'fail', onProgress?: (fraction: number) => void, names: PackNames = PACK_NAMES): Promise<PackSummary> {
  const folder = scanImageFolder(root, names.folder);
  const target = checkRecordsOutput(out, folder, names.out);
  const t0 = process.hrtime.bigint();
  const estimate = folder.files.length * size * Math.round((size * 4) / 3) * 3;
  const poll = onProgress && setInterval(() => {
    try {
      onProgress(Math.min(0.99, fs.statSync(`${target}.tmp`).size / estimate));
    } catch {
      // not created yet, or renamed already
    }
  }, 200);
  let r;
  try {
    r = await addon().packRecords({ files: folder.files, labels: folder.labels, classes: folder.classes.length, out: target, size, threads, onBadImage });
  } finally {
    if (poll) clearInterval(poll);
  }
  return { images: folder.files.length, records: r.records, classes: folder.classes.length, bytes: r.bytes, skipped: r.skipped, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}
