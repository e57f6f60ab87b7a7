// The table of op variants across backends, as `stepscope variants` prints it.
import { addon } from './native';

export interface VariantRow {
  op: string;
  variant: string;
  backends: { backend: string; available: boolean; reason?: string }[];
  description: string;
}

export function listVariants(): VariantRow[] {
  const native = addon();
  const conv = native.convVariants().map((v) => ({
    op: 'conv',
    variant: v.name,
    backends: [{ backend: 'cpu', available: v.available, ...(v.unavailableReason ? { reason: v.unavailableReason } : {}) }],
    description: v.description,
  }));
  const ops = native.opVariants().map((v) => ({
    op: v.op,
    variant: v.name,
    backends: [{ backend: 'cpu', available: true }],
    description: v.description,
  }));
  // A plan's batchnorm=fused-relu runs batchnorm-fwd/-bwd with the ReLU fused in.
  const fused = {
    op: 'batchnorm',
    variant: 'fused-relu',
    backends: [{ backend: 'cpu', available: true }],
    description: 'plan choice: batch norm and the ReLU after it in one pass (fast kernels with relu=1)',
  };
  return [...conv, ...ops, fused];
}

/** Conv variants that can run here. `reference` is the oracle and is timed only when named. */
export function availableConvVariants(): { all: string[]; timedByDefault: string[] } {
  const all = addon().convVariants().filter((v) => v.available).map((v) => v.name);
  return { all, timedByDefault: all.filter((v) => v !== 'reference') };
}
