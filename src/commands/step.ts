// `stepscope step`: parses and checks the step's options, meets the other
// ranks (Gloo's store, NCCL's unique id) or connects the local GPUs' NCCL
// group, runs the training step once per schedule, and writes what was
// asked for (save, report, trace, JSON, the printed table).
import * as os from 'node:os';
import type { NcclCommunicator } from '../../binding-cuda';
import { resolveBackend, type Backend } from '../backend';
import { cudaAddon } from '../native-cuda';
import { DivergedError, UsageError } from '../errors';
import { addon } from '../native';
import { LINK_GBPS, OutputWriter, parseBuckets, parseChoice, parseInteger, parseNumber } from '../options';
import { htmlReport } from '../report/html-report';
import { pathOf } from './explain';
import { attribute } from '../analysis/attribution';
import { resnet50Graph, type ResNetGraph } from '../model/graph';
import { convVariantsOf, parsePlan } from '../plan/plan';
import { runTraining, type Run } from '../run/training';
import { partialRun, printedRun, type RunUnderWay } from '../run/partial-run';
import { writeOnTermination } from '../io/termination';
import { formatComparison, formatRun } from '../report/run-report';
import { progressBar } from '../report/progress';
import { CROSS_PROCESS_COMM, graphProblem, type Communicator, type ReductionOptions } from '../run/executor';
import { chromeTrace } from '../report/trace';
import { gatherTimelines, type GatherAddon, type RankTimeline } from '../run/gather';
import { shareFromRankZero, type RendezvousPlace } from '../comm/rendezvous';
import { GRAPH_WITH_GPUS, LocalNcclGroup } from '../comm/local-nccl';
import { checkDataOptions, type DataKind, type DataOptions } from '../data/pipeline';

/** This process among the ranks (gloo or nccl), and where the ranks meet. */
type RankPlace = RendezvousPlace;

export interface StepOpts {
  backend: string;
  dtype: string;
  batch: string;
  iterations: string;
  warmup: string;
  resolution: string;
  classes: string;
  width: string;
  kernels?: string;
  weights?: string;
  saveWeights?: string;
  savePlan?: string;
  input?: string;
  lr: string;
  momentum: string;
  weightDecay: string;
  seed: string;
  save?: string;
  json?: boolean;
  layout: string;
  workers: string;
  schedule: string;
  /** Left out: local (or, with --gpus 2 or more, nccl). */
  comm?: string;
  gpus: string;
  link?: string;
  latency: string;
  bucketMb: string;
  firstBucketMb: string;
  compare?: boolean;
  trace?: string;
  report?: string;
  commTimeoutMs: string;
  enqueueProbe?: boolean;
  graph?: boolean;
  data: string;
  dataset?: string;
  dataThreads: string;
  prefetch: string;
  onBadImage: string;
  /** The options given on the command line (attribute names, e.g. 'latency'); left out, none counts as given. */
  given?: ReadonlySet<string>;
}

export const DEFAULT_DATA_THREADS = String(Math.min(8, os.availableParallelism()));

export function parseOnBadImage(value: string): 'skip' | 'fail' {
  return parseChoice('--on-bad-image', value, ['skip', 'fail'] as const);
}

function parseDataOptions(opts: StepOpts): DataOptions {
  const data: DataOptions = {
    kind: parseChoice('--data', opts.data, ['synthetic', 'raw', 'records'] as const) as DataKind,
    dataset: opts.dataset,
    threads: parseInteger('--data-threads', opts.dataThreads, 1, 256),
    prefetch: parseInteger('--prefetch', opts.prefetch, 0, 64),
    onBadImage: parseOnBadImage(opts.onBadImage),
  };
  checkDataOptions(data);
  if (data.kind !== 'synthetic' && opts.input) throw new UsageError(`--input '${opts.input}' is not allowed with --data ${data.kind}: a fixed batch replaces the dataset`);
  return data;
}

