// Why run B's iteration took longer (or shorter) than run A's. Each run's
// saved iteration (the one with the median total) splits exactly into
//   data + forward kernels + backward kernels (alone) + contention
//   + exposed reduction + optimizer kernels + idle/launch gaps,
// where contention is what the compute kernels lost to communication running
// beside them (by the run's contention probe) and idle is the rest of the
// span. The difference of two runs is the difference of these parts, so the
// parts add up to the measured difference.
import type { KernelRecord } from '../../binding';
import { breakdown, intersect } from './breakdown';
import { phaseOf } from '../run/kernel-stats';
import { kappaFor } from '../run/contention';
import type { Run } from '../run/training';

export const PARTS = ['data', 'forward', 'backward', 'contention', 'exposedReduction', 'optimizer', 'idle'] as const;
export type Part = (typeof PARTS)[number];

export const PART_LABELS: Record<Part, string> = {
  data: 'data wait',
  forward: 'forward kernels',
  backward: 'backward kernels',
  contention: 'contention (compute slowed by communication)',
  exposedReduction: 'exposed reduction',
  optimizer: 'optimizer kernels',
  idle: 'idle and launch gaps',
};

export interface Decomposition {
  totalMs: number;
  parts: Record<Part, number>;
}

/** Splits a run's saved iteration into the parts. */
export function decompose(run: Run): Decomposition {
  const records: KernelRecord[] = run.timeline;
  const marks = run.marks;
  const it = run.iterations.find((f) => f.index === run.timelineIteration);
  const dataMs = it?.dataMs ?? run.summary.dataMs.median;
  const b = breakdown(records, marks, dataMs);
  const cpuComm = records.filter((k) => k.pass === 'comm' && k.op === 'allreduce').map((k) => ({ start: k.startNs, end: k.endNs }));
  const parts: Record<Part, number> = { data: dataMs, forward: 0, backward: 0, contention: 0, exposedReduction: b.reductionExposedMs, optimizer: 0, idle: 0 };
  let computeMs = 0;
  for (const k of records) {
    if (k.pass === 'comm') continue;
    const ms = (k.endNs - k.startNs) / 1e6;
    computeMs += ms;
    const phase = phaseOf(k, marks);
    // The share of this kernel's time that communication took from it.
    let lost = 0;
    const kappa = kappaFor(k.op, run.contention);
    if (kappa > 0 && ms > 0) {
      const covered = intersect([{ start: k.startNs, end: k.endNs }], cpuComm).reduce((s, i) => s + (i.end - i.start), 0) / 1e6;
      lost = covered - covered / (1 + kappa);
    }
    parts.contention += lost;
    if (phase === 'forward') parts.forward += ms - lost;
    else if (phase === 'optimizer' || phase === 'reduction') parts.optimizer += ms - lost;
    else parts.backward += ms - lost;
  }
  const spanMs = (marks.endNs - marks.startNs) / 1e6;
  parts.idle = spanMs - computeMs - b.reductionExposedMs;
  return { totalMs: dataMs + spanMs, parts };
}

export interface KernelDifference {
  op: string;
  pass: string;
  layer: string;
  variantA: string;
  variantB: string;
  msA: number;
  msB: number;
}

export interface Attribution {
  a: Decomposition;
  b: Decomposition;
  /** B minus A per part; sums to differenceMs. */
  delta: Record<Part, number>;
  differenceMs: number;
  /** Kernels (matched by op, pass and layer; mean over iterations) that differ most. */
  kernels: KernelDifference[];
  /** Layers (all their compute kernels, mean over iterations) that differ most. */
  layers: { layer: string; msA: number; msB: number }[];
}

export function attribute(a: Run, b: Run, top = 10): Attribution {
  const da = decompose(a), db = decompose(b);
  const delta = Object.fromEntries(PARTS.map((p) => [p, db.parts[p] - da.parts[p]])) as Record<Part, number>;
  const key = (k: { op: string; pass: string; layer: string }) => `${k.op}|${k.pass}|${k.layer}`;
  const sum = (run: Run) => {
    const m = new Map<string, { ms: number; variant: string; op: string; pass: string; layer: string }>();
    for (const k of run.kernels) {
      const e = m.get(key(k)) ?? { ms: 0, variant: k.variant, op: k.op, pass: k.pass, layer: k.layer };
      e.ms += k.meanMs;
      m.set(key(k), e);
    }
    return m;
  };
  const ka = sum(a), kb = sum(b);
  const kernels: KernelDifference[] = [];
  for (const k of new Set([...ka.keys(), ...kb.keys()])) {
    const x = ka.get(k), y = kb.get(k);
    const ref = (x ?? y)!;
    kernels.push({ op: ref.op, pass: ref.pass, layer: ref.layer, variantA: x?.variant ?? '-', variantB: y?.variant ?? '-', msA: x?.ms ?? 0, msB: y?.ms ?? 0 });
  }
  kernels.sort((p, q) => Math.abs(q.msB - q.msA) - Math.abs(p.msB - p.msA));
  const perLayer = new Map<string, { layer: string; msA: number; msB: number }>();
  const addLayer = (run: Run, side: 'msA' | 'msB') => {
    for (const k of run.kernels) {
      if (k.pass === 'comm' || !k.layer) continue;
      const e = perLayer.get(k.layer) ?? { layer: k.layer, msA: 0, msB: 0 };
      e[side] += k.meanMs;
      perLayer.set(k.layer, e);
    }
  };
  addLayer(a, 'msA');
  addLayer(b, 'msB');
  const layers = [...perLayer.values()].sort((p, q) => Math.abs(q.msB - q.msA) - Math.abs(p.msB - p.msA)).slice(0, top);
  return { a: da, b: db, delta, differenceMs: db.totalMs - da.totalMs, kernels: kernels.slice(0, top), layers };
}
