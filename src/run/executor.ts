// The training step on one stream: forward, loss, backward and the SGD
// update, enqueued kernel by kernel from the model graph and the plan.
//
// Memory: an activation lives only while a later forward op or a backward
// op still needs it; gradients of activations are freed once consumed. So
// the peak is what backward really needs, as in the frameworks.
// Events: after the backward kernels that produce a parameter's gradient,
// an event is recorded; `gradientEvents` lists them in the order they fire
// (reverse layer order), for the schedules that overlap reduction with backward.
import type { Buffer, ConvKernel, ConvPass, Event, GlooCommunicator, MemoryStats, OpKernel, OpName, Stream } from '../../binding';
import type { Buffer as CudaBuffer, ConvKernel as CudaConvKernel, Graph as CudaGraph, CudaMemoryStats, NcclCommunicator, Stream as CudaStream } from '../../binding-cuda';
import type { CudaAddon } from '../native-cuda';
import type { GraphNode, ResNetGraph } from '../model/graph';
import type { Backend } from '../backend';
import { addon, type Addon } from '../native';
import { cudaAddon } from '../native-cuda';
import { convVariantsOf, variantFor, type Plan, type PlanOp } from '../plan/plan';
import { DivergedError, UsageError } from '../errors';
import type { Bucket } from '../schedule/buckets';
import { gradientBuckets } from '../schedule/link-hold';
import type { LocalNcclGroup } from '../comm/local-nccl';

export interface OptimizerOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
}

/**
 * How the step holds activations. `nChw16c` keeps oneDNN's blocked layout
 * from layer to layer (batch norm and pooling work on it directly), so no
 * convolution pays a reorder of its activations; it needs every conv to be
 * `onednn` and channel counts divisible by 16. `auto` takes it when it can.
 * `nhwc` (CUDA) holds activations channels-last, as PyTorch's channels_last:
 * cuDNN's convolutions (every conv a `cudnn:*` variant), batch norm and
 * pooling in NHWC; the input is transposed once at the start of forward, the
 * weights stay KCRS (the conv kernels transpose them for cuDNN).
 */
export type StepLayout = 'auto' | 'nchw' | 'nChw16c' | 'nhwc';

/** Why `--graph` cannot run (CUDA only; after an eager warm-up iteration), or null. */
export function graphProblem(backend: Backend, warmup: number): string | null {
  if (backend !== 'cuda') return '--graph needs --backend cuda: a CUDA graph replays GPU work; the cpu backend has none';
  if (warmup < 1) return '--graph needs --warmup 1 or more: the libraries set up their workspaces in a first eager iteration, which a graph capture cannot do';
  return null;
}

/**
 * The first convolution a plan runs with one of our own CUDA kernels, or
 * null: NHWC and bf16 need every conv to be cuDNN's (ours take NCHW fp32).
 */
export function firstNonCudnnConv(graph: ResNetGraph, plan: Plan): { layer: string; variant: string } | null {
  for (const n of graph.nodes) {
    if (n.kind !== 'conv') continue;
    const variant = convVariantsOf(plan, n.name).find((x) => !x.startsWith('cudnn:'));
    if (variant !== undefined) return { layer: n.name, variant };
  }
  return null;
}

/**
 * Data-parallel gradient reduction (issue #4): `serialized` reduces every
 * gradient after backward on the compute stream, exclusively; `overlapped`
 * reduces each bucket on a communication stream as soon as the event of its
 * last gradient has fired, while backward goes on. The optimizer waits for all.
 */
export interface ReductionOptions {
  workers: number;
  schedule: 'serialized' | 'overlapped';
  comm: 'local' | 'gloo' | 'nccl';
  /** The connected communicator, with comm 'gloo' or 'nccl' (workers = its size). */
  communicator?: Communicator;
  /** comm 'nccl' with all local GPUs in one process: the group this step's replica reduces in, and its rank there (workers = the group's size). */
  localGroup?: { group: LocalNcclGroup; rank: number };
  bucketBytes: number;
  firstBucketBytes: number;
  /** A modeled link: the stream is held for the ring all-reduce transfer time of each bucket. */
  link?: { gbps: number; latencyUs: number };
}

/**
 * A real communicator across processes: Gloo (CPU addon, one buffer a call)
 * or NCCL (CUDA addon, a bucket's buffers in one grouped call).
 */
export type Communicator = GlooCommunicator | NcclCommunicator;

/**
 * The name of a replica's stream (--gpus): "compute", "comm" on GPU 0 (the
 * replica whose timeline is reported), "compute@gpu1", "comm@gpu1" on GPU 1.
 */
export function replicaStreamName(role: string, device: number): string {
  return device === 0 ? role : `${role}@gpu${device}`;
}

/** Whether a stream of that name is the replica's on `device`. */
export function isReplicaStream(streamName: string, device: number): boolean {
  const at = streamName.indexOf('@gpu');
  return device === 0 ? at < 0 : at >= 0 && streamName.slice(at + 4) === String(device);
}

/** Which communicator each backend reduces across processes with. */
export const CROSS_PROCESS_COMM: Record<Backend, 'gloo' | 'nccl'> = { cpu: 'gloo', cuda: 'nccl' };

/** Workers whose gradients the `local` communicator really sums (the rest only on the modeled link). */
export const LOCAL_STAND_IN_LIMIT = 16;

/** With the enqueue probe: the pause before timing the enqueue (well inside the gate). */
const PROBE_SETTLE_MS = 50;

export function canUseBlocked(graph: ResNetGraph, plan: Plan): string | null {
  for (const n of graph.nodes) {
    if (n.kind !== 'conv') continue;
    const v = convVariantsOf(plan, n.name).find((x) => x !== 'onednn');
    if (v !== undefined) return `conv ${n.name} runs '${v}', which takes NCHW only`;
    if (n.shape.k % 16 || (n.inputs[0] !== graph.input && n.shape.c % 16)) return `conv ${n.name} has channels not divisible by 16`;
  }
  return null;
}