/**
 * With --comm gloo or nccl: this process's place among the ranks, from the
 * torchrun-style variables. The ranks meet in STEPSCOPE_GLOO_STORE (a directory,
 * set by launch) or, without it, at MASTER_ADDR:MASTER_PORT, where rank 0 serves
 * the rendezvous (Gloo's TCP store, or NCCL's unique id).
 */
function rankPlace(comm: 'gloo' | 'nccl'): RankPlace {
  const { RANK, WORLD_SIZE, STEPSCOPE_GLOO_STORE, MASTER_ADDR, MASTER_PORT } = process.env;
  if (RANK === undefined || WORLD_SIZE === undefined || (!STEPSCOPE_GLOO_STORE && (!MASTER_ADDR || !MASTER_PORT))) {
    throw new UsageError(`--comm ${comm} needs RANK and WORLD_SIZE, and MASTER_ADDR and MASTER_PORT (rank 0 serves the rendezvous there) or STEPSCOPE_GLOO_STORE (a directory all ranks share): on one machine, start the ranks with \`stepscope launch -n N -- step ...\``);
  }
  const size = parseInteger('WORLD_SIZE', WORLD_SIZE, 1, 1024);
  const rank = parseInteger('RANK', RANK, 0, size - 1);
  if (STEPSCOPE_GLOO_STORE) return { rank, size, store: { storePath: STEPSCOPE_GLOO_STORE } };
  return { rank, size, store: { storeHost: MASTER_ADDR!, storePort: parseInteger('MASTER_PORT', MASTER_PORT!, 1, 65535) } };
}

/** The address this rank's Gloo pairs listen on: loopback when the store is local, else this host's name. */
function glooHostname(place: RankPlace): string {
  if (process.env.STEPSCOPE_GLOO_HOST) return process.env.STEPSCOPE_GLOO_HOST;
  const host = 'storeHost' in place.store ? place.store.storeHost : '127.0.0.1';
  return ['127.0.0.1', 'localhost', '::1'].includes(host) ? '127.0.0.1' : os.hostname();
}

/** Across processes the workers are the ranks: a --workers other than the default must agree with WORLD_SIZE. */
function rankWorkers(comm: 'gloo' | 'nccl', given: string): number {
  const size = rankPlace(comm).size;
  const asked = parseInteger('--workers', given, 1, 100000);
  if (asked !== 1 && asked !== size) {
    throw new UsageError(`--workers ${asked} is not allowed with --comm ${comm} and WORLD_SIZE ${size}: the workers are the ranks (leave --workers out, or give ${size})`);
  }
  return size;
}

/** The communicators of a backend: local, and the one that reduces across processes. */
function parseComm(value: string | undefined, backend: Backend): 'local' | 'gloo' | 'nccl' {
  if (value === undefined) return 'local';
  const cross = CROSS_PROCESS_COMM[backend];
  const other = cross === 'gloo' ? 'nccl' : 'gloo';
  if (value === other) {
    throw new UsageError(`--comm ${value} is not allowed with --backend ${backend}: ${backend === 'cuda' ? 'across GPUs the reduction is NCCL' : 'NCCL reduces across GPUs'}; allowed: local, ${cross}`);
  }
  return parseChoice('--comm', value, ['local', cross] as const);
}

function parseReduction(opts: StepOpts, schedule: 'serialized' | 'overlapped', backend: Backend): ReductionOptions | undefined {
  const comm = parseComm(opts.comm, backend);
  const workers = comm === 'local' ? parseInteger('--workers', opts.workers, 1, 16) : rankWorkers(comm, opts.workers);
  const buckets = parseBuckets(opts);
  const link = parseLink(opts);
  if (workers === 1) return undefined;
  return { workers, schedule, comm, ...buckets, link };
}

function parseLink(opts: StepOpts): ReductionOptions['link'] {
  return opts.link === undefined ? undefined : { gbps: parseNumber('--link', opts.link, LINK_GBPS.min, LINK_GBPS.max), latencyUs: parseNumber('--latency', opts.latency, 0, 1e6) };
}

