// Replays a StepModel: the compute stream runs its tasks in order (each after
// its host gap); the reduction runs per bucket, on the compute stream after
// backward (serialized) or on a communication stream as soon as the bucket's
// last gradient is ready (overlapped, the optimizer waiting for all buckets).
// While both streams run, each progresses at the slower rate the run's
// contention measurement gave, host gaps as well as kernels (a fluid model:
// rates change at every start and end).
// The result is a timeline in the same form as a recorded one, so the same
// breakdown applies to predictions and measurements.
import type { KernelRecord } from '../../binding';
import { breakdown, type Breakdown } from '../analysis/breakdown';
import { LOCAL_STAND_IN_LIMIT } from '../run/executor';
import { kappaFor } from '../run/contention';
import type { IterationMarks } from '../run/kernel-stats';
import { assignBuckets, type Bucket } from '../schedule/buckets';
import { linkHoldSeconds } from '../schedule/link-hold';
import type { StepModel } from './step-model';

interface SimTask {
  op: string;
  pass: string;
  layer: string;
  variant: string;
  /** Work in ms at full speed; the host gap before it is the stream thread's work too (slowed alike). */
  ms: number;
  gapMs: number;
  /** Uses the cores (slowed by, and slowing, the other stream). */
  cpu: boolean;
  /** Waits for these tasks (indices into the task list) to end. */
  after: number[];
}

export interface Prediction {
  breakdown: Breakdown;
  timeline: KernelRecord[];
  marks: IterationMarks;
  buckets: Bucket[];
}

/** Per bucket: its all-reduce kernels (one per gradient; NCCL: one per bucket) and the modeled link's hold. */
function bucketTasks(model: StepModel, b: Bucket, bytesOf: Map<string, number>): Omit<SimTask, 'after'>[] {
  const c = model.comm;
  const tasks: Omit<SimTask, 'after'>[] = [];
  if (c.comm === 'nccl') {
    // One grouped launch per bucket, on the GPU's copy engines and a few SMs (not the host's cores).
    // The run's own time of bucket N only while bucket N holds what it held, at the run's worker count.
    const sameBuckets = c.measuredBuckets?.bucketMb === c.bucketMb && c.measuredBuckets?.firstBucketMb === c.firstBucketMb && c.workers === c.allreduce.fitWorkers;
    const own = sameBuckets ? c.measuredMs?.[`bucket${b.index}`] : undefined;
    const ms = own ?? c.allreduce.fixedMs + b.bytes * c.allreduce.msPerByte;
    tasks.push({ op: 'allreduce', pass: 'comm', layer: `bucket${b.index}`, variant: 'nccl', ms, gapMs: 0, cpu: false });
  } else if (c.comm !== 'none') {
    // The local communicator sums min(W, 16) buffers: work grows with that count.
    const scale = c.comm === 'local' ? Math.min(c.workers, LOCAL_STAND_IN_LIMIT) / Math.max(1, Math.min(c.allreduce.fitWorkers, LOCAL_STAND_IN_LIMIT)) : 1;
    for (const p of b.params) {
      const bytes = bytesOf.get(p)!;
      const own = c.measuredMs?.[p];
      const ms = own !== undefined ? own * scale : c.allreduce.fixedMs + bytes * c.allreduce.msPerByte * scale;
      tasks.push({ op: 'allreduce', pass: 'comm', layer: p, variant: c.comm, ms, gapMs: 0, cpu: true });
    }
  }
  if (c.link && c.workers > 1) {
    const ms = linkHoldSeconds(b.bytes, c.workers, c.link) * 1e3;
    tasks.push({ op: 'link', pass: 'comm', layer: `bucket${b.index}`, variant: 'fast', ms, gapMs: 0, cpu: false });
  }
  return tasks;
}

