// Parameters of a TrainingStep: initialisation, and loading/saving them as
// safetensors with torchvision's names (so PyTorch models move both ways).
import { readSafetensors, toFloat32, writeSafetensors, type SafeTensor } from '../io/safetensors';
import { UsageError } from '../errors';
import type { ResNetGraph } from '../model/graph';
import type { TrainingStep } from './executor';

/**
 * torchvision's scheme with uniform draws of the same variance: conv weights
 * Kaiming (fan_out, ReLU gain), batch norm weight 1 and bias 0, running mean
 * 0 and var 1, fc weight and bias uniform(+-1/sqrt(in)).
 */
export function initWeights(step: TrainingStep, seed: number): void {
  let k = 0;
  for (const p of step.graph.params) {
    const b = step.params.get(p.name)!;
    const leaf = p.name.slice(p.name.lastIndexOf('.') + 1);
    const isBn = p.shape.length === 1 && !p.name.startsWith('fc.');
    if (p.shape.length === 4) {
      const fanOut = p.shape[0] * p.shape[2] * p.shape[3];
      const a = Math.sqrt(2 / fanOut) * Math.sqrt(3);
      b.fillUniform(seed * 1000 + k++, -a, a);
    } else if (isBn) {
      b.fill(leaf === 'weight' || leaf === 'running_var' ? 1 : 0);
    } else {
      const a = 1 / Math.sqrt(step.graph.params.find((q) => q.name === 'fc.weight')!.shape[1]);
      b.fillUniform(seed * 1000 + k++, -a, a);
    }
  }
}

export function loadWeights(step: TrainingStep, path: string): void {
  let file;
  try {
    file = readSafetensors(path);
  } catch (err) {
    throw new UsageError(`--weights: ${(err as Error).message}`);
  }
  const expected = new Set(step.graph.params.map((p) => p.name));
  const unknown = [...file.tensors.keys()].filter((n) => !expected.has(n) && !n.endsWith('num_batches_tracked'));
  if (unknown.length > 0) {
    throw new UsageError(`--weights ${path}: tensor '${unknown[0]}' is not a parameter of this network` +
      (unknown.length > 1 ? ` (and ${unknown.length - 1} more)` : '') + `; names follow torchvision, e.g. conv1.weight, layer1.0.bn2.running_mean, fc.bias`);
  }
  for (const p of step.graph.params) {
    const t = file.tensors.get(p.name);
    if (!t) throw new UsageError(`--weights ${path}: tensor '${p.name}' is missing (shape [${p.shape}])`);
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new UsageError(`--weights ${path}: tensor '${p.name}' has shape [${t.shape}], this network needs [${p.shape}] (check --width, --classes)`);
    }
    let data: Float32Array;
    try {
      data = toFloat32(t, p.name);
    } catch (err) {
      throw new UsageError(`--weights ${path}: ${(err as Error).message}`);
    }
    step.params.get(p.name)!.write(data);
  }
}

export function currentWeights(step: TrainingStep): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  for (const p of step.graph.params) out.set(p.name, { dtype: 'F32', shape: p.shape, data: step.params.get(p.name)!.read() });
  return out;
}

export function saveWeights(step: TrainingStep, path: string): void {
  writeSafetensors(path, currentWeights(step), { format: 'pt', producer: 'stepscope' });
}

/** A fixed batch from safetensors: `input` (NCHW float32) and `labels` (int64). */
export function loadBatch(graph: ResNetGraph, path: string): { input: Float32Array; labels: Float32Array } {
  let file;
  try {
    file = readSafetensors(path);
  } catch (err) {
    throw new UsageError(`--input: ${(err as Error).message}`);
  }
  const input = file.tensors.get('input');
  const labels = file.tensors.get('labels');
  if (!input) throw new UsageError(`--input ${path}: tensor 'input' is missing (NCHW float32 [${graph.inputShape}])`);
  if (!labels) throw new UsageError(`--input ${path}: tensor 'labels' is missing (int64 [${graph.batch}])`);
  if (input.shape.join() !== graph.inputShape.join()) {
    throw new UsageError(`--input ${path}: tensor 'input' has shape [${input.shape}], this run needs [${graph.inputShape}] (check --batch, --resolution)`);
  }
  if (labels.shape.join() !== String(graph.batch) || (labels.dtype !== 'I64' && labels.dtype !== 'I32')) {
    throw new UsageError(`--input ${path}: tensor 'labels' is ${labels.dtype} [${labels.shape}], needs I64 [${graph.batch}]`);
  }
  const values = [...(labels.data as ArrayLike<number | bigint> & Iterable<number | bigint>)].map((v) => Number(v));
  const bad = values.findIndex((v) => !(v >= 0 && v < graph.classes));
  if (bad >= 0) throw new UsageError(`--input ${path}: label ${values[bad]} of sample ${bad} is not a class in 0..${graph.classes - 1}`);
  return { input: toFloat32(input, 'input'), labels: new Float32Array(values) };
}
