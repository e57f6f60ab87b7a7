// NCHW <-> NHWC on the host, for the device checks of the NHWC kernels
// (step --layout nhwc on CUDA): an [n, c, s] tensor (s = h * w) in memory
// order, as native/cuda/op_index.h's actIndex arranges it on the device.

/** data[n, c, s] (NCHW) arranged as [n, s, c] (NHWC). */
export function toNhwc(data: Float32Array, c: number, s: number): Float32Array {
  return relayout(data, c, s, true);
}

/** The inverse of toNhwc. */
export function fromNhwc(data: Float32Array, c: number, s: number): Float32Array {
  return relayout(data, c, s, false);
}

/** Moves every element (n, c, i) between its NCHW and NHWC positions, in the direction asked. */
function relayout(data: Float32Array, c: number, s: number, toChannelsLast: boolean): Float32Array {
  const n = checkDims(data, c, s);
  const out = new Float32Array(data.length);
  for (let img = 0; img < n; img++)
    for (let ch = 0; ch < c; ch++)
      for (let i = 0; i < s; i++) {
        const nchw = (img * c + ch) * s + i, nhwc = (img * s + i) * c + ch;
        if (toChannelsLast) out[nhwc] = data[nchw];
        else out[nchw] = data[nhwc];
      }
  return out;
}

function checkDims(data: Float32Array, c: number, s: number): number {
  const n = data.length / (c * s);
  if (!Number.isInteger(n)) throw new Error(`a tensor of ${data.length} values is not [n, ${c}, ${s}]`);
  return n;
}
