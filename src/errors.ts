// A UsageError is bad input from the user: the CLI prints its message and
// exits with code 2. Messages name the bad value and what is allowed.
export class UsageError extends Error {
  override name = 'UsageError';
}
