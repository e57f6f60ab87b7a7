// Parsing and validation of user options. Every error names the bad value
// and what is allowed (UsageError: exit code 2 from the CLI).
import type { Command } from 'commander';
import * as fs from 'node:fs';
import { isSystemError, OutputError, UsageError } from './errors';
import { writeJsonAtomic, writeTextAtomic } from './io/json-file';

/** Decimal digits only: no 0x/0b/0o prefix, no exponent, no fraction. */
const DECIMAL_INTEGER = /^\s*-?\d+\s*$/;
/** A decimal number with an optional fraction and exponent (0.1, .5, 1e-3): no 0x/0b/0o prefix, no Infinity. */
const DECIMAL_NUMBER = /^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$/;

export function parseInteger(option: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!DECIMAL_INTEGER.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${option} '${value}' is not allowed: an integer from ${min} to ${max}`);
  }
  return n;
}

export function parseNumber(option: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!DECIMAL_NUMBER.test(value) || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`${option} '${value}' is not allowed: a decimal number from ${min} to ${max}`);
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
  if (items.includes('all') && !allowed.includes('all')) {
    throw new UsageError(`${option} '${value}' is not allowed: 'all' stands alone (it already means every one); otherwise give names from the list without 'all'`);
  }
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

/** A modeled link's bandwidth, GB/s (--link), the same range on every command. */
export const LINK_GBPS = { min: 0.001, max: 10000 } as const;

/** A gradient bucket's size, MB (--bucket-mb, --first-bucket-mb; a profile's reduction), the same range everywhere. */
export const BUCKET_MB = { min: 0.001, max: 4096 } as const;

/** DDP-style bucket sizes from --bucket-mb and --first-bucket-mb, in bytes. */
export function parseBuckets(opts: { bucketMb: string; firstBucketMb: string }): { bucketBytes: number; firstBucketBytes: number } {
  return {
    bucketBytes: parseNumber('--bucket-mb', opts.bucketMb, BUCKET_MB.min, BUCKET_MB.max) * 2 ** 20,
    firstBucketBytes: parseNumber('--first-bucket-mb', opts.firstBucketMb, BUCKET_MB.min, BUCKET_MB.max) * 2 ** 20,
  };
}

/** Options that name a file the command writes at the end: checked before any work, so no result is lost. */
export const OUTPUT_FILE_OPTIONS = { report: '--report', save: '--save', trace: '--trace', saveWeights: '--save-weights', savePlan: '--save-plan' } as const;

/** One line of every command's help: the rules guardOptionValues enforces. */
export const OPTION_RULES_HELP =
  '\nAn option that takes a value needs one: not empty, and not the next option (a value may not start with --). ' +
  'An option given twice counts once, the last value, except --kernels: its op=variant lists add up.';

/**
 * For every option of `cmd` and its subcommands that takes a value: refuses a
 * value that is another option (`--save --json`: a missing value, else
 * commander takes the next flag as it), joins a repeated --kernels (else the
 * last list silently replaced the first), and, on the commands `refuseEmpty` names, an empty value
 * (else `if (opts.x)` reads it as not given; commands that check their own
 * empty values, with what is allowed, are left to do so). In one place.
 */
export function guardOptionValues(cmd: Command, refuseEmpty: (cmd: Command) => boolean = () => true): void {
  let guarded = false;
  const outputFiles = Object.values(OUTPUT_FILE_OPTIONS) as string[];
  for (const option of cmd.options) {
    if (!option.required && !option.optional) continue; // a flag: no value
    guarded = true;
    const name = option.long ?? option.short ?? option.flags;
    const key = option.attributeName();
    const own = option.parseArg;
    option.argParser((value: string, previous: unknown) => {
      if (value.trim() === '' && refuseEmpty(cmd)) {
        throw new UsageError(`${name} '${value}' is not allowed: ${outputFiles.includes(name) ? 'give a file name' : 'give a value'}`);
      }
      if (value.startsWith('--') || cmd.options.some((o) => o.short === value) || value === '-h') {
        throw new UsageError(`${name} needs a value, got the option '${value}'`);
      }
      // --kernels lists compose: given twice, both apply (a plan file cannot be joined). Any other option given twice: the last counts.
      if (name === '--kernels' && cmd.getOptionValueSource(key) === 'cli') {
        const pairs = (v: string) => v.includes('=') && !fs.existsSync(v);
        if (!pairs(String(previous)) || !pairs(value)) {
          throw new UsageError(`${name} is given twice ('${String(previous)}', then '${value}'): a file (a plan, a saved run, a benchmark) cannot be combined with another --kernels; give one`);
        }
        return `${String(previous)},${value}`;
      }
      return own ? own.call(option, value, previous) : value;
    });
  }
  if (guarded) cmd.addHelpText('after', OPTION_RULES_HELP);
  for (const sub of cmd.commands) guardOptionValues(sub, refuseEmpty);
}

/** The options (attribute names, e.g. 'latency') the user gave on the command line, not left at their default. */
export function givenOptions(cmd: Command): Set<string> {
  return new Set(cmd.options.map((o) => o.attributeName()).filter((key) => cmd.getOptionValueSource(key) === 'cli'));
}

/**
 * Writes a command's output files one after the other: a file that cannot be
 * written (ENOSPC, EACCES, EROFS...) does not stop the others or the printed
 * result; finish() then reports every failure (OutputError: exit code 1).
 */
export class OutputWriter {
  private readonly failures: string[] = [];

  /** Whether the file was written. */
  write(option: string, file: string, write: () => void): boolean {
    try {
      write();
      return true;
    } catch (err) {
      if (!isSystemError(err)) throw err; // a bug, not the file system
      this.failures.push(`${option} '${file}' was not written: ${err.message}`);
      return false;
    }
  }

  /** A text output, when its option was given: written as write() writes (content built inside, so its failure is collected too). */
  text(option: string, file: string | undefined, content: () => string): boolean {
    return file ? this.write(option, file, () => writeTextAtomic(file, content())) : false;
  }

  /** A JSON output, when its option was given. */
  json(option: string, file: string | undefined, content: () => unknown): boolean {
    return file ? this.write(option, file, () => writeJsonAtomic(file, content())) : false;
  }

  /** After every output: the failed writes as one error, if any. */
  finish(): void {
    if (this.failures.length > 0) throw new OutputError(this.failures.join('; '));
  }
}
