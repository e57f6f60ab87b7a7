// Parsing and validation of user options. Every error names the bad value
// and what is allowed (UsageError: exit code 2 from the CLI).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from './errors';

export function parseInteger(option: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${option} '${value}' is not allowed: an integer from ${min} to ${max}`);
  }
  return n;
}

export function parseNumber(option: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`${option} '${value}' is not allowed: a number from ${min} to ${max}`);
  }
  return n;
}

/**
 * A comma-separated choice from `allowed`, or `all` (which means `allForAll`).
 * Duplicates are dropped; order follows the user's list.
 */
export function parseChoiceList(
  option: string,
  value: string,
  allowed: readonly string[],
  allForAll: readonly string[] = allowed,
): string[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError(`${option} is empty: allowed all, or one or more of ${allowed.join(', ')}`);
  if (items.length === 1 && items[0] === 'all') return [...allForAll];
  const bad = items.filter((i) => !allowed.includes(i));
  if (bad.length > 0) {
    throw new UsageError(
      `${option}: unknown ${bad.map((b) => `'${b}'`).join(', ')}; allowed: all, ${allowed.join(', ')}`,
    );
  }
  return [...new Set(items)];
}

/** Exactly one of `allowed` (no list, no `all`). */
export function parseChoice<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  const v = value.trim();
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`${option} '${value}' is not allowed: one of ${allowed.join(', ')}`);
  }
  return v as T;
}

/** DDP-style bucket sizes from --bucket-mb and --first-bucket-mb, in bytes. */
export function parseBuckets(opts: { bucketMb: string; firstBucketMb: string }): { bucketBytes: number; firstBucketBytes: number } {
  return {
    bucketBytes: parseNumber('--bucket-mb', opts.bucketMb, 0.001, 4096) * 2 ** 20,
    firstBucketBytes: parseNumber('--first-bucket-mb', opts.firstBucketMb, 0.001, 4096) * 2 ** 20,
  };
}

/** Options that name a file the command writes at the end: checked before any work, so no result is lost. */
export const OUTPUT_FILE_OPTIONS = { report: '--report', save: '--save', trace: '--trace', saveWeights: '--save-weights', savePlan: '--save-plan' } as const;

export function checkOutputFile(option: string, file: string): void {
  const dir = path.dirname(path.resolve(file));
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new UsageError(`${option} '${file}' is not allowed: its directory '${dir}' does not exist`);
  }
  if (!stat.isDirectory()) throw new UsageError(`${option} '${file}' is not allowed: '${dir}' is not a directory`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`${option} '${file}' is not allowed: the directory '${dir}' is not writable`);
  }
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new UsageError(`${option} '${file}' is not allowed: it is a directory`);
}
