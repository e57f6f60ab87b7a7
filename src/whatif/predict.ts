// A prediction from a recorded run: its model with the changes applied, then
// replayed. The replay of the unchanged run is compared with the run's own
// measured median: that ratio (noise the per-kernel means do not carry, cost
// the model does not see) calibrates the prediction, and is shown with it.
import type { Breakdown } from '../analysis/breakdown';
import type { Run } from '../run/training';
import { replay, type Prediction } from './replay';
import { modelFromRun, type StepModel } from './step-model';

export interface CalibratedPrediction extends Prediction {
  /** The replay's iteration time times the calibration. */
  totalMs: number;
  /** Measured median / replay of the unchanged run. */
  calibration: number;
  /** The unchanged run's replay and its measured median (the model's own error). */
  baseline: { replayMs: number; measuredMs: number };
  notes: string[];
}

export function predict(base: Run, change: (model: StepModel) => StepModel): CalibratedPrediction {
  const model = modelFromRun(base);
  const unchanged = replay(model);
  const measuredMs = base.summary.totalMs.median;
  const calibration = measuredMs / unchanged.breakdown.totalMs;
  const changed = change(model);
  const p = replay(changed);
  return {
    ...p,
    totalMs: p.breakdown.totalMs * calibration,
    calibration,
    baseline: { replayMs: unchanged.breakdown.totalMs, measuredMs },
    notes: changed.notes,
  };
}

/** The breakdown scaled by the calibration (phases in ms; the overlap fraction unchanged). */
export function calibrated(b: Breakdown, calibration: number): Breakdown {
  const s = (x: number) => x * calibration;
  return {
    totalMs: s(b.totalMs), dataMs: s(b.dataMs), forwardMs: s(b.forwardMs), backwardMs: s(b.backwardMs),
    reductionMs: s(b.reductionMs), reductionExposedMs: s(b.reductionExposedMs), overlap: b.overlap,
    optimizerMs: s(b.optimizerMs), idleMs: s(b.idleMs),
  };
}