/**
 * With --backend cuda under launch: rank LOCAL_RANK takes GPU LOCAL_RANK (one
 * rank per GPU, as torchrun users set it), before any stream or buffer.
 */
function selectRankDevice(): void {
  const local = process.env.LOCAL_RANK;
  if (local === undefined) return;
  const cuda = cudaAddon();
  const count = cuda.cudaInfo().deviceCount;
  const index = parseInteger('LOCAL_RANK', local, 0, 1023);
  if (index >= count) {
    throw new UsageError(`LOCAL_RANK ${index} has no GPU: ${count} visible (start at most ${count} rank${count === 1 ? '' : 's'} per machine with --backend cuda)`);
  }
  cuda.setDevice(index);
}

/**
 * --gpus: how many local GPUs this process drives (one replica each), 1
 * without the option. With 2 or more the reduction is NCCL's, in this
 * process: not under launch, not another communicator, not --graph.
 */
function parseGpus(opts: StepOpts, backend: Backend): number {
  // The value first (an integer of 1 or more, or all), then whether this backend can use it.
  if (opts.gpus.trim() !== 'all' && (!/^\s*\d+\s*$/.test(opts.gpus) || !(Number(opts.gpus) >= 1) || Number(opts.gpus) > 1024)) {
    throw new UsageError(`--gpus '${opts.gpus}' is not allowed: an integer from 1 to 1024, or all`);
  }
  if (Number(opts.gpus) === 1) return 1;
  if (backend !== 'cuda') throw new UsageError(`--gpus ${opts.gpus} needs --backend cuda: the cpu backend runs one worker per process (stepscope launch -n N -- step --comm gloo)`);
  const count = cudaAddon().cudaInfo().deviceCount;
  const gpus = opts.gpus.trim() === 'all' ? count : Number(opts.gpus); // checked above
  if (gpus > count) throw new UsageError(`--gpus ${gpus} is not allowed: ${count} GPU${count === 1 ? '' : 's'} visible (allowed 1..${count}, or all)`);
  if (gpus === 1) return 1;
  if (process.env.WORLD_SIZE !== undefined) {
    throw new UsageError(`--gpus ${opts.gpus} is not allowed under launch (WORLD_SIZE ${process.env.WORLD_SIZE}): one process per GPU, or all GPUs in one process, not both`);
  }
  if (opts.comm !== undefined && opts.comm !== 'nccl') throw new UsageError(`--comm ${opts.comm} is not allowed with --gpus ${gpus}: the GPUs of one process reduce with nccl (leave --comm out)`);
  const workers = parseInteger('--workers', opts.workers, 1, 100000);
  if (workers !== 1 && workers !== gpus) throw new UsageError(`--workers ${workers} is not allowed with --gpus ${gpus}: the workers are the GPUs (leave --workers out, or give ${gpus})`);
  if (opts.graph) throw new UsageError(`--graph is not allowed with --gpus ${gpus}: ${GRAPH_WITH_GPUS}`);
  return gpus;
}

/** The NCCL communicator of this rank: rank 0 makes the id, every rank joins with it. */
async function connectNccl(place: RankPlace, timeoutMs: number): Promise<NcclCommunicator> {
  const cuda = cudaAddon();
  const id = await shareFromRankZero(place, 'nccl-unique-id', () => cuda.NcclCommunicator.uniqueId(), timeoutMs);
  const comm = new cuda.NcclCommunicator({ id, rank: place.rank, size: place.size, timeoutMs });
  await comm.connect();
  return comm;
}

