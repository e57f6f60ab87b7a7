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
  const syscall = e.syscall ?? 'write';
  // Node's message is `CODE: what, syscall 'path'` (or without the path): keep `what`.
  const what = e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*$/s, '').replace(new RegExp(`, ${syscall}$`), '');
  return Object.assign(new Error(`${e.code}: ${what}, ${syscall} '${file}'`), { code: e.code, errno: e.errno, syscall, path: file, cause: err });
}

const STREAM_NAMES: Record<string, 1 | 2> = {
  '/dev/stdout': 1, '/dev/fd/1': 1, '/proc/self/fd/1': 1,
  '/dev/stderr': 2, '/dev/fd/2': 2, '/proc/self/fd/2': 2,
};

/**
 * The standard stream (1 stdout, 2 stderr) that `file` names or is
 * redirected to, if any: written through process.stdout or stderr, in order
 * with what is printed (opening it again would truncate a redirected file,
 * and cannot open a socket: ENXIO).
 */
function standardStreamOf(file: string): 1 | 2 | undefined {
  const named = STREAM_NAMES[file];
  if (named) return named;
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return undefined;
  }
  if (!st.isFile()) return undefined; // a device or fifo of its own
  for (const fd of [1, 2] as const) {
    try {
      const s = fs.fstatSync(fd);
      if (s.isFile() && s.dev === st.dev && s.ino === st.ino) return fd;
    } catch {
      // closed
    }
  }
  return undefined;
}

/**
 * Writes every chunk to `fd` before it returns. A pipe may be non-blocking (stdout under a reader that is
 * behind): EAGAIN waits for room; a closed reader (EPIPE) and other errors throw.
 */
export function writeAll(fd: number, chunks: readonly (string | Uint8Array)[]): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (const chunk of chunks) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    for (let done = 0; done < bytes.byteLength; ) {
      try {
        done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        Atomics.wait(pause, 0, 0, 5);
      }
    }
  }
}

export function writeTextAtomic(file: string, text: string): void {
  writeFileAtomic(file, [text]);
}

/**
 * Writes `chunks` to `file`: atomically (a temp file beside the symlink
 * chain's end, synced, renamed over it, its mode kept) for a regular file or
 * a new one; in place for a device or fifo; through the descriptor for the
 * file stdout or stderr is redirected to (`--save /dev/stdout > f`: opening
 * it again would truncate and overwrite what was printed).
 */
export function writeFileAtomic(file: string, chunks: readonly (string | Uint8Array)[]): void {
  const out = outputTarget(file); // UsageError: empty, a directory
  if (out.mode === 'direct') {
    const stream = standardStreamOf(out.target);
    if (stream) {
      // Its errors (a closed pipe) are the stream's own: see cli.ts.
      for (const chunk of chunks) (stream === 1 ? process.stdout : process.stderr).write(chunk);
      return;
    }
    let fd: number | undefined;
    try {
      fd = fs.openSync(out.target, 'w');
      writeAll(fd, chunks);
    } catch (err) {
      throw writeError(file, err);
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    return;
  }
  const tmp = path.join(path.dirname(out.target), `.${path.basename(out.target)}.${process.pid}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w', out.keepMode);
    writeAll(fd, chunks);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    if (out.keepMode !== undefined) fs.chmodSync(tmp, out.keepMode); // the umask may have narrowed it
    fs.renameSync(tmp, out.target);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // already failing: keep the first error
      }
    }
    try {
      fs.unlinkSync(tmp);
    } catch {
      // never created, or renamed already
    }
    throw writeError(file, err);
  }
}
