// The table of op variants across backends, as `stepscope variants` prints it.
import { addon } from './native';
import { cudaAddonIfLoaded, cudaStatus } from './native-cuda';

export interface VariantRow {
  op: string;
  variant: string;
  /** passes: for CUDA variants, the conv passes the variant has. */
  backends: { backend: string; available: boolean; reason?: string; passes?: string[] }[];
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
  const fused: VariantRow = {
    op: 'batchnorm',
    variant: 'fused-relu',
    backends: [{ backend: 'cpu', available: true }],
    description: 'plan choice: batch norm and the ReLU after it in one pass (fast kernels with relu=1; on cuda its cuda kernels)',
  };
  const cudaOps = cudaOpRows();
  if (cudaOps.length > 0) fused.backends.push(cudaBackend());
  // Each op's CUDA rows after its CPU rows (ops CUDA alone has, as input, last).
  const order = (op: string) => {
    const i = ops.findIndex((r) => r.op === op);
    return i < 0 ? ops.length : i;
  };
  const opRows = [...ops, ...cudaOps].sort((a, b) => order(a.op) - order(b.op)); // stable: CPU rows first within an op
  return [...mergeCudaConv(conv), ...opRows, fused];
}

/** The CUDA backend's availability, as a row's backend entry. */
function cudaBackend(): VariantRow['backends'][number] {
  const status = cudaStatus();
  return { backend: 'cuda', available: status.available, ...(status.available ? {} : { reason: status.reason }) };
}

/** The CUDA addon's other ops (batch norm, pooling, FC, ...: `cuda`, batch norm also `cudnn`), rows of their own. */
function cudaOpRows(): VariantRow[] {
  const cuda = cudaAddonIfLoaded();
  if (!cuda) return [];
  return cuda.opVariants().map((v) => ({ op: v.op, variant: v.name, backends: [cudaBackend()], description: v.description }));
}

/**
 * Adds the CUDA addon's conv variants: a name both backends have (direct)
 * gets both backends; the others are rows of their own. Without a usable
 * device they are listed as unavailable with the reason; without the addon
 * they are not listed (cudaStatus says why).
 */
function mergeCudaConv(conv: VariantRow[]): VariantRow[] {
  const cuda = cudaAddonIfLoaded();
  if (!cuda) return conv;
  const rows = [...conv];
  for (const v of cuda.convVariants()) {
    const backend = { ...cudaBackend(), passes: v.passes };
    const same = rows.find((r) => r.variant === v.name);
    if (same) {
      same.backends.push(backend);
      same.description += `; on cuda: ${v.description}`;
    } else rows.push({ op: 'conv', variant: v.name, backends: [backend], description: v.description });
  }
  return rows;
}

/** The CUDA conv variant names (the CUDA addon's table), or [] without the addon. */
export function cudaConvVariantNames(): string[] {
  return cudaAddonIfLoaded()?.convVariants().map((v) => v.name) ?? [];
}

/** Conv variants that can run here. `reference` is the oracle and is timed only when named. */
export function availableConvVariants(): { all: string[]; timedByDefault: string[] } {
  const all = addon().convVariants().filter((v) => v.available).map((v) => v.name);
  return { all, timedByDefault: all.filter((v) => v !== 'reference') };
}
