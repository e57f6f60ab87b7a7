// A long run that a timeout or Ctrl-C stops should not lose what it measured:
// on SIGTERM or SIGINT, write the partial result once to stdout, then die by
// the same signal, so a shell loop or `timeout` sees the stop as a stop.
import { writeAll } from './json-file';

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
      // Synchronously, whole: process.stdout.write to a pipe would not finish before the process dies.
      const text = textOf(signal);
      writeAll(1, [text.endsWith('\n') ? text : `${text}\n`]);
    } finally {
      // With no listener left the signal's default action applies: the process dies by it (exit 128+n).
      process.kill(process.pid, signal);
    }
  }
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
  return stop;
}
