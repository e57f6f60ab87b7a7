// A UsageError is bad input from the user: the CLI prints its message and
// exits with code 2. Messages name the bad value and what is allowed.
export class UsageError extends Error {
  override name = 'UsageError';
}

// A DataError is a dataset that cannot be used as it is (an empty class
// folder, a corrupt file): the CLI prints its message, naming the file, and
// exits with code 1. Native data errors carry codes (DATA_ERROR_CODES) instead.
export class DataError extends Error {
  override name = 'DataError';
}

export const DATA_ERROR_CODES = ['ERR_BAD_IMAGE', 'ERR_BAD_RECORDS', 'ERR_DATA_INDEX', 'ERR_IO', 'ERR_UNAVAILABLE'];

// An OutputError is a result that could not be written (an output file, or
// stdout): the CLI prints its message, naming the option or stream, the path
// and the system error, and exits with code 1. The rest of the output was
// still written.
export class OutputError extends Error {
  override name = 'OutputError';
}

// A DivergedError is a training step whose loss is not finite (NaN or
// infinite): the input was in range, so the CLI prints its message (no stack)
// and exits with code 1. code: 'ERR_DIVERGED'.
export class DivergedError extends Error {
  override name = 'DivergedError';
  readonly code = 'ERR_DIVERGED';
}

/** A Node system error (fs, streams): it has a code such as ENOSPC, and the syscall that failed. */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException & { code: string; syscall: string } {
  const e = err as NodeJS.ErrnoException | null;
  return e instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string';
}

/**
 * Text from a file or the user (a binary file's bytes in a parser's message)
 * made printable: control characters (but newline and tab) become \xNN escapes.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