export interface IterationResult {
  loss: number;
  /** Wall-clock phase boundaries on the timeline clock (ns). */
  startNs: number;
  forwardEndNs: number;
  backwardEndNs: number;
  /** When the optimizer could start: all reductions done (= backwardEndNs without reduction). */
  reducedNs: number;
  endNs: number;
  /** The most device (or host) memory held at once: Buffers, and on CUDA the kernels' scratch too. */
  peakBytes: number;
  /** CUDA: the kernels' device scratch held (cuDNN workspaces, weight copies), part of peakBytes. */
  scratchBytes?: number;
  /** Host time spent enqueueing the whole iteration (TypeScript driving the addon). */
  enqueueNs: number;
}

type Kernel = ConvKernel | OpKernel;

/** The events an iteration records at its phase boundaries. */
interface IterationMarkEvents {
  start: Event;
  forward: Event;
  backward: Event;
  reduced: Event;
  end: Event;
}

/** What each node runs, prepared once. */
interface Prepared {
  node: GraphNode;
  forward: Kernel[];
  backward: Kernel[];
  /** bn fused with the ReLU that followed it. */
  fusedRelu: boolean;
}

// Reference-counted activation buffers, so a buffer shared by two consumers is
// given back when the last one is done. Given-back buffers wait in free lists
// (by length) for the next make() of the same length: kernels run in stream
// order, so a later kernel may reuse a buffer whose last reader was enqueued
// before it. After the first iteration no Buffer object is created at all,
// which keeps the host's enqueue cost per kernel low (issue #4: < 5 us).
class Pool {
  private counts = new Map<Buffer, number>();
  private lengths = new Map<Buffer, number>(); // kept here: asking the native side costs a call
  private free = new Map<number, Buffer[]>();
  constructor(
    private stream: Stream,
    /** A new buffer of `length` values (bf16: a CUDA bf16 one), as the step makes them. */
    private allocate: (length: number, bf16: boolean) => Buffer,
  ) {}
  /** bf16: a CUDA bf16 buffer (kept apart from fp32 ones of the same length: the key is -length). */
  make(length: number, bf16 = false): Buffer {
    const key = bf16 ? -length : length;
    let b = this.free.get(key)?.pop();
    if (!b) {
      b = this.allocate(length, bf16);
      this.lengths.set(b, key);
    }
    this.counts.set(b, 1);
    return b;
  }
  retain(b: Buffer): Buffer {
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    return b;
  }
  drop(b: Buffer | undefined): void {
    if (!b) return;
    const c = (this.counts.get(b) ?? 1) - 1;
    if (c > 0) return void this.counts.set(b, c);
    this.counts.delete(b);
    const length = this.lengths.get(b)!;
    const list = this.free.get(length);
    if (list) list.push(b);
    else this.free.set(length, [b]);
  }
  /** Gives every waiting buffer back to the allocator (stream-ordered). */
  releaseAll(): void {
    for (const list of this.free.values()) for (const b of list) b.release(this.stream);
    this.free.clear();
    this.lengths.clear();
  }
}

/** Events reused from iteration to iteration (an event may be recorded again once waited on). */
class EventRing {
  private events: Event[] = [];
  private next = 0;
  constructor(private native = addon()) {}
  take(): Event {
    return (this.events[this.next++] ??= new this.native.Event());
  }
  rewind(): void {
    this.next = 0;
  }
}

export class TrainingStep {
  readonly params = new Map<string, Buffer>();
  readonly grads = new Map<string, Buffer>();
  readonly momentum = new Map<string, Buffer>();
  readonly input: Buffer;
  readonly labels: Buffer;
  readonly loss: Buffer;
  gradientEvents: { param: string; event: Event }[] = [];
  readonly stream: Stream;

  /** The addon the step runs on: the CPU one, or the CUDA one (the same classes, device memory). */
  readonly native: Addon;
  private prepared: Prepared[] = [];
  private lossKernel: OpKernel;
  /** The optimizer's kernels: one per parameter on the CPU, one for all of them on CUDA. */
  private sgd: { params: string[]; kernel: OpKernel }[] = [];
  /** Nodes after fusion, and the tensor each fused-away ReLU output stands for. */
  private alias = new Map<string, string>();

  /** The layout activations are held in (never 'auto'). */
  readonly layout: 'nchw' | 'nChw16c' | 'nhwc';
  /** nhwc or bf16: the input's conversion into the activations' layout and dtype, and its output (the network's input). */
  private inputConversion: { kernel: OpKernel; output: Buffer } | undefined;
  /**
   * With dtype bf16 the activations (and their gradients) are bf16 buffers,
   * but for these: the average pool's output and the FC layer's (its input
   * and the logits stay fp32, as the loss); parameters, their gradients and
   * the optimizer state are always fp32.
   */
  private fp32Tensors = new Set<string>();
  private isBf16(tensor: string): boolean {
    return this.dtype === 'bf16' && !this.fp32Tensors.has(tensor);
  }

  readonly buckets: Bucket[] = [];
  readonly commStream: Stream | undefined;
  private reduceKernels = new Map<string, { kernel: OpKernel; replicas: Buffer }>();
  private linkKernels: (OpKernel | undefined)[] = [];

