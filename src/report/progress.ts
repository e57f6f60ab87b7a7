// A progress bar on the terminal for long runs: redrawn in place on stderr,
// and silent when stderr is not a terminal or the output is JSON.
export interface Progress {
  /** fraction 0..1 of the whole job, and what runs now. */
  update(fraction: number, label: string): void;
  done(): void;
}

export function progressBar(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!enabled || !stream.isTTY) return { update: () => undefined, done: () => undefined };
  const start = Date.now();
  let shown = false;
  return {
    update(fraction, label) {
      const f = Math.max(0, Math.min(1, fraction));
      const width = 24;
      const filled = Math.round(f * width);
      const secs = ((Date.now() - start) / 1000).toFixed(0);
      const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(100 * f).toFixed(0).padStart(3)}% ${secs}s ${label}`;
      const cols = stream.columns || 100;
      stream.write(`\r${line.slice(0, cols - 1).padEnd(cols - 1)}`);
      shown = true;
    },
    done() {
      if (shown) stream.write('\n');
      shown = false;
    },
  };
}
