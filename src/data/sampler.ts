// Which samples make batch i: each epoch visits the dataset in a permutation
// drawn from (seed, epoch), split between the data-parallel workers; an epoch
// holds floor(shard / batch) batches (at least one: a shard smaller than a
// batch repeats within it). Pure functions of
// their arguments, so every run with a seed sees the same images.

/** A 32-bit hash (murmur3's finalizer) of a few integers. */
function hash32(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

const permutations = new Map<string, Uint32Array>();

/** Fisher-Yates with a counter-based generator keyed by (seed, epoch). */
export function epochPermutation(n: number, seed: number, epoch: number): Uint32Array {
  const key = `${n}:${seed}:${epoch}`;
  const cached = permutations.get(key);
  if (cached) return cached;
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = hash32(seed, epoch, i) % (i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  if (permutations.size > 4) permutations.clear(); // consecutive epochs only
  permutations.set(key, p);
  return p;
}

/**
 * The samples of batch `iteration` for data-parallel worker `rank` of
 * `workers`: as PyTorch's DistributedSampler, every worker draws the same
 * epoch permutation and takes every workers-th entry of it from its rank on
 * (floor(n / workers) each; the tail is dropped so the shards are equal).
 */
export function batchSamples(n: number, batch: number, iteration: number, seed: number, rank = 0, workers = 1): { epoch: number; indices: number[] } {
  const shard = Math.floor(n / workers);
  if (shard < 1) throw new RangeError(`a dataset of ${n} samples cannot give each of ${workers} workers a sample`);
  const perEpoch = Math.max(1, Math.floor(shard / batch));
  const epoch = Math.floor(iteration / perEpoch);
  const start = (iteration % perEpoch) * batch;
  const p = epochPermutation(n, seed, epoch);
  return { epoch, indices: Array.from({ length: batch }, (_, j) => p[((start + j) % shard) * workers + rank]) };
}