  constructor(
    readonly graph: ResNetGraph,
    readonly plan: Plan,
    readonly optimizer: OptimizerOptions,
    layout: StepLayout = 'auto',
    readonly reduction?: ReductionOptions,
    readonly backend: Backend = 'cpu',
    /** tf32: the CUDA convolutions may use TF32 tensor cores (the other ops stay fp32). bf16: bf16 activations (below). */
    readonly dtype: 'fp32' | 'tf32' | 'bf16' = 'fp32',
    /** CUDA, several GPUs in one process: the GPU of this replica (its buffers, streams and kernels); undefined: the process's GPU. */
    readonly device?: number,
  ) {
    if (device !== undefined && backend !== 'cuda') throw new UsageError(`a device (GPU ${device}) is not allowed on the ${backend} backend`);
    if (dtype !== 'fp32' && backend !== 'cuda') throw new UsageError(`--dtype '${dtype}' is not allowed on the cpu backend: allowed fp32`);
    // The CUDA addon has the classes and calls the step uses (Buffer, Stream,
    // Event, ConvKernel, OpKernel, memoryStats, timelineDrain, waitsDrain, nowNs).
    const native = (this.native = backend === 'cuda' ? (cudaAddon() as unknown as Addon) : addon());
    if (reduction && reduction.comm !== 'local' && reduction.comm !== CROSS_PROCESS_COMM[backend]) {
      throw new UsageError(`--comm ${reduction.comm} is not allowed with --backend ${backend}: allowed local, ${CROSS_PROCESS_COMM[backend]}`);
    }
    if (layout === 'nhwc') {
      if (backend !== 'cuda') throw new UsageError("--layout nhwc is not allowed on the cpu backend: allowed auto, nchw, nChw16c (nhwc is CUDA's, with cuDNN's convolutions)");
      const own = firstNonCudnnConv(graph, plan);
      if (own) throw new UsageError(`--layout nhwc: conv ${own.layer} runs '${own.variant}', which takes NCHW only; allowed: cudnn:* variants`);
      this.layout = 'nhwc';
    } else {
      if (layout === 'nChw16c' && backend === 'cuda') {
        throw new UsageError("--layout nChw16c is not allowed with --backend cuda: it is oneDNN's blocked layout, the CPU's; allowed: auto, nchw, nhwc");
      }
      const blockedProblem = canUseBlocked(graph, plan);
      if (layout === 'nChw16c' && blockedProblem) throw new UsageError(`--layout nChw16c: ${blockedProblem}`);
      this.layout = layout === 'nchw' || blockedProblem ? 'nchw' : 'nChw16c';
    }
    if (dtype === 'bf16') {
      const own = firstNonCudnnConv(graph, plan);
      if (own) throw new UsageError(`--dtype bf16: conv ${own.layer} runs '${own.variant}', which takes fp32 buffers; allowed: cudnn:* variants`);
      for (const n of graph.nodes) if (n.kind === 'avgpool' || n.kind === 'fc') this.fp32Tensors.add(n.output);
    }
    this.stream = this.newStream('compute');
    for (const p of graph.params) {
      const length = p.shape.reduce((a, b) => a * b, 1);
      this.params.set(p.name, this.buffer(length));
      if (p.trainable) {
        this.grads.set(p.name, this.buffer(length));
        const m = this.buffer(length);
        m.fill(0);
        this.momentum.set(p.name, m);
      }
    }
    this.input = this.buffer(graph.tensors.get(graph.input)!);
    this.labels = this.buffer(graph.batch);
    this.loss = this.buffer(1);
    this.prepare();
    if (reduction && reduction.workers > 1) this.prepareReduction(reduction);
    this.lossKernel = new native.OpKernel('softmax-xent', this.opVariant('loss'), { n: graph.batch, classes: graph.classes }, 'loss');
    const trainable = graph.params.filter((p) => p.trainable);
    const sizeOf = (p: (typeof trainable)[number]) => p.shape.reduce((a, b) => a * b, 1);
    const rates = { lr: optimizer.lr, momentum: optimizer.momentum, weightDecay: optimizer.weightDecay };
    if (backend === 'cuda') {
      // One launch for every parameter (op sgd's group mode): 161 tiny kernels cost more in launches than in bytes.
      const sizes = Object.fromEntries(trainable.map((p, i) => [`size${i}`, sizeOf(p)]));
      this.sgd.push({ params: trainable.map((p) => p.name), kernel: new native.OpKernel('sgd', this.opVariant('sgd'), { tensors: trainable.length, ...sizes, ...rates }, 'all parameters') });
    } else {
      for (const p of trainable) this.sgd.push({ params: [p.name], kernel: new native.OpKernel('sgd', this.opVariant('sgd'), { size: sizeOf(p), ...rates }, p.name) });
    }
  }

  /** A stream of this step: on its GPU, named by replicaStreamName. */
  private newStream(role: 'compute' | 'comm'): Stream {
    if (this.device === undefined) return new this.native.Stream(role);
    return new (this.native.Stream as unknown as new (name: string, options: { device: number }) => Stream)(replicaStreamName(role, this.device), { device: this.device });
  }

  /** A buffer of this step (fp32, or bf16 on CUDA): on its GPU. */
  private buffer(length: number, bf16 = false): Buffer {
    if (this.device === undefined && !bf16) return new this.native.Buffer(length);
    return new this.native.Buffer(length, { dtype: bf16 ? 'bf16' : 'fp32', device: this.device } as never);
  }

  private prepareReduction(r: ReductionOptions): void {
    const native = this.native;
    // Gradients become ready in reverse parameter order (as DDP assumes).
    const order = this.graph.params.filter((p) => p.trainable).reverse();
    this.buckets.push(...gradientBuckets(this.graph, r));
    for (const p of order) {
      const size = p.shape.reduce((a, b) => a * b, 1);
      if (r.comm !== 'local') continue; // Gloo and NCCL reduce in place across processes
      // Stand-ins for at most 15 other workers: past 16 the local work would
      // only grow memory; the modeled link still uses the true worker count.
      const local = Math.min(r.workers, LOCAL_STAND_IN_LIMIT);
      this.reduceKernels.set(p.name, {
        kernel: new native.OpKernel('allreduce-local', this.commVariant, { size, workers: local }, p.name),
        replicas: this.buffer(size * (local - 1)),
      });
    }
    this.linkKernels = this.buckets.map((b) =>
      r.link ? new native.OpKernel('link-hold', this.commVariant, { bytes: b.bytes, workers: r.workers, gbps: r.link.gbps, latencyUs: r.link.latencyUs }, `bucket${b.index}`) : undefined,
    );
    (this as { commStream: Stream | undefined }).commStream = r.schedule === 'overlapped' ? this.newStream('comm') : undefined;
  }

