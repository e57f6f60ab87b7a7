// Profiles: editable JSON presets of how a step is run (a plan of kernels,
// the input pipeline, the reduction schedule). Two ship in profiles/
// (pytorch-like, tf-like); a user's own is any file of the same form.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../errors';

export interface Profile {
  format: 'stepscope-profile';
  version: 1;
  name: string;
  description: string;
  /** 'autotune' (time every candidate per layer), 'default', or a plan {ops, layers}. */
  kernels: 'autotune' | 'default' | { ops?: Record<string, string>; layers?: Record<string, string> };
  layout: 'auto' | 'nchw' | 'nChw16c';
  data: { kind: 'synthetic' | 'raw' | 'records'; prefetch: number; threads: number };
  reduction: { schedule: 'serialized' | 'overlapped'; bucketMb: number; firstBucketMb: number };
}

export const PROFILES_DIR = path.resolve(__dirname, '..', '..', '..', 'profiles');

export function shippedProfiles(): string[] {
  return fs.readdirSync(PROFILES_DIR).filter((f) => f.endsWith('.json')).map((f) => f.replace(/\.json$/, '')).sort();
}

/** A shipped profile by name, or a profile file by path. */
/** The file a profile is read from: a path, or the name of a shipped profile. */
export function profileFile(nameOrPath: string): string {
  return fs.existsSync(nameOrPath) ? nameOrPath : path.join(PROFILES_DIR, `${nameOrPath}.json`);
}

export function loadProfile(nameOrPath: string): Profile {
  const file = profileFile(nameOrPath);
  if (!fs.existsSync(file)) throw new UsageError(`profile '${nameOrPath}' is neither a file nor a shipped profile (${shippedProfiles().join(', ')})`);
  let p: Profile;
  try {
    p = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`profile '${file}' is not valid JSON: ${(err as Error).message}`);
  }
  const bad = (what: string, allowed: string) => new UsageError(`profile '${file}': ${what} is not allowed; ${allowed}`);
  if (p.format !== 'stepscope-profile') throw bad(`format ${JSON.stringify(p.format)}`, 'expected "stepscope-profile"');
  if (p.version !== 1) throw bad(`version ${JSON.stringify(p.version)}`, 'this stepscope reads version 1');
  if (typeof p.name !== 'string' || !p.name) throw bad('a missing name', 'give "name"');
  if (!(p.kernels === 'autotune' || p.kernels === 'default' || (typeof p.kernels === 'object' && p.kernels !== null))) throw bad(`kernels ${JSON.stringify(p.kernels)}`, 'use "autotune", "default" or a plan {"ops": {...}, "layers": {...}}');
  if (!['auto', 'nchw', 'nChw16c'].includes(p.layout)) throw bad(`layout ${JSON.stringify(p.layout)}`, 'use auto, nchw or nChw16c');
  if (!p.data || !['synthetic', 'raw', 'records'].includes(p.data.kind)) throw bad(`data.kind ${JSON.stringify(p.data?.kind)}`, 'use synthetic, raw or records');
  if (!Number.isInteger(p.data.prefetch) || p.data.prefetch < 0 || p.data.prefetch > 64) throw bad(`data.prefetch ${JSON.stringify(p.data.prefetch)}`, 'use an integer 0..64');
  if (!Number.isInteger(p.data.threads) || p.data.threads < 1 || p.data.threads > 256) throw bad(`data.threads ${JSON.stringify(p.data.threads)}`, 'use an integer 1..256');
  if (!p.reduction || !['serialized', 'overlapped'].includes(p.reduction.schedule)) throw bad(`reduction.schedule ${JSON.stringify(p.reduction?.schedule)}`, 'use serialized or overlapped');
  for (const k of ['bucketMb', 'firstBucketMb'] as const) {
    if (!(typeof p.reduction[k] === 'number' && p.reduction[k] > 0)) throw bad(`reduction.${k} ${JSON.stringify(p.reduction[k])}`, 'use a positive number of MB');
  }
  return p;
}
