// `stepscope data make`: an ImageFolder of synthetic photographs (JPEG,
// sizes around 500x375, natural-image statistics), for tests and demos.
// The folder holds exactly the images written: a new or empty directory is
// filled; one an earlier `data make` wrote (it leaves a marker file) has its
// class folders replaced; any other non-empty directory is refused.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../errors';
import { ensureDirectory } from '../io/output-path';
import { addon } from '../native';

/** The file `data make` leaves in the folders it writes (JSON: images, classes, seed). */
export const MAKE_MARKER = '.stepscope-data-make';

const CLASS_DIR = /^class\d+$/;
const MADE_IMAGE = /^img\d+\.jpg$/;

export interface MakeOptions {
  /** What the errors call the directory (default `data make <dir>`). */
  name?: string;
  /** Told what was replaced (default: a line on stderr). */
  onNote?: (message: string) => void;
}

/** What an earlier `data make` left in `dir`: its images and class folders (undefined: nothing to replace). */
export interface Replaced {
  images: number;
  classes: number;
}

/**
 * Checks `dir` and makes it ready: created if missing (UsageError naming it
 * when it cannot be), refused when it holds anything `data make` did not
 * write, emptied of an earlier `data make`'s class folders otherwise.
 */
export function prepareMakeDir(dir: string, name = 'data make <dir>'): { replaced?: Replaced; created: string[] } {
  if (dir === '') throw new UsageError(`${name} '' is not allowed: give the directory to write the class folders in (created if missing)`);
  const created = ensureDirectory(name, dir);
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  if (entries.length === 0) return { created };
  if (!entries.some((e) => e.name === MAKE_MARKER && e.isFile())) {
    throw new UsageError(`${name} '${dir}' is not allowed: the directory is not empty and was not written by data make (it holds '${entries[0].name}'${entries.length > 1 ? ` and ${entries.length - 1} more` : ''}); give a new or empty directory`);
  }
  const foreign = entries.filter((e) => e.name !== MAKE_MARKER && !(e.isDirectory() && CLASS_DIR.test(e.name)));
  if (foreign.length > 0) {
    throw new UsageError(`${name} '${dir}' is not allowed: an earlier data make wrote it, but it also holds '${foreign[0].name}', which data make did not write; remove it, or give a new or empty directory`);
  }
  const classDirs = entries.filter((e) => e.name !== MAKE_MARKER);
  let images = 0;
  for (const c of classDirs) {
    // Only what data make writes in a class folder is replaced: anything else there is the user's.
    const inside = fs.readdirSync(path.join(dir, c.name), { withFileTypes: true });
    const other = inside.find((e) => !(e.isFile() && MADE_IMAGE.test(e.name)));
    if (other) {
      throw new UsageError(`${name} '${dir}' is not allowed: an earlier data make wrote it, but '${path.join(c.name, other.name)}' is not one of its images; remove it, or give a new or empty directory`);
    }
    images += inside.length;
  }
  for (const c of classDirs) fs.rmSync(path.join(dir, c.name), { recursive: true, force: true });
  return { replaced: { images, classes: classDirs.length }, created };
}

/** Images are written in chunks so that `onProgress` can report the images done so far. */
export async function makeImageFolder(dir: string, images: number, classes: number, seed: number, threads: number, quality = 90, onProgress?: (done: number) => void, options: MakeOptions = {}): Promise<{ files: string[]; labels: number[]; replaced?: Replaced }> {
  if (!Number.isInteger(classes) || classes < 1) throw new UsageError(`${classes} classes are not allowed: 1 or more`);
  if (!Number.isInteger(images) || images < classes) {
    throw new UsageError(`--images ${images} is not allowed with ${classes} classes: every class needs an image (give --images ${classes} or more)`);
  }
  const name = options.name ?? 'data make <dir>';
  const { replaced, created } = prepareMakeDir(dir, name);
  if (replaced) {
    const note = options.onNote ?? ((m: string) => process.stderr.write(`stepscope: ${m}\n`));
    note(`${name} '${dir}': replaced the ${replaced.images} image(s) in ${replaced.classes} class folder(s) that an earlier data make wrote there`);
  }
  const files: string[] = [];
  const labels: number[] = [];
  const digits = String(classes - 1).length;
  const classDir = (c: number) => path.join(dir, `class${String(c).padStart(digits, '0')}`);
  try {
    // The marker first: a make that is interrupted leaves a folder the next make may replace.
    fs.writeFileSync(path.join(dir, MAKE_MARKER), `${JSON.stringify({ format: 'stepscope-data-make', images, classes, seed })}\n`);
    for (let c = 0; c < classes; c++) fs.mkdirSync(classDir(c));
    for (let i = 0; i < images; i++) {
      const c = i % classes; // round-robin: every class gets images (images >= classes)
      labels.push(c);
      files.push(path.join(classDir(c), `img${String(i).padStart(6, '0')}.jpg`));
    }
    if (!onProgress) {
      await addon().makeImages({ files, labels, classes, seed, threads, quality });
      return { files, labels, replaced };
    }
    const chunk = Math.max(threads * 4, Math.ceil(images / 50));
    for (let i = 0; i < images; i += chunk) {
      await addon().makeImages({ files: files.slice(i, i + chunk), labels: labels.slice(i, i + chunk), classes, seed, threads, quality, first: i });
      onProgress(Math.min(images, i + chunk));
    }
    return { files, labels, replaced };
  } catch (err) {
    // No half-made folder: what this call wrote goes (and the directories it created).
    for (let c = 0; c < classes; c++) fs.rmSync(classDir(c), { recursive: true, force: true });
    fs.rmSync(path.join(dir, MAKE_MARKER), { force: true });
    for (const d of created.reverse()) fs.rmSync(d, { recursive: true, force: true });
    throw err;
  }
}
