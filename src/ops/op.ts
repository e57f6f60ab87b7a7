// Running a non-convolution op by name: buffers are created from the
// kernel's own description, filled from named arrays, and read back by name.
// Used by the tests and by anyone poking at a single op.
import type { Buffer, OpName, Stream } from '../../binding';
import { addon } from '../native';

export type OpParams = Record<string, number | boolean>;

export async function runOp(
  stream: Stream,
  op: OpName,
  variant: string,
  params: OpParams,
  values: Record<string, Float32Array>,
  poison = Number.NaN,
): Promise<Record<string, Float32Array>> {
  const native = addon();
  const kernel = new native.OpKernel(op, variant, params);
  const spec = kernel.describe().buffers;
  const buffers: Buffer[] = spec.map(({ name, length }) => {
    const b = new native.Buffer(length);
    const v = values[name];
    if (v) {
      if (v.length !== length) throw new Error(`${op}: '${name}' has ${v.length} values, needs ${length}`);
      b.write(v);
    } else {
      b.fill(poison); // outputs start poisoned
    }
    return b;
  });
  kernel.enqueue(stream, buffers);
  await stream.synchronize();
  const out: Record<string, Float32Array> = {};
  spec.forEach(({ name }, i) => {
    out[name] = buffers[i].read();
    buffers[i].release();
  });
  return out;
}
