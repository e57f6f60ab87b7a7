// Gathers every rank's timeline (and its phase marks) to every rank over the
// run's communicator (Gloo or NCCL), so that rank 0 can write one trace with a
// process per rank, and a report with a timeline per rank. Both offer
// all-reduce here: each rank writes its timeline's JSON bytes (as floats,
// exact up to 2^24) into its own slice of a zeroed buffer, and the sum of all
// ranks' buffers holds every slice.
import type { Buffer, GlooCommunicator, KernelRecord, Stream } from '../../binding';
import type { Communicator } from './executor';
import type { IterationMarks } from './kernel-stats';

/** What the gather needs of an addon: the one the communicator's buffers live in. */
export interface GatherAddon {
  Stream: new (name?: string) => unknown;
  Buffer: new (length: number, stream?: never) => unknown; // the CPU addon takes the stream, the CUDA one ignores it
  timelineDrain(): unknown;
  waitsDrain(): unknown;
}

async function allreduceSum(comm: Communicator, native: GatherAddon, values: Float32Array, layer: string): Promise<Float32Array> {
  // Typed as the CPU addon's classes: the CUDA addon's have the same surface.
  const stream = new native.Stream('gather') as Stream;
  const buffer = new native.Buffer(values.length, stream as never) as Buffer;
  buffer.write(values);
  (comm as GlooCommunicator).allreduce(stream, buffer, 1, layer);
  await stream.synchronize();
  const out = buffer.read();
  buffer.release();
  return out;
}

export interface RankTimeline {
  timeline: KernelRecord[];
  marks: IterationMarks;
}

export async function gatherTimelines(comm: Communicator, native: GatherAddon, rank: number, size: number, own: RankTimeline): Promise<RankTimeline[]> {
  const bytes = new TextEncoder().encode(JSON.stringify(own));
  const lengths = new Float32Array(size);
  lengths[rank] = bytes.length;
  const all = await allreduceSum(comm, native, lengths, 'gather-lengths');
  const offsets = [0];
  for (let r = 0; r < size; r++) offsets.push(offsets[r] + all[r]);
  const mine = new Float32Array(Math.max(1, offsets[size]));
  mine.set(bytes, offsets[rank]);
  const summed = await allreduceSum(comm, native, mine, 'gather-timelines');
  native.timelineDrain(); // the gather is not part of any run
  native.waitsDrain();
  const decoder = new TextDecoder();
  return Array.from({ length: size }, (_, r) => JSON.parse(decoder.decode(Uint8Array.from(summed.subarray(offsets[r], offsets[r + 1])))) as RankTimeline);
}