export async function runStep(opts: StepOpts, print: (text: string) => void): Promise<void> {
  const { backend, fallback } = resolveBackend(opts.backend);
  if (fallback) process.stderr.write(`stepscope: ${fallback}\n`);
  const gpus = parseGpus(opts, backend);
  const comm = gpus > 1 ? 'nccl' : parseComm(opts.comm, backend);
  // What the CUDA step cannot do is refused before any work.
  if (backend === 'cuda' && opts.enqueueProbe) throw new UsageError('--enqueue-probe is not allowed with --backend cuda: a GPU already runs behind the host');
  const dtypes = backend === 'cuda' ? ['fp32', 'tf32', 'bf16'] : ['fp32'];
  if (!dtypes.includes(opts.dtype)) throw new UsageError(`--dtype '${opts.dtype}' is not allowed on the ${backend} backend: allowed ${dtypes.join(', ')}`);
  const cannotGraph = opts.graph ? graphProblem(backend, parseInteger('--warmup', opts.warmup, 0, 1000)) : null;
  if (cannotGraph) throw new UsageError(cannotGraph); // before any rendezvous
  const batch = parseInteger('--batch', opts.batch, 1, 4096);
  const resolution = parseInteger('--resolution', opts.resolution, 32, 1024);
  const classes = parseInteger('--classes', opts.classes, 2, 100000);
  const width = parseInteger('--width', opts.width, 1, 1024);
  const graph = resnet50Graph({ batch, resolution, width, classes });
  checkBufferSizes(graph, backend, { batch, resolution, width, classes });
  const config = {
    batch, resolution, classes, width,
    iterations: parseInteger('--iterations', opts.iterations, 1, 100000),
    warmup: parseInteger('--warmup', opts.warmup, 0, 1000),
    lr: parseNumber('--lr', opts.lr, 0, 100),
    momentum: parseNumber('--momentum', opts.momentum, 0, 1),
    weightDecay: parseNumber('--weight-decay', opts.weightDecay, 0, 1),
    seed: parseInteger('--seed', opts.seed, 0, 2 ** 31 - 1),
    backend,
    dtype: opts.dtype as 'fp32' | 'tf32' | 'bf16',
    plan: parsePlan(opts.kernels ?? '', graph, backend),
    weights: opts.weights,
    input: opts.input,
    saveWeights: opts.saveWeights,
    savePlan: opts.savePlan,
    layout: parseChoice('--layout', opts.layout, ['auto', 'nchw', 'nChw16c', 'nhwc'] as const),
    enqueueProbeMs: opts.enqueueProbe ? 500 : 0,
    data: parseDataOptions(opts),
    graph: opts.graph === true,
  };
  if (config.layout === 'nChw16c' && backend === 'cpu') checkBlockedChannels(graph, config.plan, width);
  // Checked even where unused, so a typo never passes silently.
  const schedule = parseChoice('--schedule', opts.schedule, ['serialized', 'overlapped'] as const);
  if (opts.compare && givenOption(opts, 'schedule')) throw new UsageError(`--schedule ${schedule} is not allowed with --compare: --compare runs both schedules (serialized, then overlapped)`);
  const schedules = opts.compare ? (['serialized', 'overlapped'] as const) : ([schedule] as const);
  if (opts.compare && comm === 'local' && parseInteger('--workers', opts.workers, 1, 16) < 2) throw new UsageError('--compare needs --workers 2 or more');
  const bar = progressBar(!opts.json);
  const perRun = config.warmup + config.iterations;
  const runs: Run[] = [];
  // A file that cannot be written does not stop the others or the printed result (reported at the end, exit 1).
  const out = new OutputWriter();
  // Under launch, --comm local would make every rank an independent copy of the same run (writing the same files).
  const launched = process.env.WORLD_SIZE !== undefined && Number(process.env.WORLD_SIZE) > 1;
  if (launched && comm === 'local' && gpus === 1) {
    throw new UsageError(`--comm local is not allowed under launch (WORLD_SIZE ${process.env.WORLD_SIZE}): each rank would run its own copy of the step; ` +
      'give --comm gloo (cpu) or --comm nccl (cuda) so the ranks are the workers');
  }
  // Across processes: this rank's place. With --gpus, every rank is in this process.
  const place = comm === 'local' || gpus > 1 ? undefined : rankPlace(comm);
  if (place) rankWorkers(comm as 'gloo' | 'nccl', opts.workers); // refused before any rendezvous
  checkReductionOptions(opts, gpus > 1 ? gpus : place ? place.size : parseInteger('--workers', opts.workers, 1, 16));
  const timeoutMs = parseInteger('--comm-timeout-ms', opts.commTimeoutMs, 100, 3_600_000);
  if (backend === 'cuda') selectRankDevice();
  // NCCL: one communicator (or one local group) for every schedule. Gloo: one rendezvous per schedule (a fresh store prefix keeps runs apart).
  const nccl = place && comm === 'nccl' && place.size > 1 ? await connectNccl(place, timeoutMs) : undefined;
  const localGroup = gpus > 1 ? await LocalNcclGroup.connect(cudaAddon(), [...Array(gpus).keys()], timeoutMs) : undefined;
  // --json stopped by a timeout or Ctrl-C: the runs and iterations so far, marked interrupted (rank 0 prints).
  let current: RunUnderWay | undefined;
  const stopWatching = opts.json && !(place && place.rank > 0)
    ? writeOnTermination((signal) => JSON.stringify(partialRun(signal, runs.map(printedRun), current), null, 2))
    : () => {};
  // The local group is released together (never left to hang) once the runs are done, before anything is
  // printed: its destroy reports a communicator the watchdog aborted during the run (ERR_COMM), which
  // would otherwise end the run as if its gradients were reduced.
  try {
    await runSchedules();
  } catch (err) {
    try {
      localGroup?.destroy();
    } catch {
      // the run's own error is the one to report
    }
    throw err;
  } finally {
    stopWatching();
  }

  async function runSchedules(): Promise<void> {
    let lastComm: { comm: Communicator; native: GatherAddon } | undefined;
    for (const schedule of schedules) {
      const reduction = localGroup
        ? { workers: gpus, schedule, comm: 'nccl' as const, ...parseBuckets(opts), link: parseLink(opts) }
        : parseReduction(opts, schedule, backend);
      if (reduction && place) {
        if (nccl) {
          reduction.communicator = nccl;
          lastComm = { comm: nccl, native: cudaAddon() };
        } else {
          const native = addon();
          const gloo = new native.GlooCommunicator({ ...place.store, storePrefix: schedule, rank: place.rank, size: place.size, timeoutMs, hostname: glooHostname(place) });
          await gloo.connect();
          reduction.communicator = gloo;
          lastComm = { comm: gloo, native };
        }
      }
      const rankSuffix = (file: string | undefined) => (place && place.rank > 0 && file ? `${file}.rank${place.rank}` : file);
      const runConfig = { ...config, reduction, localGroup, rank: place?.rank ?? 0, saveWeights: rankSuffix(config.saveWeights), savePlan: rankSuffix(config.savePlan), outputs: out };
      current = { schedule: reduction?.schedule ?? 'single worker', config: runConfig, iterations: [] };
      const run = await runTraining(runConfig, (f, environment) => {
        current!.iterations.push(f);
        current!.environment = environment;
        const done = runs.length * perRun + f.index + 1;
        bar.update(done / (schedules.length * perRun), `${schedule}: iteration ${f.index + 1}/${perRun}${f.warmup ? ' (warm-up)' : ''}: ${f.totalMs.toFixed(0)} ms, loss ${f.loss.toFixed(4)}`);
      }).catch((err: unknown) => {
        throw diverged(err, opts.weights);
      });
      runs.push(run);
      current = undefined;
    }
    bar.done();
    for (const r of runs) if (r.config.reduction) delete r.config.reduction.communicator; // a native handle, not data
    // Across processes, every rank's timelines go to rank 0's trace (one process per rank and run);
    // with --gpus, every GPU's of this process (the run keeps them).
    let perRank: RankTimeline[][] | undefined;
    let worker = 'rank';
    if (place && (opts.trace || opts.report) && lastComm) {
      perRank = [];
      // One after the other: the ranks must issue the same collectives in the same order.
      for (const run of runs) perRank.push(await gatherTimelines(lastComm.comm, lastComm.native, place.rank, place.size, { timeline: run.timeline, marks: run.marks }));
    } else if (localGroup) {
      perRank = runs.map((run) => [{ timeline: run.timeline, marks: run.marks }, ...(run.replicas?.timelines ?? [])]);
      worker = 'GPU';
    }
    nccl?.destroy(); // every rank, after its last collective (ERR_COMM if it was aborted during the run)
    localGroup?.destroy();
    if (place && place.rank > 0) return out.finish(); // rank 0 reports for all (this rank's own files: here)
    out.json('--save', opts.save, () => (runs.length === 1 ? runs[0] : runs));
    if (opts.report) {
      const named = runs.map((run, i) => ({
        name: run.config.reduction?.schedule ?? 'step', run, path: pathOf(run),
        // Across processes: every other rank's timeline beside rank 0's.
        otherRanks: perRank?.[i].slice(1).map((r, k) => ({ name: `${worker} ${k + 1}`, timeline: r.timeline, marks: r.marks })),
      }));
      out.text('--report', opts.report, () => htmlReport({
        title: `stepscope step: ${runs.map((r) => r.config.reduction?.schedule ?? 'single worker').join(' vs ')}`,
        runs: named,
        attribution: runs.length === 2 ? attribute(runs[0], runs[1]) : undefined,
      }));
    }
    if (opts.trace) {
      const label = (r: Run) => r.config.reduction?.schedule ?? 'single worker';
      const processes = perRank
        ? runs.flatMap((r, i) => perRank![i].map(({ timeline: records }, rank) => ({ rank: i * perRank![i].length + rank, label: `${worker} ${rank} (${label(r)})`, records })))
        : runs.map((r, i) => ({ rank: i, label: `rank 0 (${label(r)})`, records: r.timeline }));
      out.json('--trace', opts.trace, () => chromeTrace(processes));
    }
    if (opts.json) {
      // The final print and the end of the watch in one turn of the event loop (see writeOnTermination).
      print(JSON.stringify(runs.length === 1 ? printedRun(runs[0]) : runs.map(printedRun), null, 2));
      stopWatching();
    } else if (runs.length === 1) {
      print(formatRun(runs[0]));
    } else {
      print(formatComparison(runs[0], runs[1]));
    }
    out.finish();
  }
}

