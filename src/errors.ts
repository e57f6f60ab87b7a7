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