  /**
   * Enqueues the reduction of one bucket on `stream`. In a local NCCL group
   * the bucket is reduced once every replica has handed it in: until then
   * the promise returned is pending, and the caller awaits it (the other
   * replicas go on enqueueing meanwhile).
   */
  private enqueueBucket(b: Bucket, stream: Stream): Promise<void> | undefined {
    const r = this.reduction!;
    // The modeled link holds the stream after the bucket's reduction.
    const holdLink = () => void this.linkKernels[b.index]?.enqueue(stream, []);
    // NCCL: one grouped launch for the whole bucket (one kernel record). The
    // CUDA addon's Stream and Buffer behind the CPU addon's types (the executor's Addon view).
    const cudaBuffers = () => b.params.map((name) => this.grads.get(name)!) as unknown as CudaBuffer[];
    if (r.localGroup) {
      // Every rank's hold is enqueued by the rank that issues the group, right after it (LocalNcclGroup.submit).
      return r.localGroup.group.submit(r.localGroup.rank, stream as unknown as CudaStream, cudaBuffers(), 1 / r.workers, `bucket${b.index}`, holdLink);
    }
    if (r.comm === 'nccl') {
      (r.communicator as NcclCommunicator).allreduce(stream as unknown as CudaStream, cudaBuffers(), 1 / r.workers, `bucket${b.index}`);
      return holdLink();
    }
    for (const name of b.params) {
      if (r.comm === 'gloo') {
        (r.communicator as GlooCommunicator).allreduce(stream, this.grads.get(name)!, 1 / r.workers, name);
        continue;
      }
      const { kernel, replicas } = this.reduceKernels.get(name)!;
      kernel.enqueue(stream, [this.grads.get(name)!, replicas]);
    }
    return holdLink();
  }

  /** With > 0, each iteration is enqueued behind a gate of this many ms (see iteration()). */
  enqueueProbeMs = 0;
  private gateStream: Stream | undefined;
  private gateKernel: OpKernel | undefined;
  private gradSums = new Map<string, OpKernel>();
  /** The add that sums two gradients of tensor t (prepared once, reused every iteration). */
  private gradSumKernel(t: string): OpKernel {
    let k = this.gradSums.get(t);
    if (!k) {
      k = new this.native.OpKernel('add', this.opVariant('add'), { size: this.graph.tensors.get(t)!, bf16: this.isBf16(t) }, `grad:${t}`);
      this.gradSums.set(t, k);
    }
    return k;
  }

  /** The local communicator's and the link model's kernels: one variant per backend. */
  private get commVariant(): string {
    return this.backend === 'cuda' ? 'cuda' : 'fast';
  }

  private opVariant(op: PlanOp, layer?: string): string {
    const v = variantFor(this.plan, op, layer);
    return v === 'fused-relu' ? (this.backend === 'cuda' ? 'cuda' : 'fast') : v;
  }

