// The commands that explain runs: reproduce (the main job), explain, whatif
// and peers, registered on the CLI's program (src/cli.ts owns the rest).
import type { Command } from 'commander';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveBackend } from '../backend';
import { UsageError } from '../errors';
import { LINK_GBPS, OutputWriter, parseChoiceList, parseInteger, parseNumber } from '../options';
import { htmlReport } from '../report/html-report';
import { progressBar } from '../report/progress';
import { loadProfile } from '../run/profile';
import type { Run } from '../run/training';
import { explain, formatExplained, pathOf } from './explain';
import { DEFAULT_PYTHON, formatPeers, runPeers, type PeersOptions } from './peers';
import { formatReproduce, reproduce, reproduceReport, type ReproduceOptions } from './reproduce';
import { formatWhatIf, whatIf, type WhatIfOpts } from './whatif';

export function registerAnalysisCommands(program: Command, print: (text: string) => void): void {
  program
    .command('reproduce')
    .description("the main job: run the published comparison's two profiles (pytorch-like, tf-like) on this machine with generated data, print its table side by side, explain the difference, then predict and measure the hypothesis (the second profile with the first one's kernels)")
    .option('--batch <n>', 'batch per worker (the comparison: 32)', '4')
    .option('--resolution <px>', 'image size (the comparison: 224)', '112')
    .option('--width <n>', 'base width of the network (64 is ResNet-50)', '64')
    .option('--iterations <n>', 'measured iterations per run', '5')
    .option('--warmup <n>', 'warm-up iterations per run', '1')
    .option('--workers <n>', 'data-parallel workers (local communicator)', '2')
    .option('--link <GB/s>', 'modeled link for the all-reduce', '2')
    .option('--latency <us>', 'link latency', '5')
    .option('--images <n>', 'generated JPEGs', '64')
    .option('--classes <k>', 'their classes', '4')
    .option('--profiles <a,b>', 'two profiles: shipped names or JSON files', 'pytorch-like,tf-like')
    .option('--backend <b>', "cpu, cuda (the profiles' kernels are CUDA's: autotune is cudnn:autotune, default cuDNN's heuristic), or auto (cuda when usable, else cpu, saying why)", 'cpu')
    .option('--data-dir <dir>', 'where generated data is kept (reused between runs)')
    .option('--save-dir <dir>', 'where the runs and the autotuned plan are saved', 'stepscope-reproduce')
    .option('--seed <n>', 'seed of data, weights and augmentation', '1')
    .option('--report <file>', 'write a self-contained HTML report')
    .option('--json', 'print JSON')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const str = (k: string) => opts[k] as string;
      const { backend, fallback } = resolveBackend(str('backend'));
      if (fallback) process.stderr.write(`stepscope: ${fallback}\n`);
      const profiles = str('profiles').split(',').map((x) => x.trim()).filter(Boolean);
      if (profiles.length !== 2) throw new UsageError(`--profiles takes two profiles separated by a comma; got '${str('profiles')}'`);
      const o: ReproduceOptions = {
        batch: parseInteger('--batch', str('batch'), 1, 4096),
        resolution: parseInteger('--resolution', str('resolution'), 32, 1024),
        width: parseInteger('--width', str('width'), 1, 1024),
        iterations: parseInteger('--iterations', str('iterations'), 1, 100000),
        warmup: parseInteger('--warmup', str('warmup'), 0, 1000),
        workers: parseInteger('--workers', str('workers'), 1, 16),
        link: { gbps: parseNumber('--link', str('link'), LINK_GBPS.min, LINK_GBPS.max), latencyUs: parseNumber('--latency', str('latency'), 0, 1e6) },
        images: parseInteger('--images', str('images'), 1, 10_000_000),
        classes: parseInteger('--classes', str('classes'), 2, 100000),
        dataDir: (opts.dataDir as string | undefined) ?? path.join(os.tmpdir(), 'stepscope-data'),
        saveDir: str('saveDir'),
        profiles: [profiles[0], profiles[1]],
        seed: parseInteger('--seed', str('seed'), 0, 2 ** 31 - 1),
        backend,
      };
      for (const p of profiles) loadProfile(p); // bad profiles fail before any work
      if (o.images < o.batch) throw new UsageError(`--images ${o.images} is fewer than one batch (--batch ${o.batch})`);
      const r = await reproduce(o, progressBar(!opts.json));
      // A report that cannot be written is reported after the printed result (exit 1), not instead of it.
      const out = new OutputWriter();
      out.text('--report', opts.report as string | undefined, () => reproduceReport(r));
      if (opts.json) {
        const strip = ({ timeline: _t, kernels: _k, ...rest }: Run) => rest;
        print(JSON.stringify({ profiles: r.profiles, runs: r.runs.map(strip), attribution: r.attribution, hypothesis: { ...r.hypothesis, run: strip(r.hypothesis.run) }, files: r.files }, null, 2));
      } else {
        print(formatReproduce(r, o));
      }
      out.finish();
    });

  program
    .command('explain')
    .description('attribute the difference in iteration time between two saved runs (step --save) to data wait, forward and backward kernels, contention, exposed reduction, optimizer and idle gaps; with the critical path of each. One run: its parts and critical path')
    .argument('<runs...>', 'one or two run files (a file saved by step --compare holds two; pick one as file.json:N)')
    .option('--top <n>', 'kernels that differ most to list', '10')
    .option('--json', 'print JSON')
    .option('--report <file>', 'write a self-contained HTML report')
    .action((files: string[], opts: { top: string; json?: boolean; report?: string }) => {
      if (files.length > 2) throw new UsageError(`explain takes one or two run files; got ${files.length}`);
      const e = explain(files, parseInteger('--top', opts.top, 1, 1000));
      const out = new OutputWriter();
      out.text('--report', opts.report, () => htmlReport({ title: `stepscope explain: ${files.join(' vs ')}`, runs: e.runs, attribution: e.attribution }));
      if (opts.json) print(JSON.stringify({ runs: e.runs.map((r) => ({ name: r.name, criticalPath: r.path })), attribution: e.attribution }, null, 2));
      else print(formatExplained(e));
      out.finish();
    });

  program
    .command('whatif')
    .description("predict a saved run's iteration time and breakdown under changed kernels, schedule, buckets, workers or link, by replaying its dependency graph; --scale-out projects both schedules over worker counts")
    .argument('<run>', 'a run saved by step --save (file.json:N for one of several)')
    .option('--kernels <source>', "kernel durations from another saved run, from `bench conv --json` output, or a plan (a plan JSON or 'conv=im2col-gemm,res2a_branch2b=onednn': the convolutions it changes are measured now at the run's shapes)")
    .option('--variant <name>', "with a conv benchmark: the variant whose times to take, or 'best' (fastest per layer and pass)", 'best')
    .option('--schedule <s>', 'serialized or overlapped')
    .option('--bucket-mb <mb>', 'gradient bucket size')
    .option('--first-bucket-mb <mb>', 'size of the first bucket')
    .option('--workers <n>', 'data-parallel workers')
    .option('--link <GB/s>', 'a modeled link: ring all-reduce at this bandwidth')
    .option('--latency <us>', 'the link latency per step of the ring')
    .option('--scale-out <list>', 'worker counts for a scale-out projection of both schedules, e.g. 1,2,4,8,16,32,64')
    .option('--json', 'print JSON')
    .option('--report <file>', 'write a self-contained HTML report')
    .action(async (file: string, opts: WhatIfOpts) => {
      const bar = progressBar(!opts.json);
      const r = await whatIf(file, opts, (done, total, what) => bar.update(done / total, `measuring the plan's convolutions: ${what}`));
      bar.done();
      const out = new OutputWriter();
      if (opts.report) {
        const rows = [{ label: 'unchanged (replay)', predictedMs: r.prediction.baseline.replayMs * r.prediction.calibration, measuredMs: r.prediction.baseline.measuredMs },
          { label: r.changes.join('; ') || 'unchanged', predictedMs: r.prediction.totalMs },
          ...(r.check ? [{ label: `check: reduction ${r.check.schedule} (the run's own ${r.check.iterationsMs.length} iterations)`, predictedMs: r.check.predictedMs, measuredMs: r.check.measuredMs }] : [])];
        const scale = (r.scaleOut ?? []).flatMap((p) => [{ label: `${p.workers} workers, serialized`, predictedMs: p.serializedMs }, { label: `${p.workers} workers, overlapped`, predictedMs: p.overlappedMs }]);
        out.text('--report', opts.report, () => htmlReport({
          title: `stepscope whatif: ${file}`,
          runs: [{ name: file, run: r.base, path: pathOf(r.base) }],
          whatif: [{ title: 'What-if prediction', rows, notes: r.prediction.notes }, ...(scale.length ? [{ title: 'Scale-out projection', rows: scale }] : [])],
        }));
      }
      if (opts.json) {
        const { base: _b, prediction, ...rest } = r;
        const { timeline: _t, ...p } = prediction;
        print(JSON.stringify({ ...rest, prediction: p }, null, 2));
      } else {
        print(formatWhatIf(r));
      }
      out.finish();
    });

  program
    .command('peers')
    .description("the same ResNet-50 step in stepscope and, when the user's Python has them, PyTorch and TensorFlow, in the same breakdown")
    .option('--batch <n>', 'batch size', '8')
    .option('--resolution <px>', 'image size', '224')
    .option('--iterations <n>', 'measured iterations', '3')
    .option('--warmup <n>', 'warm-up iterations', '1')
    .option('--framework <list>', 'pytorch, tensorflow or both', 'both')
    .option('--python <exe>', 'the Python that has the frameworks', DEFAULT_PYTHON)
    .option('--json', 'print JSON')
    .option('--report <file>', 'write a self-contained HTML report')
    .action(async (opts: { batch: string; resolution: string; iterations: string; warmup: string; framework: string; python: string; json?: boolean; report?: string }) => {
      const fw = parseChoiceList('--framework', opts.framework, ['pytorch', 'tensorflow', 'both']);
      const o: PeersOptions = {
        batch: parseInteger('--batch', opts.batch, 1, 4096),
        resolution: parseInteger('--resolution', opts.resolution, 32, 1024),
        iterations: parseInteger('--iterations', opts.iterations, 1, 1000),
        warmup: parseInteger('--warmup', opts.warmup, 0, 100),
        python: opts.python,
        frameworks: fw.includes('both') ? ['pytorch', 'tensorflow'] : (fw as ('pytorch' | 'tensorflow')[]),
      };
      // The frameworks' training-mode batch norm needs two values per channel or more; res5's plane is resolution/32.
      const res5 = Math.ceil(o.resolution / 32);
      if (o.batch * res5 * res5 < 2) {
        throw new UsageError(`--batch ${o.batch} is not allowed at --resolution ${o.resolution}: res5's ${res5}x${res5} plane leaves one value per channel, ` +
          "which the frameworks' batch norm refuses in training; give --batch 2 or more, or --resolution 64 or more");
      }
      const bar = progressBar(!opts.json);
      const steps = 1 + o.frameworks.length;
      let at = 0;
      const r = await runPeers(o, (what) => bar.update(at++ / steps, what));
      bar.done();
      const out = new OutputWriter();
      if (opts.report) {
        const s = r.stepscope.summary;
        const cell = (v: number | undefined) => (v === undefined ? '-' : v);
        out.text('--report', opts.report, () => htmlReport({
          title: `stepscope peers: batch ${o.batch}, ${o.resolution}x${o.resolution}`,
          runs: [{ name: 'stepscope', run: r.stepscope, path: pathOf(r.stepscope) }],
          tables: [{
            title: 'The same step in each framework (median ms per iteration)',
            headers: ['framework', 'iteration', 'forward', 'backward', 'optimizer', 'note'],
            rows: [
              ['stepscope', s.totalMs.median, s.forwardMs.median, s.backwardMs.median, s.optimizerMs.median, ''],
              ...r.peers.map((p) => [p.version ? `${p.name} ${p.version}` : p.name, cell(p.totalMs), cell(p.forwardMs), cell(p.backwardMs), cell(p.optimizerMs), p.error ?? '']),
            ],
          }],
        }));
      }
      if (opts.json) {
        const { timeline: _t, kernels: _k, ...run } = r.stepscope;
        print(JSON.stringify({ stepscope: run, peers: r.peers }, null, 2));
      } else {
        print(formatPeers(r, o));
      }
      out.finish();
    });
}
