// What `step --json` prints of its runs, and when a timeout or Ctrl-C stops it before the end:
// the runs it finished (the first schedule of --compare) and the iterations of
// the run under way, with a summary over its measured ones. A device session
// is short; an interrupted step should still say what it measured. Its format
// differs from a run's, so explain and whatif never take it for a whole run.
import { RUN_FORMAT_VERSION, summarizeIterations, type IterationFigures, type Run, type TrainingConfig } from './training';

export interface PartialRun {
  format: 'stepscope-partial-run';
  version: typeof RUN_FORMAT_VERSION;
  createdAt: string;
  /** The signal that stopped the step. */
  interrupted: NodeJS.Signals;
  /** The whole runs before the one under way, as --json prints them (with --compare: the serialized one). */
  completed: object[];
  /** The run under way (absent between runs): its schedule, configuration, environment and iterations so far. */
  schedule?: string;
  config?: Omit<TrainingConfig, 'localGroup' | 'outputs'>;
  /** Absent if it stopped before its first iteration ended. */
  environment?: Run['environment'];
  iterations: IterationFigures[];
  /** Measured (not warm-up) iterations so far, of the `config.iterations` asked for. */
  measured: number;
  /** Over the measured iterations so far (the median total: the lower middle, as a run's); absent when none is. */
  summary?: Run['summary'];
}

export interface RunUnderWay {
  schedule: string;
  config: TrainingConfig;
  environment?: Run['environment'];
  iterations: IterationFigures[];
}

/**
 * A run as `step --json` prints it: without its timeline (and the other GPUs'), and without a native handle
 * (a finished run of --compare still holds its communicator while the next one runs).
 */
export function printedRun({ timeline: _timeline, ...run }: Run): object {
  return { ...run, config: withoutCommunicator(run.config), ...(run.replicas ? { replicas: { ...run.replicas, timelines: undefined } } : {}) };
}

/** A configuration without its reduction's communicator (a native handle, not data). */
function withoutCommunicator<C extends Pick<TrainingConfig, 'reduction'>>(config: C): C {
  return config.reduction ? { ...config, reduction: { ...config.reduction, communicator: undefined } } : config;
}

/** The partial result for `signal`; `completed`: the whole runs as --json prints them. */
export function partialRun(signal: NodeJS.Signals, completed: object[], current: RunUnderWay | undefined): PartialRun {
  const head: Pick<PartialRun, 'format' | 'version' | 'createdAt' | 'interrupted' | 'completed'> = { format: 'stepscope-partial-run', version: RUN_FORMAT_VERSION, createdAt: new Date().toISOString(), interrupted: signal, completed };
  if (!current) return { ...head, iterations: [], measured: 0 };
  const measured = current.iterations.filter((f) => !f.warmup);
  // Native handles and writers are not data (as in a run's config).
  const { localGroup: _group, outputs: _outputs, ...config } = current.config;
  return {
    ...head,
    schedule: current.schedule,
    config: withoutCommunicator(config),
    environment: current.environment,
    iterations: current.iterations,
    measured: measured.length,
    summary: measured.length > 0 ? summarizeIterations(measured, measured.some((f) => f.dataBusyMs !== undefined)) : undefined,
  };
}
