// --backend cpu|cuda|auto: which backend a command runs on. `cuda` where the
// CUDA backend cannot run is bad input (exit 2, with the reason); `auto`
// prefers CUDA and says when it falls back to the CPU.
import { UsageError } from './errors';
import { cudaStatus } from './native-cuda';

export type Backend = 'cpu' | 'cuda';
export const BACKEND_CHOICES = ['cpu', 'cuda', 'auto'] as const;

export interface BackendChoice {
  backend: Backend;
  /** Set when auto fell back to the CPU: why (print it on stderr). */
  fallback?: string;
}

/**
 * `supportsCuda`: whether this command has a CUDA implementation; if not, the
 * reason (e.g. the step is not implemented on CUDA yet).
 */
export function resolveBackend(value: string, supportsCuda: true | string = true): BackendChoice {
  if (!(BACKEND_CHOICES as readonly string[]).includes(value)) {
    throw new UsageError(`--backend '${value}' is not allowed: allowed ${BACKEND_CHOICES.join(', ')}`);
  }
  const choice = value as (typeof BACKEND_CHOICES)[number];
  if (choice === 'cpu') return { backend: 'cpu' };
  const status = cudaStatus();
  const why = !status.available ? status.reason! : supportsCuda === true ? undefined : supportsCuda;
  if (why === undefined) return { backend: 'cuda' };
  if (choice === 'cuda') throw new UsageError(`--backend cuda is unavailable: ${why}; allowed here: cpu, auto`);
  return { backend: 'cpu', fallback: `--backend auto: using cpu (${why})` };
}
