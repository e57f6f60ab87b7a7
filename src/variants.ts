// The table of op variants across backends, as `stepscope variants` prints it.
import { addon } from './native';

export interface VariantRow {
  op: string;
  variant: string;
  backends: { backend: string; available: boolean; reason?: string }[];
  description: string;
}

export function listVariants(): VariantRow[] {
  return addon()
    .convVariants()
    .map((v) => ({
      op: 'conv',
      variant: v.name,
      backends: [{ backend: 'cpu', available: v.available, ...(v.unavailableReason ? { reason: v.unavailableReason } : {}) }],
      description: v.description,
    }));
}

/** Conv variants that can run here. `reference` is the oracle and is timed only when named. */
export function availableConvVariants(): { all: string[]; timedByDefault: string[] } {
  const all = addon().convVariants().filter((v) => v.available).map((v) => v.name);
  return { all, timedByDefault: all.filter((v) => v !== 'reference') };
}
