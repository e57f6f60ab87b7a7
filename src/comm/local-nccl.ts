// All local GPUs in one process (step --gpus N): one NCCL communicator per
// GPU, made together, and the bucket all-reduces of the replicas issued
// together. NCCL needs the calls of every local rank of a collective in one
// group from one thread (a rank's call alone would wait for the others
// forever), so a replica hands its bucket in and waits (a pending promise)
// until the last replica hands in the same bucket; that one issues the group.
import type { Buffer as CudaBuffer, NcclCommunicator, Stream as CudaStream } from '../../binding-cuda';
import type { CudaAddon } from '../native-cuda';

/** Why --graph is refused with --gpus (NCCL's documentation: "Using NCCL with CUDA Graphs"). */
export const GRAPH_WITH_GPUS = "NCCL warns that launching graphs of one thread's several GPUs may deadlock (cudaGraphLaunch can block); for --graph start one rank per GPU with stepscope launch";

interface HandedIn {
  calls: ({ comm: NcclCommunicator; stream: CudaStream; buffers: CudaBuffer[] } | undefined)[];
  afterIssue: ((() => void) | undefined)[];
  count: number;
  scale: number;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class LocalNcclGroup {
  private pending = new Map<string, HandedIn>();
  private failure: Error | undefined;

  private constructor(
    private readonly cuda: CudaAddon,
    readonly devices: number[],
    private readonly comms: NcclCommunicator[],
  ) {}

  /** One communicator per GPU (rank r on devices[r]), connected. */
  static async connect(cuda: CudaAddon, devices: number[], timeoutMs: number): Promise<LocalNcclGroup> {
    const comms = cuda.NcclCommunicator.local(devices, { timeoutMs });
    const joins = comms.map((c) => c.connect());
    try {
      await Promise.all(joins);
    } catch (err) {
      await Promise.allSettled(joins); // every join has ended (each is bounded by timeoutMs)
      try {
        cuda.NcclCommunicator.destroyGroup(comms); // aborts them all
      } catch {
        // a joined rank aborted with the clique says so too: the join's error is the one to report
      }
      throw err;
    }
    return new LocalNcclGroup(cuda, devices, comms);
  }

  get size(): number {
    return this.comms.length;
  }

  /**
   * Rank `rank` hands in its buffers of the reduction named `layer` (one
   * bucket of one iteration). The last rank to hand it in issues the group
   * at once and gets undefined; the others get a promise that resolves then
   * (or rejects when the group fails or abort() is called). `afterIssue`
   * (what follows the all-reduce on the rank's stream: the modeled link's
   * hold) runs for every rank, in rank order, right after the group is
   * issued: run later, as each waiting rank resumed, a bucket issued in
   * between would come before it on that rank's stream only, and the GPUs'
   * comm streams would differ in order (a collective held up by another
   * GPU's hold, spinning on its SMs).
   */
  submit(rank: number, stream: CudaStream, buffers: CudaBuffer[], scale: number, layer: string, afterIssue?: () => void): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    let h = this.pending.get(layer);
    if (!h) {
      let resolve!: () => void, reject!: (err: Error) => void;
      const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      promise.catch(() => undefined); // a replica that never awaits it (it failed first) must not leave an unhandled rejection
      h = { calls: new Array(this.size).fill(undefined), afterIssue: new Array(this.size).fill(undefined), count: 0, scale, promise, resolve, reject };
      this.pending.set(layer, h);
    }
    if (h.calls[rank]) throw new Error(`local NCCL group: rank ${rank} handed in ${layer} twice before the other ranks`);
    if (h.scale !== scale) throw new Error(`local NCCL group: ${layer} is scaled by ${h.scale} on one rank and ${scale} on rank ${rank}`);
    h.calls[rank] = { comm: this.comms[rank], stream, buffers };
    h.afterIssue[rank] = afterIssue;
    if (++h.count < this.size) return h.promise;
    this.pending.delete(layer);
    try {
      this.cuda.NcclCommunicator.allreduceGroup(h.calls.map((c) => c!), scale, layer);
      for (const follow of h.afterIssue) follow?.();
    } catch (err) {
      this.abort(err as Error);
      h.reject(err as Error);
      throw err;
    }
    h.resolve();
    return undefined;
  }

  /** A replica failed: every rank waiting on a bucket (now or later) gets this error instead of waiting forever. */
  abort(err: Error): void {
    this.failure ??= err;
    for (const h of this.pending.values()) h.reject(this.failure);
    this.pending.clear();
  }

  private destroyed = false;

  /** After the last collective: releases every communicator, together (one grouped finalize); once (a second call does nothing). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.cuda.NcclCommunicator.destroyGroup(this.comms);
  }
}
