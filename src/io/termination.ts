// A long run that a timeout or Ctrl-C stops should not lose what it measured:
// on SIGTERM or SIGINT, write the partial result once to stdout, then die by
// the same signal, so a shell loop or `timeout` sees the stop as a stop.
import * as fs from 'node:fs';

/** Writes all of `text` to stdout now: a pipe may be non-blocking (EAGAIN) and process.stdout.write would not finish before the exit. */
function writeAllSync(text: string): void {
  const bytes = Buffer.from(text.endsWith('\n') ? text : `${text}\n`);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let off = 0; off < bytes.length; ) {
    try {
      off += fs.writeSync(1, bytes, off, bytes.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err; // a closed reader (EPIPE): nothing more to save
      Atomics.wait(pause, 0, 0, 5); // the reader is behind: wait for room
    }
  }
}

/**
 * Writes `textOf(signal)` to stdout if SIGTERM or SIGINT arrives before the returned function is called.
 * Node runs the handler on a later turn of the event loop: a signal during the caller's own synchronous
 * final print is seen only after that print, once the watch has ended, and is then not acted on.
 */
export function writeOnTermination(textOf: (signal: NodeJS.Signals) => string): () => void {
  const stop = () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
  function handler(signal: NodeJS.Signals) {
    stop();
    try {
      writeAllSync(textOf(signal));
    } finally {
      // With no listener left the signal's default action applies: the process dies by it (exit 128+n).
      process.kill(process.pid, signal);
    }
  }
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
  return stop;
}