export function replay(model: StepModel): Prediction {
  const c = model.comm;
  const reduce = c.workers > 1;
  const buckets = reduce
    ? assignBuckets(model.gradients.map((g) => ({ name: g.param, size: g.bytes / 4 })), { bucketBytes: c.bucketMb * 2 ** 20, firstBucketBytes: c.firstBucketMb * 2 ** 20 })
    : [];
  const bytesOf = new Map(model.gradients.map((g) => [g.param, g.bytes]));
  for (const b of buckets) bytesOf.set(`bucket${b.index}`, b.bytes); // NCCL's records are per bucket
  const readyAfter = new Map(model.gradients.map((g) => [g.param, g.after]));

  // Streams as task lists; dependencies by index into `all`.
  const all: (SimTask & { stream: 'compute' | 'comm'; phase: string })[] = [];
  const computeIdx: number[] = [];
  const commIdx: number[] = [];
  const computeTaskIndex: number[] = []; // model.compute[i] -> all index
  const push = (t: SimTask, stream: 'compute' | 'comm', phase: string) => {
    all.push({ ...t, stream, phase });
    (stream === 'compute' ? computeIdx : commIdx).push(all.length - 1);
    return all.length - 1;
  };
  const optimizerStart = model.compute.findIndex((t) => t.phase === 'optimizer');
  const beforeOptimizer = optimizerStart < 0 ? model.compute.length : optimizerStart;
  for (let i = 0; i < beforeOptimizer; i++) computeTaskIndex.push(push({ ...model.compute[i], cpu: true, after: [] }, 'compute', model.compute[i].phase));
  const commEnds: number[] = [];
  for (const b of buckets) {
    const lastReady = Math.max(...b.params.map((p) => readyAfter.get(p)!));
    const tasks = bucketTasks(model, b, bytesOf);
    tasks.forEach((t, j) => {
      if (c.schedule === 'serialized') push({ ...t, after: [] }, 'compute', 'reduction');
      else commEnds.push(push({ ...t, after: j === 0 ? [computeTaskIndex[lastReady]] : [] }, 'comm', 'reduction'));
    });
  }
  for (let i = beforeOptimizer; i < model.compute.length; i++) {
    const waitAll = i === beforeOptimizer && c.schedule === 'overlapped' && commEnds.length > 0 ? [commEnds[commEnds.length - 1]] : [];
    computeTaskIndex.push(push({ ...model.compute[i], cpu: true, after: waitAll }, 'compute', model.compute[i].phase));
  }

  const background = reduce && c.schedule === 'overlapped' ? 1 / (1 + model.contention.uncovered) : 1;
  // Fluid simulation of the two streams.
  const start = new Array<number>(all.length).fill(NaN);
  const end = new Array<number>(all.length).fill(NaN);
  const streams = [
    { list: computeIdx, pos: 0, gapLeft: NaN, workLeft: NaN },
    { list: commIdx, pos: 0, gapLeft: NaN, workLeft: NaN },
  ];
  let t = 0;
  for (let guard = 0; guard < 10 * all.length + 10; guard++) {
    // Start what can start.
    for (const s of streams) {
      if (s.pos >= s.list.length || !Number.isNaN(s.workLeft) || !Number.isNaN(s.gapLeft)) continue;
      const task = all[s.list[s.pos]];
      if (task.after.some((d) => Number.isNaN(end[d]) || end[d] > t + 1e-12)) continue;
      s.gapLeft = task.gapMs;
    }
    for (const s of streams) {
      if (!Number.isNaN(s.gapLeft) && s.gapLeft <= 1e-12) {
        s.gapLeft = NaN;
        s.workLeft = all[s.list[s.pos]].ms;
        start[s.list[s.pos]] = t;
      }
    }
    // A stream in the host gap before its task uses its thread too: it slows and is slowed like the task.
    const running = streams.map((s) => (!Number.isNaN(s.workLeft) || !Number.isNaN(s.gapLeft) ? all[s.list[s.pos]] : undefined));
    if (streams.every((s) => s.pos >= s.list.length)) break;
    // Rates: slowed while a cpu task runs on the other stream; compute in an
    // overlapped arrangement also at the slower rate of its uncovered kernels.
    const rate = running.map((task, i) => {
      const other = running[1 - i];
      const base = i === 0 ? background : 1;
      if (!task || !task.cpu || !other || !other.cpu) return base;
      return base / (1 + (i === 0 ? kappaFor(task.op, model.contention) : model.contention.comm));
    });
    let dt = Infinity;
    streams.forEach((s, i) => {
      if (!Number.isNaN(s.gapLeft)) dt = Math.min(dt, s.gapLeft / rate[i]);
      else if (!Number.isNaN(s.workLeft)) dt = Math.min(dt, s.workLeft / rate[i]);
    });
    if (!Number.isFinite(dt)) {
      // Both streams wait: the earliest dependency decides (cannot happen with a valid model).
      throw new Error('what-if replay: the streams wait on each other (a dependency cycle)');
    }
    t += dt;
    streams.forEach((s, i) => {
      if (!Number.isNaN(s.gapLeft)) s.gapLeft -= dt * rate[i];
      else if (!Number.isNaN(s.workLeft)) {
        s.workLeft -= dt * rate[i];
        if (s.workLeft <= 1e-9) {
          end[s.list[s.pos]] = t;
          s.workLeft = NaN;
          s.pos++;
        }
      }
    });
  }

  const ns = (ms: number) => Math.round(ms * 1e6);
  const timeline: KernelRecord[] = all.map((task, i) => ({
    op: task.op, variant: task.variant, layer: task.layer, pass: task.pass,
    stream: task.stream === 'compute' ? 0 : 1, streamName: task.stream,
    startNs: ns(start[i]), endNs: ns(end[i]), flops: 0, bytes: task.op === 'allreduce' ? bytesOf.get(task.layer) ?? 0 : 0,
  }));
  const lastOf = (phase: string) => Math.max(0, ...all.map((task, i) => (task.phase === phase && task.stream === 'compute' ? end[i] : 0)));
  const forwardEnd = lastOf('forward');
  const backwardEnd = Math.max(forwardEnd, lastOf('backward'));
  const optimizerFirst = optimizerStart < 0 ? -1 : computeTaskIndex[optimizerStart];
  const reduced = optimizerFirst >= 0 ? start[optimizerFirst] - all[optimizerFirst].gapMs : backwardEnd;
  const iterationEnd = Math.max(...end.filter((e) => !Number.isNaN(e)));
  const marks: IterationMarks = { startNs: 0, forwardEndNs: ns(forwardEnd), backwardEndNs: ns(backwardEnd), reducedNs: ns(Math.max(backwardEnd, reduced)), endNs: ns(iterationEnd) };
  return { breakdown: breakdown(timeline, marks, model.dataMs), timeline, marks, buckets };
}
