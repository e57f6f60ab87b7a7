// Gradient buckets as PyTorch DDP forms them: parameters in reverse order
// (the order backward produces their gradients), a small first bucket so the
// first reduction starts early, then buckets of up to `bucketBytes`.
export interface Bucket {
  index: number;
  params: string[];
  bytes: number;
}

export interface BucketOptions {
  bucketBytes: number;
  firstBucketBytes: number;
}

/** params: name and size in floats, in the order their gradients become ready. */
export function assignBuckets(params: { name: string; size: number }[], options: BucketOptions): Bucket[] {
  if (!(options.bucketBytes > 0) || !(options.firstBucketBytes > 0)) throw new Error('bucket sizes must be positive');
  const buckets: Bucket[] = [];
  let current: Bucket | undefined;
  const cap = (b: Bucket) => (b.index === 0 ? options.firstBucketBytes : options.bucketBytes);
  for (const p of params) {
    const bytes = p.size * 4;
    // A full bucket closes; a parameter larger than the cap gets one of its own (as in DDP).
    if (current && current.bytes + bytes > cap(current)) current = undefined;
    if (!current) {
      current = { index: buckets.length, params: [], bytes: 0 };
      buckets.push(current);
    }
    current.params.push(p.name);
    current.bytes += bytes;
  }
  return buckets;
}
