// A long run that a timeout or Ctrl-C stops should not lose what it measured:
// on SIGTERM or SIGINT, write the partial result once, then exit as the
// signal would have (128 + its number), so callers still see the stop.

/** Calls `write(signal)` if SIGTERM or SIGINT arrives before the returned function is called. */
export function writeOnTermination(write: (signal: NodeJS.Signals) => void): () => void {
  const handler = (signal: NodeJS.Signals) => {
    try {
      write(signal);
    } finally {
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    }
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
