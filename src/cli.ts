// The stepscope command line: parses, validates, prints. No logic of its own.
import { Command, CommanderError, Option } from 'commander';
import { benchConv, failedCheckText, sortBenchRows, type ConvBenchRow } from './bench/conv-bench';
import { benchConvCuda } from './bench/conv-bench-cuda';
import { resolveBackend } from './backend';
import { cudaAddon, cudaStatus } from './native-cuda';
import { doctor, doctorReport, formatDoctor } from './doctor';
import { DATA_ERROR_CODES, DataError, DivergedError, isSystemError, OutputError, printable, UsageError } from './errors';
import { resnet50Convs } from './model/resnet50';
import { addon } from './native';
import { CONV_PASSES } from './ops/conv';
import { givenOptions, guardOptionValues, LINK_GBPS, OUTPUT_FILE_OPTIONS, OutputWriter, parseBuckets, parseChoice, parseChoiceList, parseInteger, parseNumber } from './options';
import { formatTable } from './report/table';
import { availableConvVariants, listVariants } from './variants';
import { checkOutputTarget } from './io/output-path';
import { writeOnTermination } from './io/termination';
import { htmlReport } from './report/html-report';
import { resnet50Graph } from './model/graph';
import { parsePlan } from './plan/plan';
import { runTraining } from './run/training';
import { convBenchReport, dataBenchReport, formatBenchRows } from './report/bench-report';
import { progressBar } from './report/progress';
import { launch } from './launch';
import { registerAnalysisCommands } from './commands/register';
import { DEFAULT_DATA_THREADS, parseOnBadImage, runStep, type StepOpts } from './commands/step';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { ConvPass } from '../binding';
import { makeImageFolder } from './data/make';
import { packImageFolder } from './data/pack';
import { benchData, makeBenchImageFolder } from './bench/data-bench';

function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** The progress bar (on a terminal, not with --json) as a `done of total` callback. */
function progress(enabled: boolean) {
  const bar = progressBar(enabled);
  return (done: number, total: number, what: string) => {
    bar.update(done / total, `[${done + 1}/${total}] ${what}`);
    if (done + 1 === total) bar.done();
  };
}

