// The modeled link (--link, --latency): each gradient bucket holds the comm
// stream for its ring all-reduce time, 2(W-1) latencies plus 2(W-1)/W of its
// bytes over the link (native cpu/link_model.h computes the same). A hold has
// a cap, as the native one: a run whose largest bucket would take longer is
// refused before any work, naming the options, not deep in the step.
import type { ResNetGraph } from '../model/graph';
import { UsageError } from '../errors';
import { assignBuckets, type Bucket, type BucketOptions } from './buckets';

/** The most one bucket may hold the link, s (the native link-hold's kMaxLinkHoldSeconds). */
export const MAX_LINK_HOLD_S = 3600;

export interface LinkModel {
  gbps: number;
  latencyUs: number;
}

/** The graph's gradient buckets, as the step forms them: trainable parameters in reverse order (as backward produces them). */
export function gradientBuckets(graph: ResNetGraph, options: BucketOptions): Bucket[] {
  const order = graph.params.filter((p) => p.trainable).reverse();
  return assignBuckets(order.map((p) => ({ name: p.name, size: p.shape.reduce((a, b) => a * b, 1) })), options);
}

/** Seconds a ring all-reduce of `bytes` among `workers` holds the modeled link. */
export function linkHoldSeconds(bytes: number, workers: number, link: LinkModel): number {
  const w = workers;
  return w > 1 ? 2 * (w - 1) * link.latencyUs * 1e-6 + ((2 * (w - 1)) / w) * (bytes / (link.gbps * 1e9)) : 0;
}

/** Refuses a reduction whose largest bucket would hold the link past MAX_LINK_HOLD_S. */
export function checkLinkHolds(graph: ResNetGraph, r: BucketOptions & { workers: number; link?: LinkModel }): void {
  if (!r.link || r.workers < 2) return;
  const largest = gradientBuckets(graph, r).reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const seconds = linkHoldSeconds(largest.bytes, r.workers, r.link);
  if (seconds <= MAX_LINK_HOLD_S) return;
  throw new UsageError(`--link ${r.link.gbps} GB/s would hold the link ${seconds.toFixed(0)} s for bucket ${largest.index} (${(largest.bytes / 2 ** 20).toFixed(1)} MB, ` +
    `${largest.params.length === 1 ? largest.params[0] : `${largest.params.length} parameters`}) among ${r.workers} workers (latency ${r.link.latencyUs} us), ` +
    `more than the ${MAX_LINK_HOLD_S} s a modeled hold may take: raise --link, or lower --bucket-mb, --first-bucket-mb, --latency or --workers`);
}