/** The most values one buffer holds: the cpu addon's DeviceBuffer::kMaxCount, the CUDA addon's 32-bit length. */
const MAX_BUFFER_VALUES: Record<Backend, number> = { cpu: 2 ** 33, cuda: 2 ** 31 - 1 };

/**
 * Every activation (and parameter) must fit one buffer of the backend: too
 * large a --batch and --resolution (or --width, --classes) is refused here,
 * naming them, not deep in the addon.
 */
function checkBufferSizes(graph: ResNetGraph, backend: Backend, o: { batch: number; resolution: number; width: number; classes: number }): void {
  const limit = MAX_BUFFER_VALUES[backend];
  const count = (n: number) => n.toLocaleString('en-US');
  let largest = { name: '', values: 0 };
  for (const [name, values] of graph.tensors) if (values > largest.values) largest = { name, values };
  if (largest.values > limit) {
    const perImage = largest.values / o.batch;
    const batches = Math.floor(limit / perImage);
    throw new UsageError(
      `--batch ${o.batch} with --resolution ${o.resolution} is not allowed: the largest activation, '${largest.name}'${largest.name === graph.input ? ' (the input images)' : ''}, ` +
        `would hold ${count(largest.values)} values, more than one ${backend} buffer holds (${count(limit)}); ` +
        (batches >= 1 ? `at --resolution ${o.resolution} (--width ${o.width}) allowed --batch 1 to ${batches}, or a lower --resolution` : `lower --resolution or --width`),
    );
  }
  for (const p of graph.params) {
    const values = p.shape.reduce((a, b) => a * b, 1);
    if (values > limit) {
      throw new UsageError(`--width ${o.width} with --classes ${o.classes} is not allowed: the parameter ${p.name} would hold ${count(values)} values, more than one ${backend} buffer holds (${count(limit)}); lower --width or --classes`);
    }
  }
}

