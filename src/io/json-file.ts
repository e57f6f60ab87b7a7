// Saved outputs are written atomically: a temp file beside the target, then a
// rename. A symlink is followed (its target is replaced, the link stays); a
// device, fifo or socket (/dev/null, /dev/stdout, a named pipe) is written in
// place, never renamed over; a failed write leaves no temp file behind.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { outputTarget } from './output-path';

export function writeJsonAtomic(file: string, value: unknown): void {
  writeTextAtomic(file, JSON.stringify(value, null, 1));
}

/**
 * A failed write, as a Node system error (code, syscall: what the CLI reports
 * without a stack, and what an OutputWriter collects) whose message names the
 * user's path, not the temp file beside it.
 */
function writeError(file: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  if (!(e instanceof Error) || typeof e.code !== 'string') return err;
  // Node's message is `CODE: what, syscall 'path'`.
  const what = e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*$/s, '');
  const syscall = e.syscall ?? 'write';
  return Object.assign(new Error(`${e.code}: ${what}, ${syscall} '${file}'`), { code: e.code, errno: e.errno, syscall, path: file, cause: err });
}

export function writeTextAtomic(file: string, text: string): void {
  const out = outputTarget(file); // UsageError: empty, a directory
  if (out.mode === 'direct') {
    try {
      fs.writeFileSync(out.target, text);
    } catch (err) {
      throw writeError(file, err);
    }
    return;
  }
  const tmp = path.join(path.dirname(out.target), `.${path.basename(out.target)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, text, out.keepMode !== undefined ? { mode: out.keepMode } : undefined);
    if (out.keepMode !== undefined) fs.chmodSync(tmp, out.keepMode); // the umask may have narrowed it
    fs.renameSync(tmp, out.target);
  } catch (err) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // never created, or renamed already
    }
    throw writeError(file, err);
  }
}
