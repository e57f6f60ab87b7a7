// An ImageFolder (torchvision's layout, ImageNet's train/): one subfolder per
// class, sorted by name (label = position), JPEG files inside. An empty class
// folder is an error naming it (as torchvision's ImageFolder), since it would
// silently shift every later label.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataError, UsageError } from '../errors';

export interface ImageFolder {
  root: string;
  classes: string[];
  files: string[];
  labels: number[];
}

const JPEG = /\.(jpe?g)$/i;

/** What an ImageFolder option needs, as its errors say. */
export const FOLDER_NEEDED = 'a readable directory with one subfolder of JPEG files per class is needed';

/**
 * `option` names where the folder came from in the error for a missing or
 * unreadable one: step's and bench data's `--dataset`, or `data pack <imagefolder>`.
 */
export function scanImageFolder(root: string, option = '--dataset'): ImageFolder {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch {
    throw new UsageError(`${option} '${root}' is not allowed: ${FOLDER_NEEDED}`);
  }
  const classes = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  if (classes.length === 0) throw new DataError(`image folder '${root}' has no class subfolders (expected <root>/<class>/<image>.jpg)`);
  const files: string[] = [];
  const labels: number[] = [];
  classes.forEach((name, label) => {
    const dir = path.join(root, name);
    let listed: fs.Dirent[];
    try {
      listed = fs.readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      throw new DataError(`class folder '${dir}' cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    const images = listed.filter((e) => e.isFile() && JPEG.test(e.name)).map((e) => e.name).sort();
    if (images.length === 0) throw new DataError(`class folder '${dir}' holds no JPEG files (.jpg, .jpeg): remove it or add images`);
    for (const f of images) {
      files.push(path.join(dir, f));
      labels.push(label);
    }
  });
  return { root, classes, files, labels };
}
