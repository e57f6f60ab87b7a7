// Loads the CUDA addon lazily, and only when asked: a missing or broken CUDA
// build (no nvcc at install time, a missing libcudnn.so.9, no driver) becomes
// a reason string, never an exception on the CPU path.
// STEPSCOPE_CUDA_ADDON names an explicit .node file; otherwise build/stepscope_cuda.node.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as CudaBinding from '../binding-cuda';
import type { KernelRecord } from '../binding';
import type { CudaInfo } from '../binding-cuda';
import { addon } from './native';

export type CudaAddon = typeof CudaBinding;

export interface CudaStatus {
  /** The addon loaded (versions are known), whether or not a device is usable. */
  loaded: boolean;
  /** A device is usable: the CUDA backend can run. */
  available: boolean;
  /** Why not, when !available. */
  reason?: string;
  addonPath: string;
  info?: CudaInfo;
}

const ROOT = path.resolve(__dirname, '..', '..');
let cached: { addon?: CudaAddon; reason?: string } | undefined;

export function cudaAddonPath(): string {
  const explicit = process.env.STEPSCOPE_CUDA_ADDON;
  return explicit ? path.resolve(explicit) : path.join(ROOT, 'build', 'stepscope_cuda.node');
}

/** Why the addon was not built, as scripts/build-cuda.js recorded it. */
function buildReason(): string {
  try {
    const status = JSON.parse(fs.readFileSync(path.join(ROOT, 'build', 'cuda-status.json'), 'utf8')) as { built: boolean; reason?: string };
    if (!status.built && status.reason) return `CUDA addon not built: ${status.reason}`;
  } catch {
    // no record: the build script never ran
  }
  return `CUDA addon not built (${path.relative(process.cwd(), cudaAddonPath()) || cudaAddonPath()} is missing): run \`node scripts/build-cuda.js\` on a machine with nvcc`;
}

function load(): { addon?: CudaAddon; reason?: string } {
  if (cached) return cached;
  const file = cudaAddonPath();
  if (!fs.existsSync(file)) {
    cached = { reason: buildReason() };
  } else {
    try {
      cached = { addon: require(file) as CudaAddon };
    } catch (err) {
      // e.g. "libcudnn.so.9: cannot open shared object file"
      cached = { reason: `CUDA addon failed to load: ${(err as Error).message.split('\n')[0]}` };
    }
  }
  return cached;
}

export function cudaStatus(): CudaStatus {
  const { addon, reason } = load();
  const addonPath = cudaAddonPath();
  if (!addon) return { loaded: false, available: false, reason, addonPath };
  const info = addon.cudaInfo();
  return info.available
    ? { loaded: true, available: true, addonPath, info }
    : { loaded: true, available: false, reason: `no usable GPU: ${info.reason}`, addonPath, info };
}

/** The loaded addon (even without a device: variant tables, versions), or undefined with the reason. */
export function cudaAddonIfLoaded(): CudaAddon | undefined {
  return load().addon;
}

/** The addon for work on a device; throws (code ERR_NO_DEVICE) with the reason otherwise. */
export function cudaAddon(): CudaAddon {
  const status = cudaStatus();
  if (!status.available) {
    throw Object.assign(new Error(`the CUDA backend is unavailable: ${status.reason}`), { code: 'ERR_NO_DEVICE' });
  }
  return load().addon!;
}

let clockOffset: number | undefined;

/**
 * Drains the CUDA timeline onto the CPU addon's clock, so CUDA and CPU
 * records share one time axis. Both addons count steady-clock nanoseconds
 * from their own load; the offset between them is measured once.
 */
export function cudaTimelineDrain(): KernelRecord[] {
  const cuda = cudaAddon();
  if (clockOffset === undefined) {
    const cpu = addon();
    clockOffset = cpu.nowNs() - cuda.nowNs();
  }
  const offset = clockOffset;
  return cuda.timelineDrain().map((r) => ({ ...r, startNs: r.startNs + offset, endNs: r.endNs + offset }));
}
