// Gathers every rank's timeline (and its phase marks) to every rank over the
// gloo communicator, so that rank 0 can write one trace with a process per
// rank, and a report with a timeline per rank. Gloo here offers
// all-reduce only: each rank writes its timeline's JSON bytes (as floats,
// exact up to 2^24) into its own slice of a zeroed buffer, and the sum of all
// ranks' buffers holds every slice.
import type { GlooCommunicator, KernelRecord } from '../../binding';
import { addon } from '../native';
import type { IterationMarks } from './kernel-stats';

async function allreduceSum(comm: GlooCommunicator, values: Float32Array, layer: string): Promise<Float32Array> {
  const native = addon();
  const stream = new native.Stream('gather');
  const buffer = new native.Buffer(values.length, stream);
  buffer.write(values);
  comm.allreduce(stream, buffer, 1, layer);
  await stream.synchronize();
  const out = buffer.read();
  buffer.release();
  return out;
}

export interface RankTimeline {
  timeline: KernelRecord[];
  marks: IterationMarks;
}

export async function gatherTimelines(comm: GlooCommunicator, rank: number, size: number, own: RankTimeline): Promise<RankTimeline[]> {
  const bytes = new TextEncoder().encode(JSON.stringify(own));
  const lengths = new Float32Array(size);
  lengths[rank] = bytes.length;
  const all = await allreduceSum(comm, lengths, 'gather-lengths');
  const offsets = [0];
  for (let r = 0; r < size; r++) offsets.push(offsets[r] + all[r]);
  const mine = new Float32Array(Math.max(1, offsets[size]));
  mine.set(bytes, offsets[rank]);
  const summed = await allreduceSum(comm, mine, 'gather-timelines');
  addon().timelineDrain(); // the gather is not part of any run
  addon().waitsDrain();
  const decoder = new TextDecoder();
  return Array.from({ length: size }, (_, r) => JSON.parse(decoder.decode(Uint8Array.from(summed.subarray(offsets[r], offsets[r + 1])))) as RankTimeline);
}
