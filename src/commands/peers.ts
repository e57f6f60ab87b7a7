// `stepscope peers`: the same ResNet-50 v1.5 training step (batch, size,
// optimizer, threads) in stepscope and, when the user's Python has them, in
// PyTorch and TensorFlow (bench/frameworks_step.py, one child process per
// framework), printed in the same breakdown.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../errors';
import { addon } from '../native';
import { defaultPlan } from '../plan/plan';
import { formatTable } from '../report/table';
import { runTraining, type Run } from '../run/training';

export interface PeerResult {
  name: string;
  version?: string;
  /** Why it did not run (not installed, failed). */
  error?: string;
  totalMs?: number;
  minMs?: number;
  maxMs?: number;
  forwardMs?: number;
  backwardMs?: number;
  optimizerMs?: number;
}

export interface PeersOptions {
  batch: number;
  resolution: number;
  iterations: number;
  warmup: number;
  python: string;
  frameworks: ('pytorch' | 'tensorflow')[];
}

export const DEFAULT_PYTHON = 'python3';

const SCRIPT = path.resolve(__dirname, '..', '..', '..', 'bench', 'frameworks_step.py');

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * --python, before any work: not empty; a path (it has a '/') that is an
 * executable file; or a bare name that an executable on PATH has.
 */
export function checkPython(python: string, option = '--python'): void {
  const bad = (why: string) => new UsageError(`${option} '${python}' is not allowed: ${why}; give the Python that has the frameworks (a command on PATH such as python3, or the path of an executable)`);
  if (python.trim() === '') throw bad('it is empty');
  if (python.includes('/')) {
    let st: fs.Stats;
    try {
      st = fs.statSync(python);
    } catch {
      throw bad('no such file');
    }
    if (st.isDirectory()) throw bad('it is a directory');
    if (!isExecutableFile(python)) throw bad('it is not an executable file');
    return;
  }
  const dirs = (process.env.PATH ?? '').split(path.delimiter);
  if (!dirs.some((dir) => isExecutableFile(path.join(dir || '.', python)))) throw bad('no executable of that name on PATH');
}

export async function runPeers(o: PeersOptions, onProgress?: (what: string) => void): Promise<{ stepscope: Run; peers: PeerResult[] }> {
  // A Python the user named is checked before the step (its minutes are not lost to a typo); without
  // the default python3, the frameworks' rows say so and stepscope's column still prints.
  if (o.python !== DEFAULT_PYTHON) checkPython(o.python);
  onProgress?.('stepscope');
  const run = await runTraining({
    batch: o.batch, resolution: o.resolution, classes: 1000, width: 64, iterations: o.iterations, warmup: o.warmup,
    lr: 0.1, momentum: 0.9, weightDecay: 1e-4, seed: 1, plan: defaultPlan(),
  });
  const threads = addon().buildInfo().threads;
  const peers: PeerResult[] = [];
  for (const fw of o.frameworks) {
    onProgress?.(fw);
    const r = spawnSync(o.python, [SCRIPT, '--framework', fw, '--batch', String(o.batch), '--resolution', String(o.resolution),
      '--iterations', String(o.iterations), '--warmup', String(o.warmup), '--threads', String(threads), '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error) {
      peers.push({ name: fw, error: `cannot run ${o.python}: ${r.error.message}` });
      continue;
    }
    let parsed: { results?: Record<string, { error?: string; version?: string; medianMs: number; minMs: number; maxMs: number; phases: Record<string, { medianMs: number }> | null }> } = {};
    try {
      parsed = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
    } catch {
      parsed = {};
    }
    const res = parsed.results?.[fw];
    if (!res) {
      peers.push({ name: fw, error: `no result (exit ${r.status}): ${r.stderr.trim().split('\n').at(-1) ?? ''}` });
      continue;
    }
    if (res.error) {
      peers.push({ name: fw, error: /No module named/.test(res.error) ? `not installed in ${o.python} (${res.error})` : res.error });
      continue;
    }
    peers.push({
      name: fw, version: res.version, totalMs: res.medianMs, minMs: res.minMs, maxMs: res.maxMs,
      forwardMs: res.phases?.forward.medianMs, backwardMs: res.phases?.backward.medianMs, optimizerMs: res.phases?.optimizer.medianMs,
    });
  }
  return { stepscope: run, peers };
}

export function formatPeers(r: { stepscope: Run; peers: PeerResult[] }, o: PeersOptions): string {
  const s = r.stepscope.summary;
  const cols: PeerResult[] = [
    { name: 'stepscope', totalMs: s.totalMs.median, minMs: s.totalMs.min, maxMs: s.totalMs.max, forwardMs: s.forwardMs.median, backwardMs: s.backwardMs.median, optimizerMs: s.optimizerMs.median },
    ...r.peers,
  ];
  const rows = [
    ['iteration (median)', (p: PeerResult) => p.totalMs],
    ['min', (p: PeerResult) => p.minMs],
    ['max', (p: PeerResult) => p.maxMs],
    ['forward (incl. loss)', (p: PeerResult) => p.forwardMs],
    ['backward', (p: PeerResult) => p.backwardMs],
    ['optimizer', (p: PeerResult) => p.optimizerMs],
  ] as const;
  const out = [
    `ResNet-50 v1.5 training step, cpu, fp32, batch ${o.batch}, ${o.resolution}x${o.resolution}, ${o.iterations} iterations after ${o.warmup} warm-up, synthetic data, single worker`,
    formatTable(rows.map(([label, get]) => ({ label, get })), [
      { header: 'ms', value: (x) => x.label },
      ...cols.map((c) => ({ header: c.version ? `${c.name} ${c.version}` : c.name, value: (x: { get: (p: PeerResult) => number | undefined }) => (c.error ? undefined : x.get(c)), digits: 1 })),
    ]),
  ];
  for (const p of r.peers) {
    if (p.error) out.push(`${p.name}: ${p.error}`);
    else if (p.totalMs) out.push(`${p.name} / stepscope: ${(p.totalMs / s.totalMs.median).toFixed(2)}x`);
  }
  if (r.peers.some((p) => !p.error && p.forwardMs === undefined)) out.push('tensorflow times the whole step as one graph call: no phases (-)');
  return out.join('\n');
}