  private prepare(): void {
    const { ConvKernel, OpKernel } = this.native;
    const nodes = this.graph.nodes;
    const blocked = this.layout === 'nChw16c';
    const nhwc = this.layout === 'nhwc';
    const act = (tensor: string) => (blocked && tensor !== this.graph.input ? 'nChw16c' : 'nchw');
    const bf16 = this.dtype === 'bf16';
    if (nhwc || bf16) {
      const [n, c, h, w] = this.graph.inputShape;
      this.inputConversion = {
        kernel: new OpKernel('input', 'cuda', { n, c, hw: h * w, nhwc, bf16 }, 'input'),
        output: this.buffer(n * c * h * w, bf16),
      };
    }
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i];
      const v = (op: PlanOp) => this.opVariant(op, node.name);
      // An op with one forward and one backward kernel of the same parameters.
      const pair = (op: PlanOp, fwd: OpName, bwd: OpName, p: Record<string, number | boolean>) =>
        this.prepared.push({
          node,
          forward: [new OpKernel(fwd, v(op), p, node.name)],
          backward: [new OpKernel(bwd, v(op), p, node.name)],
          fusedRelu: false,
        });
      switch (node.kind) {
        case 'conv': {
          const variant = (pass: ConvPass) => variantFor(this.plan, 'conv', node.name, pass);
          // The CPU kernel reads the layouts, the CUDA one the dtype (each ignores the other's keys).
          const layouts = {
            x: act(node.inputs[0]), y: act(node.output),
            ...(this.dtype !== 'fp32' ? { dtype: this.dtype } : {}), ...(nhwc ? { layout: 'nhwc' } : {}), ...(this.device !== undefined ? { device: this.device } : {}),
          } as const;
          const forward = new ConvKernel(node.shape, 'fwd', variant('fwd'), node.name, layouts);
          const backward: Kernel[] = [new ConvKernel(node.shape, 'bwd-filter', variant('bwd-filter'), node.name, layouts)];
          if (node.inputs[0] !== this.graph.input) {
            const data = new ConvKernel(node.shape, 'bwd-data', variant('bwd-data'), node.name, layouts);
            // CUDA, NHWC or bf16: cuDNN takes a converted copy of the weights. The forward launch made it from the
            // weights the backward pass uses (SGD comes after both): bwd-data reads it instead of converting again.
            if (this.backend === 'cuda' && (nhwc || this.dtype === 'bf16') && variant('fwd').startsWith('cudnn:') && variant('bwd-data').startsWith('cudnn:')) {
              (data as unknown as CudaConvKernel).useWeightCopyOf(forward as unknown as CudaConvKernel);
            }
            backward.push(data);
          }
          this.prepared.push({ node, forward: [forward], backward, fusedRelu: false });
          break;
        }
        case 'batchnorm': {
          const next = nodes[i + 1];
          const fused = variantFor(this.plan, 'batchnorm', node.name) === 'fused-relu' && next?.kind === 'relu' && next.inputs[0] === node.output;
          const p = { n: node.n, c: node.c, hw: node.hw, relu: fused, blocked, nhwc, bf16 };
          this.prepared.push({
            node,
            forward: [new OpKernel('batchnorm-fwd', v('batchnorm'), p, node.name)],
            backward: [new OpKernel('batchnorm-bwd', v('batchnorm'), p, node.name)],
            fusedRelu: fused,
          });
          if (fused) {
            this.alias.set(next.output, node.output);
            i++; // the ReLU runs inside the batch norm
          }
          break;
        }
        case 'relu':
          pair('relu', 'relu-fwd', 'relu-bwd', { size: node.size, bf16 });
          break;
        case 'add':
          this.prepared.push({
            node,
            forward: [new OpKernel('add', v('add'), { size: node.size, relu: node.relu, bf16 }, node.name)],
            // The fused ReLU's backward; the sum's gradient then goes to both inputs as is.
            backward: node.relu ? [new OpKernel('relu-bwd', v('add'), { size: node.size, bf16 }, node.name)] : [],
            fusedRelu: false,
          });
          break;
        case 'maxpool':
          pair('maxpool', 'maxpool-fwd', 'maxpool-bwd', { n: node.n, c: node.c, h: node.h, w: node.w, k: 3, stride: 2, pad: 1, blocked, nhwc, bf16 });
          break;
        case 'avgpool':
          pair('avgpool', 'avgpool-fwd', 'avgpool-bwd', { n: node.n, c: node.c, hw: node.hw, blocked, nhwc, bf16 });
          break;
        case 'fc':
          pair('fc', 'fc-fwd', 'fc-bwd', { n: node.n, in: node.in, out: node.out });
          break;
      }
    }
  }

  private uses: Map<string, number> | undefined;
  /** Uses of each activation in an iteration: forward consumers plus backward readers (the same every iteration). */
  private activationUses(): Map<string, number> {
    if (this.uses) return this.uses;
    const uses = new Map<string, number>();
    const bump = (t: string) => uses.set(t, (uses.get(t) ?? 0) + 1);
    for (const p of this.prepared) {
      for (const t of p.node.inputs) bump(this.resolve(t));
      for (const t of this.savedFor(p)) bump(t);
    }
    return (this.uses = uses);
  }

  private get bucketOf(): Map<string, Bucket> {
    return (this.bucketIndex ??= new Map(this.buckets.flatMap((b) => b.params.map((p) => [p, b] as const))));
  }
  private bucketIndex: Map<string, Bucket> | undefined;

  private resolve(name: string): string {
    return this.alias.get(name) ?? name;
  }

  /** Which activations backward reads (beyond the gradients it is handed). */
  private savedFor(p: Prepared): string[] {
    const n = p.node;
    switch (n.kind) {
      case 'conv':
        return [this.resolve(n.inputs[0])];
      case 'batchnorm':
        return p.fusedRelu ? [n.inputs[0], n.output] : [n.inputs[0]];
      case 'relu':
      case 'add':
        return [n.output];
      case 'fc':
        return [this.resolve(n.inputs[0])];
      default:
        return [];
    }
  }

  /**
   * One iteration: forward, loss, backward, SGD. Resolves when the stream has
   * run it all; throws if the loss is not finite. `input` (default: this.input)
   * lets the input pipeline hand over a batch buffer it filled, without a copy.
   * `arrangement` runs the reduction of this iteration in the other schedule
   * than the step's (the contention measurement compares both on the same
   * kernels); the arithmetic is the same.
   *
   * With `useGraph` (CUDA), the first iteration in the step's own schedule is
   * captured into a CUDA graph and every later one replays it with one launch:
   * the same kernels on the same buffers (the pool's choices are baked in),
   * so the input must be the step's own buffer.
   */
  async iteration(step: number, input: Buffer = this.input, arrangement?: 'serialized' | 'overlapped'): Promise<IterationResult> {
    if (!this.useGraph || arrangement !== undefined) {
      if (this.captured) throw new Error('after a CUDA graph capture every iteration replays it: no eager iteration can run beside it');
      return this.runIteration(step, input, arrangement, false);
    }
    if (input !== this.input) throw new Error("a CUDA graph replays the step's own input buffer: copy the batch into step.input");
    if (this.captured) return this.replayGraph(step);
    try {
      return await this.runIteration(step, input, undefined, true);
    } catch (err) {
      this.abortCapture();
      throw err;
    }
  }

  /** Replace eager iterations by one captured CUDA graph (see iteration()). CUDA only. */
  get useGraph(): boolean {
    return this.graphMode;
  }
  set useGraph(on: boolean) {
    if (on && this.backend !== 'cuda') throw new UsageError(graphProblem(this.backend, 1)!);
    this.graphMode = on;
  }
  private graphMode = false;
  private captured: { graph: CudaGraph; marks: IterationMarkEvents; logits: Buffer; comm: Stream | undefined } | undefined;
  private captureOpen = false;

  private get cudaStream(): CudaStream {
    return this.stream as unknown as CudaStream;
  }

  private abortCapture(): void {
    if (!this.captureOpen) return;
    this.captureOpen = false;
    // Discarded without instantiating: a half-captured iteration must never become a graph.
    this.cudaStream.abortCapture();
  }

  private async replayGraph(step: number): Promise<IterationResult> {
    const { graph, marks, logits, comm } = this.captured!;
    this.resetPeakMemory();
    const launchStart = this.native.nowNs();
    graph.launch(this.cudaStream);
    return this.completeIteration(step, marks, logits, comm, this.native.nowNs() - launchStart);
  }

  /** The memory peak of this step's device: its GPU's with a device (replicas each track their own), else the process's. */
  private resetPeakMemory(): void {
    if (this.device === undefined) this.native.resetPeakMemory();
    else (this.native as unknown as CudaAddon).resetPeakMemory(this.device);
  }
  private peakMemory(): { peakBytes: number; scratchBytes?: number } {
    const stats: MemoryStats & Partial<CudaMemoryStats> = this.device === undefined ? this.native.memoryStats() : (this.native as unknown as CudaAddon).memoryStats(this.device);
    // On CUDA the kernels' scratch (cuDNN workspaces, weight copies) counts too, as in PyTorch's peak.
    if (stats.peakTotalBytes === undefined || stats.scratchBytes === undefined) return { peakBytes: stats.peakBytes };
    return { peakBytes: stats.peakTotalBytes, scratchBytes: stats.scratchBytes };
  }

  /**
   * NVTX ranges for the phases (CUDA addon; a no-op on the CPU). A replica of
   * a --gpus step uses start/end ranges named after its GPU ("gpu1 forward"):
   * replicas are enqueued in turn from one thread, so pushes would interleave.
   */
  private phase(name: string | undefined): void {
    const cuda = this.native as unknown as Partial<CudaAddon>;
    if (!cuda.nvtxRangePush) return;
    if (this.device === undefined) {
      if (name === undefined) cuda.nvtxRangePop!();
      else cuda.nvtxRangePush(name);
      return;
    }
    if (name === undefined) cuda.nvtxRangeEnd!(this.nvtxOpen.pop()!);
    else this.nvtxOpen.push(cuda.nvtxRangeStart!(`gpu${this.device} ${name}`));
  }
  private nvtxOpen: number[] = [];

  private async runIteration(step: number, input: Buffer, arrangement: 'serialized' | 'overlapped' | undefined, capture: boolean): Promise<IterationResult> {
    const native = this.native;
    const comm: Stream | undefined = arrangement === undefined ? this.commStream
      : arrangement === 'overlapped' ? (this.commStream ?? (this.probeCommStream ??= this.newStream('comm'))) : undefined;
    // fp32: the CPU addon allocates in stream order, the CUDA one on the stream's GPU.
    const pool = (this.pool ??= new Pool(this.stream, (length, bf16) => (bf16 ? this.buffer(length, true) : new native.Buffer(length, this.stream))));
    const events = this.events;
    events.rewind();
    const stream = this.stream;
    const acts = new Map<string, Buffer>([[this.graph.input, input]]);
    const saved = new Map<string, Buffer[]>(); // per node: mean/invstd or argmax
    const prepared = this.prepared;

    const uses = new Map(this.activationUses());
    const use = (t: string) => {
      const left = (uses.get(t) ?? 0) - 1;
      uses.set(t, left);
      if (left <= 0 && t !== this.graph.input) {
        pool.drop(acts.get(t));
        acts.delete(t);
      }
    };

    pool.drop(this.lastLogits); // the previous iteration's logits
    this.lastLogits = undefined;
    this.resetPeakMemory();
    if (this.enqueueProbeMs > 0) {
      if (this.backend === 'cuda') throw new UsageError('--enqueue-probe is not allowed with --backend cuda: a GPU already runs behind the host (the probe holds a CPU stream)');
      // Hold the stream so the whole iteration is enqueued before any kernel
      // runs: the enqueue time is then the host's cost alone, as with a GPU,
      // not a share of cores busy with the previous kernels.
      const gate = events.take();
      this.gateStream ??= new native.Stream('gate');
      this.gateKernel ??= new native.OpKernel('link-hold', 'fast', { bytes: this.enqueueProbeMs * 1e6, workers: 2, gbps: 1 }, 'enqueue-probe');
      this.gateKernel.enqueue(this.gateStream, []);
      this.gateStream.record(gate);
      stream.wait(gate);
      // Let the previous iteration's OpenMP threads stop spinning: on a
      // 2-core machine they take the core the enqueueing thread needs.
      await new Promise((resolve) => setTimeout(resolve, PROBE_SETTLE_MS));
    }
    const enqueueStart = native.nowNs();
    if (capture) {
      this.cudaStream.beginCapture();
      this.captureOpen = true;
    }
    const marks: IterationMarkEvents = { start: events.take(), forward: events.take(), backward: events.take(), reduced: events.take(), end: events.take() };
    stream.record(marks.start);
    if (capture && comm) comm.wait(marks.start); // the comm stream joins the capture at its start
    this.phase(`iteration ${step}`);
    this.phase('forward');
    if (this.inputConversion) {
      // The batch arrives fp32 NCHW: one conversion, then the network reads its layout and dtype.
      this.inputConversion.kernel.enqueue(stream, [input, this.inputConversion.output]);
      acts.set(this.graph.input, this.inputConversion.output);
    }

    // Forward.
    for (const p of prepared) {
      const n = p.node;
      const x = acts.get(this.resolve(n.inputs[0]))!;
      const out = pool.make(this.graph.tensors.get(n.output)!, this.isBf16(n.output));
      acts.set(n.output, out);
      switch (n.kind) {
        case 'conv':
          (p.forward[0] as ConvKernel).enqueue(stream, x, this.params.get(n.weight)!, out);
          break;
        case 'batchnorm': {
          const stats = [pool.make(n.c), pool.make(n.c)];
          saved.set(n.name, stats);
          (p.forward[0] as OpKernel).enqueue(stream, [
            x, this.params.get(n.weight)!, this.params.get(n.bias)!, this.params.get(n.runningMean)!, this.params.get(n.runningVar)!,
            out, stats[0], stats[1],
          ]);
          break;
        }
        case 'maxpool': {
          const argmax = pool.make(this.graph.tensors.get(n.output)!);
          saved.set(n.name, [argmax]);
          (p.forward[0] as OpKernel).enqueue(stream, [x, out, argmax]);
          break;
        }
        case 'add':
          (p.forward[0] as OpKernel).enqueue(stream, [x, acts.get(this.resolve(n.inputs[1]))!, out]);
          break;
        case 'fc':
          (p.forward[0] as OpKernel).enqueue(stream, [x, this.params.get(n.weight)!, this.params.get(n.bias)!, out]);
          break;
        default:
          (p.forward[0] as OpKernel).enqueue(stream, [x, out]);
      }
      for (const t of n.inputs) use(this.resolve(t));
    }
    const logits = acts.get(this.graph.logits)!;
    const dlogits = pool.make(this.graph.tensors.get(this.graph.logits)!);
    this.lossKernel.enqueue(stream, [logits, this.labels, this.loss, dlogits]);
    stream.record(marks.forward);
    this.phase(undefined);
    this.phase('backward');

    // Backward, in reverse; gradients of activations accumulate where a tensor feeds two ops.
    const grads = new Map<string, Buffer>([[this.graph.logits, dlogits]]);
    const contribute = (t: string, g: Buffer) => {
      t = this.resolve(t);
      if (t === this.graph.input) return pool.drop(g);
      const prev = grads.get(t);
      if (!prev) return void grads.set(t, g);
      const sum = pool.make(this.graph.tensors.get(t)!, this.isBf16(t));
      this.gradSumKernel(t).enqueue(stream, [prev, g, sum]);
      pool.drop(prev);
      pool.drop(g);
      grads.set(t, sum);
    };
    this.gradientEvents = [];
    const overlapped = comm !== undefined;
    const pendingInBucket = this.buckets.map((b) => b.params.length);
    const bucketOf = this.bucketOf;
    // Buckets handed to a local NCCL group that the other replicas have not reached yet.
    const handedIn: Promise<void>[] = [];
    const ready = (...names: string[]) => {
      const event = events.take();
      stream.record(event);
      const closed: Bucket[] = [];
      for (const param of names) {
        this.gradientEvents.push({ param, event });
        const b = bucketOf.get(param);
        if (overlapped && b && --pendingInBucket[b.index] === 0) closed.push(b);
      }
      if (closed.length === 0) return;
      // The buckets' last gradients: reduce them on the comm stream once this event fires, in bucket
      // order (a layer's weight and bias may close two: the smaller-index one, nearer the loss, first).
      comm!.wait(event);
      for (const b of closed.sort((x, y) => x.index - y.index)) {
        const issued = this.enqueueBucket(b, comm!);
        if (issued) handedIn.push(issued);
      }
    };

    for (let i = prepared.length - 1; i >= 0; i--) {
      const p = prepared[i];
      const n = p.node;
      const dy = grads.get(n.output)!;
      grads.delete(n.output);
      const x = acts.get(this.resolve(n.inputs[0]));
      switch (n.kind) {
        case 'fc': {
          const dx = pool.make(this.graph.tensors.get(this.resolve(n.inputs[0]))!, this.isBf16(this.resolve(n.inputs[0])));
          (p.backward[0] as OpKernel).enqueue(stream, [x!, this.params.get(n.weight)!, dy, dx, this.grads.get(n.weight)!, this.grads.get(n.bias)!]);
          ready(n.weight, n.bias);
          contribute(n.inputs[0], dx);
          break;
        }
        case 'avgpool':
        case 'relu': {
          const dx = pool.make(this.graph.tensors.get(this.resolve(n.inputs[0]))!, this.isBf16(this.resolve(n.inputs[0])));
          (p.backward[0] as OpKernel).enqueue(stream, n.kind === 'relu' ? [acts.get(n.output)!, dy, dx] : [dy, dx]);
          contribute(n.inputs[0], dx);
          break;
        }
        case 'maxpool': {
          const dx = pool.make(this.graph.tensors.get(this.resolve(n.inputs[0]))!, this.isBf16(this.resolve(n.inputs[0])));
          (p.backward[0] as OpKernel).enqueue(stream, [dy, saved.get(n.name)![0], dx]);
          contribute(n.inputs[0], dx);
          break;
        }
        case 'add': {
          let g = dy;
          if (n.relu) {
            g = pool.make(n.size, this.isBf16(n.output));
            (p.backward[0] as OpKernel).enqueue(stream, [acts.get(n.output)!, dy, g]);
          } else {
            pool.retain(g); // dy's own reference is dropped below, like every node's
          }
          pool.retain(g); // one reference for each of the two inputs
          contribute(n.inputs[0], g);
          contribute(n.inputs[1], g);
          break;
        }
        case 'batchnorm': {
          const dx = pool.make(this.graph.tensors.get(n.inputs[0])!, this.isBf16(n.inputs[0]));
          const [mean, invstd] = saved.get(n.name)!;
          const buffers = [x!, this.params.get(n.weight)!, mean, invstd, dy, dx, this.grads.get(n.weight)!, this.grads.get(n.bias)!];
          if (p.fusedRelu) buffers.push(acts.get(n.output)!);
          (p.backward[0] as OpKernel).enqueue(stream, buffers);
          ready(n.weight, n.bias);
          contribute(n.inputs[0], dx);
          break;
        }
        case 'conv': {
          (p.backward[0] as ConvKernel).enqueue(stream, x!, this.grads.get(n.weight)!, dy);
          ready(n.weight);
          if (p.backward[1]) {
            const dx = pool.make(this.graph.tensors.get(this.resolve(n.inputs[0]))!, this.isBf16(this.resolve(n.inputs[0])));
            (p.backward[1] as ConvKernel).enqueue(stream, dx, this.params.get(n.weight)!, dy);
            contribute(n.inputs[0], dx);
          }
          break;
        }
      }
      pool.drop(dy);
      for (const b of saved.get(n.name) ?? []) pool.drop(b);
      saved.delete(n.name);
      for (const t of this.savedFor(p)) use(t);
      if (handedIn.length > 0) {
        await Promise.all(handedIn); // until every replica has handed in the buckets (each issued in one NCCL group)
        handedIn.length = 0;
      }
    }
    stream.record(marks.backward);
    this.phase(undefined);
    if (this.buckets.length > 0) {
      this.phase('reduction');
      if (overlapped) {
        const reduced = events.take();
        comm!.record(reduced);
        stream.wait(reduced);
      } else {
        for (const b of this.buckets) await this.enqueueBucket(b, stream);
      }
      this.phase(undefined);
    }
    stream.record(marks.reduced);

    this.phase('optimizer');
    for (const { params, kernel } of this.sgd) {
      kernel.enqueue(stream, params.flatMap((p) => [this.params.get(p)!, this.grads.get(p)!, this.momentum.get(p)!]));
    }
    stream.record(marks.end);
    this.phase(undefined);
    this.phase(undefined); // the iteration
    if (capture) {
      const graph = this.cudaStream.endCapture();
      this.captureOpen = false;
      this.captured = { graph, marks, logits, comm };
      return this.replayGraph(step); // a capture runs nothing: its first launch is this iteration
    }
    return this.completeIteration(step, marks, logits, comm, native.nowNs() - enqueueStart);
  }

  /** Waits for the iteration's streams; its loss and the phase marks' times. */
  private async completeIteration(step: number, marks: IterationMarkEvents, logits: Buffer, comm: Stream | undefined, enqueueNs: number): Promise<IterationResult> {
    const stream = this.stream;
    await stream.synchronize();
    if (comm) await comm.synchronize();
    this.lastLogits = logits; // kept (not pooled) until the next iteration
    const loss = this.loss.read()[0];
    if (!Number.isFinite(loss)) {
      throw new DivergedError(`the loss of step ${step} is ${loss}: training diverged (lower --lr?) or the input holds non-finite values`);
    }
    return {
      loss,
      startNs: marks.start.timestampNs!,
      forwardEndNs: marks.forward.timestampNs!,
      backwardEndNs: marks.backward.timestampNs!,
      reducedNs: marks.reduced.timestampNs!,
      endNs: marks.end.timestampNs!,
      ...this.peakMemory(),
      enqueueNs,
    };
  }

  /** The comm stream of iterations that overlap in a step configured serialized. */
  private probeCommStream: Stream | undefined;
  private lastLogits: Buffer | undefined;
  private pool: Pool | undefined;
  private eventRing: EventRing | undefined;
  private get events(): EventRing {
    return (this.eventRing ??= new EventRing(this.native));
  }

  /**
   * The plan as it ran: every convolution's pass under the variant that
   * really ran, so that a library's choice (cudnn:autotune, cudnn:heuristic:
   * "cudnn:autotune -> cudnn:fft-tiling ...") replays as that algorithm,
   * without timing again. Other entries as given.
   */
  resolvedPlan(): Plan {
    const layers = { ...this.plan.layers };
    for (const p of this.prepared) {
      if (p.node.kind !== 'conv') continue;
      for (const k of [...p.forward, ...p.backward] as ConvKernel[]) {
        const d = k.describe() as { pass: ConvPass; variant: string; implementation?: string };
        const chosen = /-> (cudnn:[a-z0-9-]+)/.exec(d.implementation ?? '')?.[1];
        layers[`${p.node.name}/${d.pass}`] = chosen ?? d.variant;
      }
    }
    return { ops: { ...this.plan.ops }, layers };
  }

  /** Gives the activation buffers this step holds between iterations back to the allocator (and drops a captured graph). */
  releaseActivations(): void {
    this.captured?.graph.release(); // now, not at GC: NCCL cannot be destroyed while it lives
    this.captured = undefined;
    if (this.lastLogits) this.pool?.drop(this.lastLogits);
    this.lastLogits = undefined;
    this.pool?.releaseAll();
  }

  /**
   * Releases what this step holds on its GPU now, not at garbage collection: the activations and a captured graph,
   * then the parameters, gradients, momentum, the local communicator's replicas, input, labels and loss. V8 does not
   * see device memory, so without this a second run in the same process (step --compare) would find the first one's
   * buffers still allocated, in its memory and its peak. The kernels go too, with their scratch (cuDNN workspaces,
   * weight copies, tables), counted in the CUDA step's peak. The step is unusable after. (CPU buffers and kernels go
   * with GC.)
   */
  releaseDeviceMemory(): void {
    this.releaseActivations();
    const buffers = [...this.params.values(), ...this.grads.values(), ...this.momentum.values(), ...[...this.reduceKernels.values()].map((r) => r.replicas),
      this.input, this.labels, this.loss, this.inputConversion?.output];
    for (const b of buffers) (b as Partial<CudaBuffer> | undefined)?.release?.();
    const kernels: unknown[] = [...this.prepared.flatMap((p) => [...p.forward, ...p.backward]), this.lossKernel, ...this.sgd.map((s) => s.kernel),
      ...[...this.reduceKernels.values()].map((r) => r.kernel), ...this.linkKernels, ...this.gradSums.values(), this.inputConversion?.kernel];
    for (const k of kernels) (k as { release?: () => void } | undefined)?.release?.();
  }

  /** Logits of the last iteration, as computed in its forward pass. */
  readLogits(): Float32Array {
    if (!this.lastLogits) throw new Error('no iteration has run yet');
    return this.lastLogits.read();
  }
}
