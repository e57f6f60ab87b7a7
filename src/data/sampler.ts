// Which samples make batch i: each epoch visits the dataset in a permutation
// drawn from (seed, epoch); an epoch holds floor(n / batch) batches (at least
// one: a dataset smaller than a batch repeats within it). Pure functions of
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

export function batchSamples(n: number, batch: number, iteration: number, seed: number): { epoch: number; indices: number[] } {
  const perEpoch = Math.max(1, Math.floor(n / batch));
  const epoch = Math.floor(iteration / perEpoch);
  const start = (iteration % perEpoch) * batch;
  const p = epochPermutation(n, seed, epoch);
  return { epoch, indices: Array.from({ length: batch }, (_, j) => p[(start + j) % n]) };
}
