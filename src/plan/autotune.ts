// Autotuning on the CPU backend: every candidate variant of every convolution
// layer is checked against the reference and timed (through benchConv) at
// the step's own batch and size, and each layer gets the variant with the
// least forward + backward-data + backward-filter time (reorders included).
// The step runs one variant per layer for all three passes.
import { benchConv, type ConvBenchRow } from '../bench/conv-bench';
import { resnet50Convs } from '../model/resnet50';
import { CONV_PASSES } from '../ops/conv';
import { availableConvVariants } from '../variants';
import { defaultPlan, type Plan } from './plan';

/** Fast variants that work in the NCHW layout (the reference and direct loops are far slower). */
export const AUTOTUNE_CANDIDATES = ['onednn', 'onednn-nchw', 'im2col-gemm', 'im2col-blas'];

export interface AutotuneResult {
  plan: Plan;
  /** Per layer: the chosen variant and each candidate's total ms. */
  choices: { layer: string; variant: string; totals: Record<string, number> }[];
  rows: ConvBenchRow[];
}

export async function autotunePlan(
  scale: { batch: number; resolution: number; width: number },
  peakGflops: number,
  onProgress?: (done: number, total: number, what: string) => void,
): Promise<AutotuneResult> {
  const available = availableConvVariants().all;
  const variants = AUTOTUNE_CANDIDATES.filter((v) => available.includes(v));
  const layers = resnet50Convs(scale);
  const rows = await benchConv({ layers, passes: CONV_PASSES, variants, repeat: 3, warmup: 1, checkBatch: 1, peakGflops, onProgress });
  const plan = defaultPlan();
  const choices: AutotuneResult['choices'] = [];
  for (const layer of layers) {
    const totals: Record<string, number> = {};
    for (const v of variants) {
      const mine = rows.filter((r) => r.layer === layer.name && r.variant === v);
      // A variant that failed its check, or lacks a pass, is not a candidate.
      if (mine.length === 0 || mine.some((r) => r.status !== 'ok' || r.medianMs === null)) continue;
      totals[v] = mine.reduce((s, r) => s + r.medianMs! + r.reorderMs, 0);
    }
    const best = Object.entries(totals).sort((a, b) => a[1] - b[1])[0];
    if (!best) throw new Error(`autotune: no candidate variant passed its check for ${layer.name}`);
    plan.layers[layer.name] = best[0];
    choices.push({ layer: layer.name, variant: best[0], totals });
  }
  return { plan, choices, rows };
}
