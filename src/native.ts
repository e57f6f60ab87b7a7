// Loads the CPU addon. STEPSCOPE_ADDON names an explicit .node file (the
// sanitizer build uses it); otherwise node-gyp-build finds build/Release.
import * as path from 'node:path';
import type * as Binding from '../binding';

export type Addon = typeof Binding;

let cached: Addon | undefined;

export function addon(): Addon {
  if (cached) return cached;
  // OpenBLAS's worker threads otherwise spin for ~0.1 s after each call,
  // taking a core from whatever kernel runs next (seen as 2x outliers in the
  // benchmarks). Must be set before the library loads; a user's value wins.
  process.env.OPENBLAS_THREAD_TIMEOUT ??= '4';
  // Promise-returning native calls (stream synchronize, each batch in flight
  // with --prefetch) each wait on a libuv pool thread; libuv's default of 4
  // would queue a stream's synchronize behind prefetched batches. Read by
  // libuv when its pool first starts; a user's value wins.
  process.env.UV_THREADPOOL_SIZE ??= '16';
  const explicit = process.env.STEPSCOPE_ADDON;
  const root = path.resolve(__dirname, '..', '..');
  if (explicit) {
    cached = require(path.resolve(explicit)) as Addon;
  } else {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => unknown;
    cached = load(root) as Addon;
  }
  return cached;
}