/**
 * --layout nChw16c (oneDNN's blocks of 16 channels) needs every conv's channel
 * counts divisible by 16; they are all multiples of --width. conv1's 3 input
 * channels are exempt: conv1 reads the image in plain NCHW, unpadded. A conv
 * that runs another variant than onednn is left for the step to name.
 */
function checkBlockedChannels(graph: ResNetGraph, plan: ReturnType<typeof parsePlan>, width: number): void {
  for (const n of graph.nodes) {
    if (n.kind !== 'conv') continue;
    if (convVariantsOf(plan, n.name).some((v) => v !== 'onednn')) return;
    const image = n.inputs[0] === graph.input;
    if (n.shape.k % 16 === 0 && (image || n.shape.c % 16 === 0)) continue;
    const channels = image
      ? `${n.name} has ${n.shape.k} output channels (its ${n.shape.c} input channels, the image's, are read in plain NCHW, unpadded, and need not be)`
      : `${n.name} has ${n.shape.c} input and ${n.shape.k} output channels`;
    throw new UsageError(
      `--layout nChw16c needs every conv's channel counts divisible by 16 (oneDNN's blocks of 16 channels); with --width ${width}, ${channels}: ` +
        `allowed --width a multiple of 16 (e.g. ${Math.max(16, 16 * Math.round(width / 16))}), or --layout auto (nchw here) or nchw`,
    );
  }
}

