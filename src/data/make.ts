// `stepscope data make`: an ImageFolder of synthetic photographs (JPEG,
// sizes around 500x375, natural-image statistics), for tests and demos.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addon } from '../native';

/** Images are written in chunks so that `onProgress` can report the images done so far. */
export async function makeImageFolder(dir: string, images: number, classes: number, seed: number, threads: number, quality = 90, onProgress?: (done: number) => void): Promise<{ files: string[]; labels: number[] }> {
  const files: string[] = [];
  const labels: number[] = [];
  const digits = String(classes - 1).length;
  for (let c = 0; c < classes; c++) fs.mkdirSync(path.join(dir, `class${String(c).padStart(digits, '0')}`), { recursive: true });
  for (let i = 0; i < images; i++) {
    const c = i % classes; // round-robin: every class gets images when images >= classes
    labels.push(c);
    files.push(path.join(dir, `class${String(c).padStart(digits, '0')}`, `img${String(i).padStart(6, '0')}.jpg`));
  }
  if (!onProgress) {
    await addon().makeImages({ files, labels, classes, seed, threads, quality });
    return { files, labels };
  }
  const chunk = Math.max(threads * 4, Math.ceil(images / 50));
  for (let i = 0; i < images; i += chunk) {
    await addon().makeImages({ files: files.slice(i, i + chunk), labels: labels.slice(i, i + chunk), classes, seed, threads, quality, first: i });
    onProgress(Math.min(images, i + chunk));
  }
  return { files, labels };
}