async function runDoctor(opts: { json?: boolean; trials: string; report?: string }) {
  const report = await doctor(parseInteger('--trials', opts.trials, 1, 100));
  const out = new OutputWriter();
  out.text('--report', opts.report, () => doctorReport(report));
  print(opts.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
  out.finish();
}

function runVariants(opts: { json?: boolean }) {
  const rows = listVariants();
  if (opts.json) return print(JSON.stringify(rows, null, 2));
  // A backend-wide reason (no GPU) would repeat on every row: numbered notes instead.
  const notes: string[] = [];
  const note = (reason: string) => {
    if (!notes.includes(reason)) notes.push(reason);
    return `[${notes.indexOf(reason) + 1}]`;
  };
  print(
    formatTable(rows, [
      { header: 'op', value: (r) => r.op },
      { header: 'variant', value: (r) => r.variant },
      {
        header: 'backends',
        value: (r) =>
          r.backends
            .map((b) => {
              // A CUDA variant that lacks some passes (a cuDNN algorithm of one pass) names those it has.
              const name = b.passes && b.passes.length < 3 ? `${b.backend} [${b.passes.join(', ')}]` : b.backend;
              return b.available ? name : `${name} (unavailable ${note(b.reason ?? '')})`;
            })
            .join(', '),
      },
      { header: 'description', value: (r) => r.description },
    ]),
  );
  notes.forEach((n, i) => print(`[${i + 1}] ${n}`));
  const cuda = cudaStatus();
  if (!cuda.loaded) print(`cuda variants not listed: ${cuda.reason}`);
}

interface BenchConvOpts {
  backend: string;
  dtype: string;
  layout: string;
  layer: string;
  pass: string;
  variant: string;
  batch: string;
  resolution: string;
  repeat: string;
  warmup: string;
  checkBatch: string;
  cold?: boolean;
  json?: boolean;
  report?: string;
}

async function runBenchConv(opts: BenchConvOpts) {
  const batch = parseInteger('--batch', opts.batch, 1, 1024);
  const resolution = parseInteger('--resolution', opts.resolution, 32, 1024);
  const repeat = parseInteger('--repeat', opts.repeat, 1, 10000);
  const warmup = parseInteger('--warmup', opts.warmup, 0, 1000);
  const checkBatch = parseInteger('--check-batch', opts.checkBatch, 1, 1024);
  const allLayers = resnet50Convs({ batch, resolution });
  const names = parseChoiceList('--layer', opts.layer, allLayers.map((l) => l.name));
  const layers = allLayers.filter((l) => names.includes(l.name));
  const passes = parseChoiceList('--pass', opts.pass, CONV_PASSES) as ConvPass[];
  const { backend, fallback } = resolveBackend(opts.backend);
  if (fallback) process.stderr.write(`stepscope: ${fallback}\n`);
  const dtypes = backend === 'cuda' ? ['fp32', 'tf32', 'bf16'] : ['fp32'];
  if (!dtypes.includes(opts.dtype)) throw new UsageError(`--dtype '${opts.dtype}' is not allowed on the ${backend} backend: allowed ${dtypes.join(', ')}`);
  const dtype = opts.dtype as 'fp32' | 'tf32' | 'bf16';
  if (backend === 'cuda' && opts.cold) throw new UsageError('--cold is not allowed with the cuda backend yet: only the cpu benchmark flushes caches');
  const layout = parseChoice('--layout', opts.layout, ['nchw', 'nhwc'] as const);
  if (layout === 'nhwc' && backend !== 'cuda') throw new UsageError("--layout nhwc is not allowed on the cpu backend: allowed nchw (nhwc is CUDA's, with cuDNN's convolutions)");
  if (backend === 'cuda') return runBenchConvCuda(opts, { batch, resolution, repeat, warmup, checkBatch, layers, passes, dtype, layout });
  const allVariants = addon().convVariants();
  const { timedByDefault } = availableConvVariants();
  const variants = parseChoiceList('--variant', opts.variant, allVariants.map((v) => v.name), timedByDefault);
  for (const v of allVariants) {
    if (variants.includes(v.name) && !v.available) {
      throw new UsageError(`--variant '${v.name}' is unavailable on this build: ${v.unavailableReason}`);
    }
  }
  const peak = await addon().measurePeak(3);
  const rows = await benchConv({
    layers,
    passes,
    variants,
    repeat,
    warmup,
    checkBatch,
    cold: opts.cold === true,
    peakGflops: peak.fmaGflops,
    onProgress: progress(!opts.json),
  });
  if (opts.json) {
    print(
      JSON.stringify(
        {
          machine: { cpuModel: os.cpus()[0]?.model, threads: peak.threads, peak },
          backend: 'cpu',
          dtype: 'fp32',
          batch,
          resolution,
          repeat,
          warmup,
          cold: opts.cold === true,
          rows,
        },
        null,
        2,
      ),
    );
  }
  const header =
    `conv benchmark: cpu backend, fp32, batch ${batch}, ${resolution}x${resolution}, ${warmup} warm-up + ${repeat} timed runs${opts.cold ? ', caches flushed before each' : ''}; ` +
    `peak ${peak.fmaGflops.toFixed(1)} GFLOP/s fp32 FMA, ${peak.bandwidthGBs.toFixed(1)} GB/s (${peak.threads} threads)`;
  const out = new OutputWriter();
  out.text('--report', opts.report, () => convBenchReport(rows, 'stepscope bench conv', [header, `machine: ${os.cpus()[0]?.model ?? 'unknown'}`]));
  if (!opts.json) {
    print(header);
    print(formatBenchRows(rows));
  }
  reportFailedChecks(rows);
  out.finish();
}

function reportFailedChecks(rows: ConvBenchRow[]) {
  const failed = rows.filter((r) => r.status === 'failed-check');
  if (failed.length > 0) {
    process.stderr.write(
      `stepscope: ${failed.length} row(s) failed the reference check and were not timed: ` +
        failed.map((r) => `${r.layer} ${r.pass} ${r.variant} (${failedCheckText(r)})`).join('; ') +
        '\n',
    );
    process.exitCode = 1;
  }
  const errors = rows.filter((r) => r.status === 'error' && !r.sameShapeAs);
  if (errors.length > 0) {
    process.stderr.write(`stepscope: ${errors.length} row(s) failed in the library and were not timed: ${errors.map((r) => r.reason).join('; ')}\n`);
    process.exitCode = 1;
  }
}

async function runBenchConvCuda(
  opts: BenchConvOpts,
  o: { batch: number; resolution: number; repeat: number; warmup: number; checkBatch: number; layers: ReturnType<typeof resnet50Convs>; passes: ConvPass[]; dtype: 'fp32' | 'tf32' | 'bf16'; layout: 'nchw' | 'nhwc' },
) {
  const cuda = cudaAddon();
  const names = cuda.convVariants().map((v) => v.name);
  const variants = parseChoiceList('--variant', opts.variant, names);
  const peak = await cuda.measurePeak(3);
  const info = cuda.cudaInfo();
  const result = (rows: ConvBenchRow[], interrupted?: NodeJS.Signals) =>
    JSON.stringify(
      {
        machine: { gpu: info.device, driver: info.driverVersion, runtime: info.runtimeVersion, cudnn: info.cudnn.version, cublas: info.cublas, peak },
        backend: 'cuda',
        dtype: o.dtype,
        layout: o.layout,
        batch: o.batch,
        resolution: o.resolution,
        repeat: o.repeat,
        warmup: o.warmup,
        ...(interrupted ? { interrupted } : {}),
        rows,
      },
      null,
      2,
    );
  // --json stopped by a timeout or Ctrl-C: the rows so far, marked interrupted (a device session's time is short).
  const partial: ConvBenchRow[] = [];
  const order = { layers: o.layers, passes: o.passes, variants };
  const stopWatching = opts.json ? writeOnTermination((signal) => result(sortBenchRows(partial, order), signal)) : () => {};
  let rows: ConvBenchRow[];
  try {
    rows = await benchConvCuda({ ...o, variants, peak, onlyWithPass: opts.variant.trim() === 'all', onProgress: progress(!opts.json), onRow: (r) => partial.push(r) });
    // The final print and the end of the watch in one turn of the event loop: a signal meanwhile finds the
    // whole result out already (see writeOnTermination).
    if (opts.json) print(result(rows));
  } finally {
    stopWatching();
  }
  const header =
    `conv benchmark: cuda backend on ${info.device?.name} (driver ${info.driverVersion}, cuDNN ${info.cudnn.version ?? 'unusable'}, cuBLAS ${info.cublas}), ` +
    `${o.dtype}, ${o.layout.toUpperCase()}, batch ${o.batch}, ${o.resolution}x${o.resolution}, ${o.warmup} warm-up + ${o.repeat} timed runs (CUDA events); ` +
    `% of peak against the measured ${(peak.fp32Gflops / 1e3).toFixed(1)} (fp32) / ${(peak.tf32Gflops / 1e3).toFixed(1)} (tf32) / ${(peak.bf16Gflops / 1e3).toFixed(1)} (bf16) TFLOP/s`;
  const out = new OutputWriter();
  out.text('--report', opts.report, () => convBenchReport(rows, 'stepscope bench conv --backend cuda', [header]));
  if (!opts.json) {
    print(header);
    print(formatBenchRows(rows));
    const unsupported = rows.filter((r) => r.status === 'unsupported' && !r.sameShapeAs).length;
    if (unsupported > 0) print(`${unsupported} row(s) unsupported by their variant (the reason is in --json)`);
  }
  reportFailedChecks(rows);
  out.finish();
}

async function runDataMake(dir: string, opts: { images: string; classes: string; seed: string; threads: string; quality: string }) {
  const images = parseInteger('--images', opts.images, 1, 10_000_000);
  const classes = parseInteger('--classes', opts.classes, 1, 100_000);
  if (classes > images) throw new UsageError(`--classes ${classes} is not allowed with --images ${images}: every class needs an image (at most ${images} classes)`);
  const t0 = Date.now();
  const bar = progressBar(true);
  await makeImageFolder(dir, images, classes, parseInteger('--seed', opts.seed, 0, 2 ** 31 - 1), parseInteger('--threads', opts.threads, 1, 256), parseInteger('--quality', opts.quality, 1, 100),
    (done) => bar.update(done / images, `${done}/${images} images`));
  bar.done();
  print(`wrote ${images} JPEG images in ${classes} class folders under ${dir} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

async function runDataPack(folder: string, out: string, opts: { size: string; threads: string; onBadImage: string; json?: boolean }) {
  const bar = progressBar(!opts.json);
  const r = await packImageFolder(folder, out, parseInteger('--size', opts.size, 8, 4096), parseInteger('--threads', opts.threads, 1, 256), parseOnBadImage(opts.onBadImage),
    (fraction) => bar.update(fraction, 'decoding and writing records'));
  bar.done();
  if (opts.json) return print(JSON.stringify(r, null, 2));
  print(`packed ${r.records} of ${r.images} images (${r.classes} classes) into ${out}: ${(r.bytes / 2 ** 20).toFixed(1)} MiB, shorter side ${opts.size}, ${r.seconds.toFixed(1)} s`);
  if (r.skipped.length) print(`skipped ${r.skipped.length} bad image(s):\n${r.skipped.map((x) => `  ${x.message}`).join('\n')}`);
}

interface BenchDataOpts { dataset?: string; images: string; threads: string; batch: string; batches: string; warmup: string; size: string; packSize: string; kind: string; json?: boolean; report?: string }

async function runBenchData(opts: BenchDataOpts, given: Set<string>) {
  // --images sizes the generated ImageFolder: checked always, refused beside a dataset of the user's.
  const images = parseInteger('--images', opts.images, 1, 1_000_000);
  if (opts.dataset !== undefined && given.has('images')) {
    throw new UsageError(`--images ${opts.images} is not allowed with --dataset: --images sizes the generated ImageFolder, and --dataset '${opts.dataset}' is used as it is (leave one out)`);
  }
  const threads = opts.threads.split(',').map((t) => parseInteger('--threads', t.trim(), 1, 256));
  const batch = parseInteger('--batch', opts.batch, 1, 4096);
  const options = {
    threads, batch,
    batches: parseInteger('--batches', opts.batches, 1, 10000),
    warmup: parseInteger('--warmup', opts.warmup, 0, 1000),
    size: parseInteger('--size', opts.size, 8, 4096),
    packSize: parseInteger('--pack-size', opts.packSize, 8, 4096),
    kinds: parseChoiceList('--kind', opts.kind, ['raw', 'records']) as ('raw' | 'records')[],
  };
  let dataset = opts.dataset;
  let tmp: string | undefined;
  if (!dataset) {  // a generated ImageFolder, removed afterwards
    tmp = await makeBenchImageFolder(images, Math.max(...threads)); // removes what it made if it fails
    dataset = tmp;
  }
  try {
    const r = await benchData({ ...options, dataset, onProgress: progress(!opts.json) });
    const header = `data pipeline benchmark: ${r.images} images (${opts.dataset ?? 'generated by data make'}, mean JPEG ${(r.meanJpegBytes / 1024).toFixed(0)} KiB), ` +
      `crop ${options.size}x${options.size}, records shorter side ${options.packSize}; batch ${batch}, ${options.warmup} warm-up + ${options.batches} timed batches; files in the page cache`;
    const out = new OutputWriter();
    out.text('--report', opts.report, () => dataBenchReport(r.rows, 'stepscope bench data', [header, `machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.availableParallelism()} cores`]));
    if (opts.json) {
      print(JSON.stringify({ machine: { cpuModel: os.cpus()[0]?.model, cores: os.availableParallelism() }, dataset: opts.dataset ?? 'generated', ...options, ...r }, null, 2));
      return out.finish();
    }
    print(header);
    print(formatTable(r.rows, [
      { header: 'kind', value: (x) => x.kind === 'raw' ? 'raw (decode+augment)' : 'records (read+augment)' },
      { header: 'threads', value: (x) => String(x.threads) },
      { header: 'images/s', value: (x) => x.imagesPerSec.median, digits: 0 },
      { header: 'min', value: (x) => x.imagesPerSec.min, digits: 0 },
      { header: 'max', value: (x) => x.imagesPerSec.max, digits: 0 },
      { header: 'per thread', value: (x) => x.perThread, digits: 0 },
      { header: 'scaling', value: (x) => x.scaling, digits: 2 },
    ]));
    out.finish();
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

interface SweepOpts {
  workers: string; link: string; latency: string; schedule: string; batch: string; resolution: string; width: string;
  iterations: string; warmup: string; bucketMb: string; firstBucketMb: string; save?: string; json?: boolean; report?: string; backend: string;
}

async function runSweep(opts: SweepOpts) {
  const list = (option: string, text: string, min: number, max: number) =>
    text.split(',').map((v) => parseNumber(option, v.trim(), min, max));
  const workers = opts.workers.split(',').map((w) => parseInteger('--workers', w.trim(), 2, 100000));
  const links = list('--link', opts.link, LINK_GBPS.min, LINK_GBPS.max);
  const schedules = opts.schedule === 'both' ? ['serialized', 'overlapped'] as const
    : [parseChoice('--schedule', opts.schedule, ['serialized', 'overlapped', 'both'] as const) as 'serialized' | 'overlapped'];
  const batch = parseInteger('--batch', opts.batch, 1, 4096);
  const resolution = parseInteger('--resolution', opts.resolution, 32, 1024);
  const width = parseInteger('--width', opts.width, 1, 1024);
  const { backend, fallback } = resolveBackend(opts.backend);
  if (fallback) process.stderr.write(`stepscope: ${fallback}\n`);
  const graph = resnet50Graph({ batch, resolution, width, classes: 1000 });
  const base = {
    batch, resolution, width, classes: 1000, lr: 0.1, momentum: 0.9, weightDecay: 1e-4, seed: 1,
    iterations: parseInteger('--iterations', opts.iterations, 1, 1000), warmup: parseInteger('--warmup', opts.warmup, 0, 100),
    backend, plan: parsePlan('', graph, backend),
  };
  const latencyUs = parseNumber('--latency', opts.latency, 0, 1e6);
  const buckets = parseBuckets(opts);
  const points: { workers: number; gbps: number; schedule: string; totalMs: number; reductionMs: number; exposedMs: number; overlap: number }[] = [];
  const bar = progressBar(!opts.json);
  const total = workers.length * links.length * schedules.length;
  for (const w of workers)
    for (const gbps of links)
      for (const schedule of schedules) {
        bar.update(points.length / total, `sweep: ${w} workers, ${gbps} GB/s, ${schedule}`);
        const run = await runTraining({ ...base, reduction: { workers: w, schedule, comm: 'local', ...buckets, link: { gbps, latencyUs } } });
        const m = run.summary;
        points.push({ workers: w, gbps, schedule, totalMs: m.totalMs.median, reductionMs: m.reductionMs.median, exposedMs: m.reductionExposedMs.median, overlap: m.overlap.median });
      }
  bar.done();
  const out = new OutputWriter();
  const saved = out.json('--save', opts.save, () => ({ format: 'stepscope-sweep', version: 1, backend, batch, resolution, width, latencyUs, points }));
  out.text('--report', opts.report, () => htmlReport({
    title: `stepscope sweep (${backend}): batch ${batch}, ${resolution}x${resolution}, local communicator, modeled link (${latencyUs} us)`,
    runs: [],
    tables: [{
      title: 'Iteration time per workers x link x schedule',
      headers: ['workers', 'link GB/s', 'schedule', 'iteration ms', 'reduction ms', 'exposed ms', 'overlap %'],
      rows: points.map((p) => [String(p.workers), String(p.gbps), p.schedule, p.totalMs, p.reductionMs, p.exposedMs, 100 * p.overlap]),
    }],
  }));
  if (!opts.json && saved) process.stderr.write(`sweep: points saved to ${opts.save}\n`);
  if (opts.json) {
    print(JSON.stringify(points, null, 2));
    return out.finish();
  }
  print(`sweep (${backend}): batch ${batch} per worker, ${resolution}x${resolution}, width ${width}, --comm local with a modeled ring all-reduce (latency ${latencyUs} us); medians of ${base.iterations} iterations`);
  print(formatTable(points, [
    { header: 'workers', value: (p) => String(p.workers) },
    { header: 'link GB/s', value: (p) => String(p.gbps) },
    { header: 'schedule', value: (p) => p.schedule },
    { header: 'iteration ms', value: (p) => p.totalMs, digits: 0 },
    { header: 'reduction ms', value: (p) => p.reductionMs, digits: 0 },
    { header: 'exposed ms', value: (p) => p.exposedMs, digits: 0 },
    { header: 'overlap %', value: (p) => 100 * p.overlap, digits: 0 },
  ]));
  out.finish();
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('stepscope')
    .description('A kernel-level lab for the ResNet-50 training step')
    .exitOverride()
    .enablePositionalOptions()
    .showHelpAfterError(false)
    .hook('preAction', (_program, action) => {
      // A file the command writes at the end must be writable before hours of work.
      const o = action.opts() as Record<string, unknown>;
      for (const [key, option] of Object.entries(OUTPUT_FILE_OPTIONS)) if (typeof o[key] === 'string') checkOutputTarget(option, o[key] as string);
    });

  program
    .command('doctor')
    .description('backends, libraries and the measured peak of this machine')
    .option('--json', 'print JSON')
    .option('--trials <n>', 'peak measurement trials (best is kept)', '3')
    .option('--report <file>', 'write the same facts as a self-contained HTML report')
    .action(runDoctor);

  program
    .command('variants')
    .description("every op's variants and the backends that have them")
    .option('--json', 'print JSON')
    .action(runVariants);

  const bench = program.command('bench').description('kernel and input pipeline microbenchmarks');
  bench
    .command('conv')
    .description('time the ResNet-50 convolutions per layer, pass and variant, each checked against the reference first')
    .option('--backend <b>', "cpu, cuda, or auto (cuda when a GPU is usable, else cpu, saying why)", 'cpu')
    .option('--dtype <d>', "fp32; cuda also tf32 (cuDNN and cuBLAS may use TF32 tensor cores) or bf16 (bf16 x and y buffers, cudnn:* variants)", 'fp32')
    .option('--layout <l>', "nchw, or nhwc (cuda: x and y channels-last; cudnn:* variants only, our kernels are unsupported rows)", 'nchw')
    .option('--layer <names>', "a layer name (conv1, res2a_branch2a, ...), a comma list, or 'all'", 'all')
    .addOption(new Option('--pass <pass>', "fwd, bwd-data, bwd-filter, a comma list, or 'all'").default('all'))
    .option('--variant <names>', "a variant, a comma list, or 'all' (every available variant but the reference)", 'all')
    .option('--batch <n>', 'batch size', '8')
    .option('--resolution <px>', 'input resolution of the network', '224')
    .option('--repeat <n>', 'timed runs per row', '5')
    .option('--warmup <n>', 'untimed runs first', '1')
    .option('--check-batch <n>', 'batch of the reference check (same layer shape otherwise)', '2')
    .option('--cold', 'flush the caches before each run, as in a step where the kernels before pushed the data out (cpu)')
    .option('--json', 'print the rows as JSON')
    .option('--report <file>', 'write a self-contained HTML report (bars per layer and pass, every row)')
    .action(runBenchConv);

  bench
    .command('data')
    .description('images per second of the input pipeline per thread: raw (decode+augment) and records (read+augment), and the scaling with threads')
    .option('--dataset <dir>', 'an ImageFolder (default: a generated one of --images images)')
    .option('--images <n>', 'images of the generated ImageFolder', '128')
    .option('--kind <kinds>', "'raw', 'records', a comma list, or 'all'", 'all')
    .option('--threads <list>', 'comma list of thread counts', [...new Set(['1', DEFAULT_DATA_THREADS])].join(','))
    .option('--batch <n>', 'images per batch', '32')
    .option('--batches <n>', 'timed batches per row', '5')
    .option('--warmup <n>', 'untimed batches first', '1')
    .option('--size <px>', 'crop size', '224')
    .option('--pack-size <px>', 'shorter side of the records', '256')
    .option('--json', 'print the rows as JSON')
    .option('--report <file>', 'write a self-contained HTML report (bars per kind and threads, every row)')
    .action((opts: BenchDataOpts, cmd: Command) => runBenchData(opts, givenOptions(cmd)));

  const data = program.command('data').description('datasets for the input pipeline: make a synthetic ImageFolder, pack records');
  data
    .command('make')
    .description('write an ImageFolder of synthetic photographs (JPEG, around 500x375, natural-image statistics)')
    .argument('<dir>', 'output directory (class subfolders are created in it)')
    .option('--images <n>', 'number of images', '64')
    .option('--classes <k>', 'number of class folders', '4')
    .option('--seed <n>', 'seed: the same seed writes the same images', '1')
    .option('--threads <n>', 'threads', DEFAULT_DATA_THREADS)
    .option('--quality <q>', 'JPEG quality', '90')
    .action(runDataMake);
  data
    .command('pack')
    .description('decode an ImageFolder once into records (shorter side resized to --size, uint8, index, checksums, versioned header)')
    .argument('<imagefolder>', 'ImageFolder directory')
    .argument('<out>', 'records file to write (atomically)')
    .option('--size <px>', 'shorter side of the stored images', '256')
    .option('--threads <n>', 'decoding threads', DEFAULT_DATA_THREADS)
    .option('--on-bad-image <mode>', "'fail' (stop, naming the file) or 'skip' (leave it out and report it)", 'fail')
    .option('--json', 'print the summary as JSON')
    .action(runDataPack);

  program
    .command('step')
    .description('run real ResNet-50 v1.5 training iterations and print the per-phase times and top kernels')
    .option('--backend <b>', 'cpu, cuda (a GPU, or --gpus N of them; plan variants cudnn:*, cuda), or auto (cuda when usable, else cpu, saying why)', 'cpu')
    .option('--dtype <d>', 'fp32; with --backend cuda also tf32 (the convolutions may use TF32 tensor cores, as torch.backends.cudnn.allow_tf32) or bf16 (bf16 activations, fp32 parameters and optimizer; every conv cudnn:*)', 'fp32')
    .option('--batch <n>', 'batch size', '32')
    .option('--iterations <n>', 'measured iterations', '10')
    .option('--warmup <n>', 'warm-up iterations first', '1')
    .option('--resolution <px>', 'input resolution', '224')
    .option('--classes <n>', 'classes of the fc layer', '1000')
    .option('--width <n>', 'base width (64 in ResNet-50); smaller scales the network down', '64')
    .option('--kernels <plan>', "variants per op and layer: 'conv=onednn,res2a_branch2b=im2col-gemm,batchnorm=fused-relu' or a plan JSON file")
    .option('--weights <file>', 'load parameters and running statistics from safetensors (torchvision names)')
    .option('--save-weights <file>', 'write the parameters after the run as safetensors')
    .option('--save-plan <file>', 'write the plan as it ran: each conv pass with the variant that really ran (cudnn:autotune and cudnn:heuristic resolved to the algorithm they chose), to replay with --kernels <file>')
    .option('--input <file>', "a fixed batch from safetensors ('input' NCHW float32, 'labels' int64) for every iteration")
    .option('--lr <x>', 'learning rate', '0.1')
    .option('--momentum <x>', 'SGD momentum', '0.9')
    .option('--weight-decay <x>', 'SGD weight decay', '0.0001')
    .option('--seed <n>', 'seed of the initial weights, the synthetic data, and with --data raw|records the image order, crops and flips', '1')
    .option('--layout <layout>', "activations: 'nChw16c' (cpu: oneDNN's blocked layout kept between layers, no reorders), 'nchw', 'nhwc' (cuda: channels-last, cuDNN's convolutions), or 'auto' (nChw16c when every conv is onednn, else nchw)", 'auto')
    .option('--workers <n>', 'data-parallel workers (batch is per worker); 1: no reduction', '1')
    .option('--schedule <s>', "gradient reduction: 'serialized' (after backward, exclusively) or 'overlapped' (buckets on a comm stream during backward)", 'overlapped')
    .option('--comm <c>', "communicator: 'local' (the default: this process computes one worker; the others' gradients are stood in by copies), 'gloo' (cpu: real all-reduce across processes) or 'nccl' (cuda: across GPUs, one rank per GPU started with launch, or --gpus)")
    .option('--gpus <n>', "cuda: drive N local GPUs (or 'all') from this one process, one replica each, gradients reduced with NCCL (replica r takes rank r's batch)", '1')
    .option('--link <GB/s>', 'model a link: hold the comm stream for the ring all-reduce time of each bucket')
    .option('--latency <us>', 'per-hop latency of the modeled link', '5')
    .option('--bucket-mb <mb>', 'gradient bucket size', '25')
    .option('--first-bucket-mb <mb>', 'size of the first bucket', '1')
    .option('--comm-timeout-ms <ms>', 'with --comm gloo or nccl: how long to wait for a peer (rendezvous and each all-reduce; with --graph, the whole step)', '30000')
    .option('--data <kind>', "input: 'synthetic' (random tensors, no dataset), 'raw' (decode an ImageFolder's JPEGs each step) or 'records' (read records made by data pack)", 'synthetic')
    .option('--dataset <path>', 'with --data raw: an ImageFolder directory; with --data records: a records file')
    .option('--data-threads <n>', 'native threads that decode and augment', DEFAULT_DATA_THREADS)
    .option('--prefetch <k>', '0: prepare each batch when the step needs it; K: prepare up to K batches ahead, overlapped with compute', '2')
    .option('--on-bad-image <mode>', "a corrupt or unreadable image: 'fail' (stop, naming the file) or 'skip' (use the next image; the run reports how many)", 'fail')
    .option('--enqueue-probe', 'enqueue each iteration behind a 0.5 s gate so the enqueue cost per kernel is the host\'s alone (phases unaffected)')
    .option('--graph', 'cuda: capture the first measured iteration into a CUDA graph and replay it for every measured iteration (one launch instead of one per kernel; needs --warmup 1 or more)')
    .option('--compare', 'run both schedules and print them side by side')
    .option('--trace <file>', 'write a Chrome trace (Perfetto) of the median iteration: one track per stream')
    .option('--report <file>', 'write a self-contained HTML report (timelines, breakdown, critical path; with --compare the attribution)')
    .option('--save <file>', 'save the run (configuration, environment, figures, timeline) as JSON')
    .option('--json', 'print the run as JSON (without the timeline)')
    .action((opts: StepOpts, cmd: Command) => runStep({ ...opts, given: givenOptions(cmd) }, print));

  program
    .command('sweep')
    .description('iteration time against workers and a modeled link for both schedules (--comm local): where overlap pays and where it does not')
    .option('--workers <list>', 'comma list of worker counts', '2,8,64')
    .option('--link <list>', 'comma list of link bandwidths in GB/s', '1,10,25,100')
    .option('--latency <us>', 'per-hop latency of the modeled link', '5')
    .option('--schedule <s>', "'serialized', 'overlapped' or 'both'", 'both')
    .option('--backend <b>', 'cpu, cuda (one GPU: the local communicator and the link model on its streams), or auto (cuda when usable, else cpu, saying why)', 'cpu')
    .option('--batch <n>', 'batch per worker', '8')
    .option('--resolution <px>', 'input resolution', '224')
    .option('--width <n>', 'base width', '64')
    .option('--iterations <n>', 'measured iterations per point', '2')
    .option('--warmup <n>', 'warm-up iterations per point', '1')
    .option('--bucket-mb <mb>', 'gradient bucket size', '25')
    .option('--first-bucket-mb <mb>', 'size of the first bucket', '1')
    .option('--save <file>', 'where the points are saved as JSON', 'stepscope-sweep.json')
    .option('--report <file>', 'write a self-contained HTML report')
    .option('--json', 'print the points as JSON')
    .action(runSweep);

  // Commands defined here refuse an empty option value in one place (guardOptionValues);
  // the analysis commands (reproduce, explain, whatif, peers) check their own, naming what is allowed.
  const before = new Set(program.commands);
  registerAnalysisCommands(program, print);
  const analysisCommands = new Set(program.commands.filter((c) => !before.has(c)));

  program
    .command('launch')
    .description('start N ranks of a stepscope command on this machine with the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), e.g. launch -n 2 -- step --comm gloo (cpu) or --backend cuda --comm nccl (rank r takes GPU LOCAL_RANK); across machines, run it on each with --nnodes and --node-rank')
    .requiredOption('-n, --nprocs <n>', 'number of ranks on this machine')
    .option('--nnodes <m>', 'number of machines (each runs launch with the same -n); more than 1 rendezvous through the TCP store of global rank 0', '1')
    .option('--node-rank <r>', "this machine's index, 0..nnodes-1 (node 0 holds global rank 0)", '0')
    .option('--master-addr <host>', 'where global rank 0 serves the rendezvous store (default: $MASTER_ADDR or 127.0.0.1)')
    .option('--master-port <port>', 'its port (default: $MASTER_PORT or 29500); given on one machine, the ranks use the TCP store instead of a shared directory')
    .argument('<command...>', 'the stepscope command each rank runs')
    .passThroughOptions()
    .action(async (command: string[], opts: { nprocs: string; nnodes: string; nodeRank: string; masterAddr?: string; masterPort?: string }) => {
      const nnodes = parseInteger('--nnodes', opts.nnodes, 1, 1024);
      const masterPort = opts.masterPort ?? process.env.MASTER_PORT ?? '29500';
      process.exitCode = await launch({
        nprocs: parseInteger('-n', opts.nprocs, 1, 64),
        nnodes,
        nodeRank: parseInteger('--node-rank', opts.nodeRank, 0, nnodes - 1),
        masterAddr: opts.masterAddr ?? process.env.MASTER_ADDR ?? '127.0.0.1',
        masterPort: parseInteger('--master-port', masterPort, 1, 65535),
        tcpStore: nnodes > 1 || opts.masterPort !== undefined,
      }, command);
    });

  // Every option of every command (registerAnalysisCommands' too): no empty value, no flag taken as a value, no repeats.
  guardOptionValues(program, (cmd) => !analysisCommands.has(cmd));
  return program;
}

/** stdout: closed by its reader (EPIPE: the rest is dropped quietly), or failed (ENOSPC...: reported once, exit 1). */
const stdoutState = { watched: false, closed: false, failed: false };

function watchOutputStreams(): void {
  if (stdoutState.watched) return;
  stdoutState.watched = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (stdoutState.closed || stdoutState.failed) return; // later writes to the ended stream
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') {
      stdoutState.closed = true; // `| head`: the reader has what it wanted; files are still written
      return;
    }
    stdoutState.failed = true;
    process.stderr.write(`stepscope: could not write to stdout: ${err.message}\n`);
    process.exitCode = 1; // when main has returned already
  });
  process.stderr.on('error', () => {
    // Nowhere left to report it: the exit code still says how the command went.
  });
}

export async function main(argv: string[]): Promise<number> {
  watchOutputStreams();
  const code = await runMain(argv);
  return code === 0 && stdoutState.failed ? 1 : code;
}

/** The one line printed for an error: control characters (a binary file's bytes in a parser's message) escaped. */
function printError(message: string): void {
  process.stderr.write(`stepscope: ${printable(message)}\n`);
}

/**
 * The message for a command name that does not exist, or null. Commander
 * answers `stepscope nosuch --help` with the parent's help and exit 0, so the
 * command path is checked before parsing: each word up to the first option
 * must name a subcommand of the one before it.
 */
function unknownCommand(program: Command, argv: string[]): string | null {
  let parent = program;
  for (const word of argv) {
    // `help <command>` is commander's own and checks its argument.
    if (parent.commands.length === 0 || word.startsWith('-') || word === 'help') return null;
    const next = parent.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) {
      const names = parent.commands.map((c) => c.name()).join(', ');
      const where = parent === program ? '' : ` of '${parent.name()}'`;
      return `unknown command '${word}'${where}; the commands are: ${names}`;
    }
    parent = next;
  }
  return null;
}

async function runMain(argv: string[]): Promise<number> {
  const program = buildProgram();
  const unknown = unknownCommand(program, argv);
  if (unknown) {
    printError(unknown);
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; every parse error is a usage error (2).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UsageError) {
      printError(err.message);
      return 2;
    }
    const e = err as Error & { code?: string };
    if (err instanceof DataError || (e.code !== undefined && DATA_ERROR_CODES.includes(e.code))) {
      printError(e.message); // names the file or record: no stack needed
      return 1;
    }
    if (e.code === 'ERR_INVALID_ARG' || e.code === 'ERR_BAD_SHAPE' || e.code === 'ERR_UNKNOWN_VARIANT') {
      printError(e.message);
      return 2;
    }
    // Output that could not be written (the rest was), and a step whose loss is not finite: the message says it all.
    if (err instanceof OutputError || err instanceof DivergedError) {
      printError(e.message);
      return 1;
    }
    // A file the command could not write (or read) at the end: its path and the system's error, no stack.
    if (isSystemError(err)) {
      printError(err.message); // e.g. "ENOSPC: no space left on device, write" or "EACCES: permission denied, open '<path>'"
      return 1;
    }
    // A CUDA/cuDNN/cuBLAS failure is typed: its code, the library's status and the layer say it all.
    if (e.code && /^ERR_(NO_DEVICE|CUDA|CUDNN|CUBLAS|OUT_OF_MEMORY|UNSUPPORTED|UNAVAILABLE)$/.test(e.code)) {
      const status = (e as { status?: string }).status;
      printError(`${e.code}: ${e.message}${status && !e.message.includes(status) ? ` (${status})` : ''}`);
      return 1;
    }
    // A typed failure of the native side (a peer died, a kernel failed) is
    // explained by its message; anything else is a bug, so show the stack.
    printError(e.code?.startsWith('ERR_') ? e.message : e.stack ?? e.message);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