/**
 * The modeled link (--link, --latency) and the reduction's options (--schedule,
 * --bucket-mb, --first-bucket-mb) act on the gradient reduction: every value
 * is checked, and with one worker (no reduction) giving them is refused.
 */
function checkReductionOptions(opts: StepOpts, workers: number): void {
  parseNumber('--latency', opts.latency, 0, 1e6);
  parseBuckets(opts);
  if (opts.link !== undefined) parseNumber('--link', opts.link, LINK_GBPS.min, LINK_GBPS.max);
  if (givenOption(opts, 'latency') && opts.link === undefined) {
    throw new UsageError(`--latency ${opts.latency} needs --link <GB/s>: the latency is the modeled link's (give --link, or leave --latency out)`);
  }
  if (workers > 1) return;
  const unused = [
    opts.link !== undefined ? `--link ${opts.link}` : undefined,
    givenOption(opts, 'schedule') ? `--schedule ${opts.schedule}` : undefined,
    givenOption(opts, 'bucketMb') ? `--bucket-mb ${opts.bucketMb}` : undefined,
    givenOption(opts, 'firstBucketMb') ? `--first-bucket-mb ${opts.firstBucketMb}` : undefined,
  ].filter((x) => x !== undefined);
  if (unused.length > 0) {
    throw new UsageError(`${unused.join(', ')} ${unused.length === 1 ? 'has' : 'have'} no effect with one worker: there is no gradient reduction (give --workers 2 or more, or leave ${unused.length === 1 ? 'it' : 'them'} out)`);
  }
}

/** Whether the user gave the option (attribute name) on the command line, not left it at its default. */
function givenOption(opts: StepOpts, key: string): boolean {
  return opts.given?.has(key) === true;
}

/** A step whose loss is not finite, as a DivergedError (exit 1, no stack) that also names the --weights file; other errors as they are. */
function diverged(err: unknown, weights: string | undefined): unknown {
  if (!(err instanceof DivergedError)) return err;
  return new DivergedError(weights ? `${err.message}, or the --weights file '${weights}' holds non-finite or extreme values` : err.message);
}

