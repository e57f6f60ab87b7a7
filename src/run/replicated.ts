// All local GPUs in one process (step --backend cuda --gpus N): one replica
// of the training step per GPU, driven from this one thread, their gradients
// reduced by a local NCCL group (src/comm/local-nccl.ts). Replica r takes
// the synthetic batch of rank r, as `stepscope launch -n N` would give its
// ranks, so both arrangements compute the same step.
//
// What is reported is replica 0's (GPU 0's): timeline, phases and loss, as
// rank 0 reports for a launch; each replica's span per iteration is kept
// (spansMs) so an imbalance between GPUs shows.
import type { Buffer, KernelRecord, WaitRecord } from '../../binding';
import type { ResNetGraph } from '../model/graph';
import type { Plan } from '../plan/plan';
import { GRAPH_WITH_GPUS, type LocalNcclGroup } from '../comm/local-nccl';
import { isReplicaStream, TrainingStep, type IterationResult, type OptimizerOptions, type ReductionOptions, type StepLayout } from './executor';
import { UsageError } from '../errors';


export class ReplicatedStep {
  readonly replicas: TrainingStep[];
  /** Per measured or warm-up iteration run so far: each replica's span (start to end mark), ms. */
  readonly spansMs: number[][] = [];
  /** The last iteration's result on each replica (its phase marks). */
  lastResults: IterationResult[] = [];

  constructor(
    graph: ResNetGraph, plan: Plan, optimizer: OptimizerOptions, layout: StepLayout,
    reduction: Omit<ReductionOptions, 'workers' | 'comm' | 'communicator' | 'localGroup'>,
    dtype: 'fp32' | 'tf32' | 'bf16', readonly group: LocalNcclGroup,
  ) {
    if (group.size < 2) throw new UsageError(`--gpus ${group.size}: a replicated step needs 2 GPUs or more (1 GPU is the plain step)`);
    this.replicas = group.devices.map((device, rank) =>
      new TrainingStep(graph, plan, optimizer, layout, { ...reduction, workers: group.size, comm: 'nccl', localGroup: { group, rank } }, 'cuda', dtype, device));
  }

  get native() { return this.replicas[0].native; }
  get graph() { return this.replicas[0].graph; }
  get backend() { return this.replicas[0].backend; }
  get layout() { return this.replicas[0].layout; }
  get input(): Buffer { return this.replicas[0].input; }
  get labels(): Buffer { return this.replicas[0].labels; }

  /** CUDA graphs capture one stream's work at a time; a group all-reduce spans every GPU. */
  get useGraph(): boolean { return false; }
  set useGraph(on: boolean) {
    if (on) throw new UsageError(`--graph is not allowed with --gpus 2 or more: ${GRAPH_WITH_GPUS}`);
  }

  enqueueProbeMs = 0;

  /**
   * One iteration on every replica at once. Each replica enqueues until it
   * hands in a bucket the others have not reached; the last one issues the
   * grouped all-reduce and they go on. A failing replica aborts the group,
   * so no other one waits for it forever.
   */
  async iteration(step: number, input: Buffer = this.input, arrangement?: 'serialized' | 'overlapped'): Promise<IterationResult> {
    if (input !== this.input) throw new Error('a replicated step reads each replica\'s own input buffer');
    const results = await Promise.all(this.replicas.map((r) => r.iteration(step, r.input, arrangement).catch((err: Error) => {
      this.group.abort(err);
      throw err;
    })));
    this.spansMs.push(results.map((r) => (r.endNs - r.startNs) / 1e6));
    this.lastResults = results;
    return results[0];
  }

  /** Replica 0's kernels: the timeline reported. */
  firstReplicaRecords(records: KernelRecord[]): KernelRecord[] {
    return records.filter((k) => isReplicaStream(k.streamName, 0));
  }
  /** The other replicas' kernels of the last iteration, with their marks (for a trace and report per GPU). */
  otherReplicas(records: KernelRecord[]): { device: number; records: KernelRecord[]; marks: IterationResult }[] {
    return this.group.devices.slice(1).map((device, i) => ({ device, records: records.filter((k) => isReplicaStream(k.streamName, device)), marks: this.lastResults[i + 1] }));
  }
  firstReplicaWaits(waits: WaitRecord[]): WaitRecord[] {
    return waits.filter((w) => isReplicaStream(w.streamName, 0));
  }

  resolvedPlan(): Plan {
    return this.replicas[0].resolvedPlan();
  }

  releaseDeviceMemory(): void {
    for (const r of this.replicas) r.releaseDeviceMemory();
  }

}
