// Where an output really goes, and whether it can go there. A path the user
// names may be a symlink (the output goes to its target, which stays a
// symlink's target), a device, a fifo or a /proc/self/fd entry (written
// directly: renaming over them would replace them with a regular file), or
// a regular file or nothing yet (written atomically: a temp file beside it,
// then a rename). Directories the commands fill are checked up front.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../errors';

/** How an output is written: `atomic` (temp file + rename onto `target`) or `direct` (opened and written in place). */
export interface OutputTarget {
  mode: 'atomic' | 'direct';
  /** The path written: the end of the symlink chain (atomic), or the path as given (direct). */
  target: string;
  /** The mode bits of the file replaced (atomic), kept on the new one. */
  keepMode?: number;
}

const MAX_LINKS = 40;

/** The end of a chain of symlinks from `file`: the first path that is not a symlink (it may not exist). */
export function followLinks(file: string): string {
  let p = path.resolve(file);
  for (let i = 0; i < MAX_LINKS; i++) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return p; // not there (yet): a dangling link's target is created
    }
    if (!st.isSymbolicLink()) return p;
    p = path.resolve(path.dirname(p), fs.readlinkSync(p));
  }
  throw new UsageError(`'${file}' is not allowed as an output: more than ${MAX_LINKS} symlinks in a chain (a loop?)`);
}

/** A path under /dev or /proc: written in place, never renamed over (e.g. /dev/stdout, /dev/fd/3, /proc/self/fd/1). */
function isSpecialTree(p: string): boolean {
  return /^\/(dev|proc)(\/|$)/.test(p);
}

/**
 * How `file` is written. Throws a UsageError for an empty path or a
 * directory (named with `option`, e.g. '--save', when given).
 */
export function outputTarget(file: string, option?: string): OutputTarget {
  const name = option ? `${option} '${file}'` : `output '${file}'`;
  if (file.trim() === '') throw new UsageError(`${option ? `${option} '${file}'` : `an output path '${file}'`} is not allowed: give a file name`);
  if (file === '-') return { mode: 'direct', target: '/dev/stdout' }; // the usual name for stdout
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file); // follows symlinks
  } catch {
    st = undefined;
  }
  if (st?.isDirectory()) throw new UsageError(`${name} is not allowed: it is a directory; give a file name`);
  if (st && !st.isFile()) return { mode: 'direct', target: file }; // a device, fifo or socket: written in place
  const target = followLinks(file);
  if (isSpecialTree(path.resolve(file)) || isSpecialTree(target)) {
    // /dev/stdout, /proc/self/fd/1: written in place; a new file cannot be made there.
    if (!st) throw new UsageError(`${name} is not allowed: no file can be created under /dev or /proc`);
    return { mode: 'direct', target: file };
  }
  return { mode: 'atomic', target, keepMode: st ? st.mode & 0o7777 : undefined };
}

/**
 * Refuses, before any work, an output path that could not be written at the
 * end: empty, a directory, or (for a file written atomically) in a directory
 * that is missing, not a directory, or not writable.
 */
export function checkOutputTarget(option: string, file: string): void {
  const t = outputTarget(file, option);
  if (t.mode === 'direct') return;
  checkTargetDirectory(file, t.target, (why) => new UsageError(`${option} '${file}' is not allowed: ${why}`));
}

/** How the messages name a symlink's target (nothing when `file` is no link). */
export function viaLink(file: string, target: string): string {
  return target === path.resolve(file) ? '' : ` (the symlink's target '${target}')`;
}

/** The directory `target` (the end of `file`'s symlink chain) goes in: it exists, is a directory, and takes a new file. */
export function checkTargetDirectory(file: string, target: string, bad: (why: string) => Error): void {
  const dir = path.dirname(target);
  const via = viaLink(file, target);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw bad(`its directory '${dir}'${via} does not exist`);
  }
  if (!st.isDirectory()) throw bad(`'${dir}'${via} is not a directory`);
  if (!canWriteIn(dir)) throw bad(`the directory '${dir}'${via} is not writable`);
}

/** Whether a file can be created in `dir` (tried: access() says yes to root on read-only trees such as /sys). */
export function canWriteIn(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    return false;
  }
  const probe = path.join(dir, `.stepscope-write-test-${process.pid}-${Date.now()}`);
  try {
    fs.writeFileSync(probe, '', { flag: 'wx' });
  } catch {
    return false;
  }
  try {
    fs.unlinkSync(probe);
  } catch {
    // written, so writable; it was ours to remove
  }
  return true;
}

/** `dir` resolved, the levels missing below its nearest existing ancestor (outermost first), and that ancestor. */
function inspectDirectory(option: string, dir: string): { abs: string; missing: string[]; existing: string } {
  const name = `${option} '${dir}'`;
  if (dir === '') throw new UsageError(`${option} '' is not allowed: give a directory (it is created if missing)`);
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw new UsageError(`${name} is not allowed: a part of the path is a file, not a directory`);
      if (code !== 'ENOENT') throw new UsageError(`${name} is not allowed: cannot look at '${p}' (${code})`);
    }
    if (st) {
      if (!st.isDirectory()) {
        throw new UsageError(p === abs ? `${name} is not allowed: it is a file, not a directory` : `${name} is not allowed: '${p}' is a file, not a directory`);
      }
      return { abs, missing, existing: p };
    }
    missing.unshift(p);
    const parent = path.dirname(p);
    if (parent === p) return { abs, missing, existing: p };
    p = parent;
  }
}

/**
 * Whether `dir` is a writable directory or could be created as one (its
 * nearest existing ancestor is a directory files can be created in),
 * creating nothing. Failures are UsageErrors naming `option` and the path.
 */
export function checkDirectory(option: string, dir: string): void {
  const { missing, existing } = inspectDirectory(option, dir);
  if (canWriteIn(existing)) return;
  throw new UsageError(missing.length === 0
    ? `${option} '${dir}' is not allowed: the directory is not writable; give a writable directory`
    : `${option} '${dir}' is not allowed: cannot create '${missing[0]}' ('${existing}' is not writable); give a writable directory`);
}

/**
 * Makes sure `dir` is a writable directory, creating it (and missing parents)
 * if needed, one level at a time (a recursive mkdir under /proc never returns
 * on some Node versions). Every failure is a UsageError naming `option` and
 * the path. Returns the directories it created, outermost first.
 */
export function ensureDirectory(option: string, dir: string): string[] {
  const name = `${option} '${dir}'`;
  const { abs, missing } = inspectDirectory(option, dir);
  const created: string[] = [];
  const undo = () => {
    for (const c of [...created].reverse()) fs.rmSync(c, { recursive: true, force: true });
  };
  for (const m of missing) {
    try {
      fs.mkdirSync(m);
      created.push(m);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.statSync(m).isDirectory()) continue; // made meanwhile
      undo();
      const why = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? 'permission denied' : code === 'ENOENT' ? 'its parent cannot hold directories' : code ?? 'failed';
      throw new UsageError(`${name} is not allowed: cannot create '${m}' (${why}); give a writable directory`);
    }
  }
  if (!canWriteIn(abs)) {
    undo();
    throw new UsageError(`${name} is not allowed: the directory is not writable; give a writable directory`);
  }
  return created;
}
