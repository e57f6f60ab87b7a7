// bf16 on the host, as native/core/bf16.h rounds on the device: the top 16
// bits of an fp32, to nearest with ties to even; NaN stays NaN. The device
// checks round their inputs with it, so the CPU reference sees the values a
// bf16 buffer holds.

const scratch = new Float32Array(1);
const bits = new Uint32Array(scratch.buffer);

/** f rounded to the nearest bf16 value (as a float). */
export function roundBf16Value(f: number): number {
  scratch[0] = f;
  let u = bits[0];
  if ((u & 0x7fffffff) > 0x7f800000) return Number.NaN;
  u = (u + 0x7fff + ((u >>> 16) & 1)) >>> 0;
  bits[0] = (u & 0xffff0000) >>> 0;
  return scratch[0];
}

/** A copy of v with every value rounded to bf16. */
export function roundBf16(v: Float32Array): Float32Array {
  return v.map(roundBf16Value);
}
