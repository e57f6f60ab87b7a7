#!/usr/bin/env node
'use strict';
// Side by side in one run: every ResNet-50 convolution and pass, each
// stepscope variant and PyTorch doing the same convolution (fp32, NCHW, same
// thread count), with their runs interleaved round by round so both see the
// same machine state. In each round every contender runs twice and only the
// second run counts, so none is timed with caches just emptied by another. Prints the best stepscope variant against PyTorch per
// layer and pass, and the summary figures of issue #2's targets.
//
//   node bench/conv-vs-pytorch.js [--batch 8] [--repeat 7] [--warmup 1]
//       [--layer all] [--pass all] [--variant all] [--out file.json]
// Needs `npm ci` (the addon and dist/) and `pip install torch==2.13.0+cpu`.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const lib = require('../dist/src/index.js');
const { parseChoiceList, parseInteger } = require('../dist/src/options.js');

const defaults = { batch: '8', repeat: '7', warmup: '1', layer: 'all', pass: 'all', variant: 'all', out: '' };

function parseArgs(argv) {
  const args = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) || argv[i + 1] === undefined) {
      throw new lib.UsageError(`unknown or incomplete option '${argv[i]}'; allowed: ${Object.keys(args).map((k) => `--${k}`).join(', ')}`);
    }
    args[key] = argv[i + 1];
  }
  return args;
}

// A PyTorch process answering one timing request per line.
function startPeer(threads) {
  const child = spawn('python3', [path.join(__dirname, 'pytorch_conv.py'), '--serve', '--threads', String(threads)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the PyTorch peer exited (is torch installed? pip install torch==2.13.0+cpu)');
    return JSON.parse(value);
  };
  return {
    hello: next(),
    async time(shape, pass, runs, warmup) {
      child.stdin.write(`${JSON.stringify({ key: 'k', ...shape, pass, runs, warmup })}\n`);
      const answer = await next();
      if (answer.error) throw new Error(`PyTorch peer: ${answer.error}`);
      return answer.ms;
    },
    close: () => child.stdin.end(),
  };
}

const median = (xs) => lib.summarize(xs).median;

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const batch = parseInteger('--batch', args.batch, 1, 1024);
  const repeat = parseInteger('--repeat', args.repeat, 1, 1000);
  const warmup = parseInteger('--warmup', args.warmup, 0, 100);
  const all = lib.resnet50Convs({ batch });
  const names = parseChoiceList('--layer', args.layer, all.map((l) => l.name));
  const passes = parseChoiceList('--pass', args.pass, lib.CONV_PASSES);
  const { all: available, timedByDefault } = lib.availableConvVariants();
  const variants = parseChoiceList('--variant', args.variant, available, timedByDefault);

  const native = lib.addon();
  const peak = await native.measurePeak(3);
  const peer = startPeer(peak.threads);
  const hello = await peer.hello;
  const stream = new native.Stream('bench');
  const table = [];
  const groups = lib.uniqueShapes(all.filter((l) => names.includes(l.name)));

  for (const group of groups) {
    const shape = group.first.shape;
    const tensors = lib.randomConvTensors(shape, 1);
    for (const pass of passes) {
      const checkShape = { ...shape, n: Math.min(2, shape.n) };
      const checks = await lib.checkConvVariants(stream, checkShape, pass, variants, 8);
      const failed = checks.filter((c) => !c.ok);
      if (failed.length) throw new Error(`${group.first.name} ${pass}: ${failed.map((c) => c.variant).join(', ')} failed the reference check`);
      const kernels = variants.map((v) => new native.ConvKernel(shape, pass, v, group.first.name));
      const times = Object.fromEntries(variants.map((v) => [v, { conv: [], reorder: [] }]));
      const torchMs = [];
      for (let round = 0; round < warmup + repeat; round++) {
        for (let i = 0; i < variants.length; i++) {
          await lib.timeConvOnce(kernels[i], stream, tensors);
          const run = await lib.timeConvOnce(kernels[i], stream, tensors);
          if (round >= warmup) {
            times[variants[i]].conv.push(run.convMs);
            times[variants[i]].reorder.push(run.reorderMs);
          }
        }
        const [t] = await peer.time(shape, pass, 1, 1);
        if (round >= warmup) torchMs.push(t);
      }
      const flops = lib.convFlops(shape);
      const byVariant = Object.fromEntries(
        variants.map((v) => {
          const s = lib.summarize(times[v].conv);
          return [v, { ...s, pctPeak: (100 * flops) / (s.median * 1e6) / peak.fmaGflops, reorderMs: median(times[v].reorder) }];
        }),
      );
      const best = variants.reduce((b, v) => (byVariant[v].median < byVariant[b].median ? v : b), variants[0]);
      const torch = lib.summarize(torchMs);
      for (const layer of group.all) {
        table.push({
          layer: layer.name, sameShapeAs: layer === group.first ? undefined : group.first.name, pass,
          shape: lib.describeShape(shape), variants: byVariant, best: { variant: best, ...byVariant[best] },
          torch, torchOverBest: torch.median / byVariant[best].median,
        });
      }
      process.stderr.write(`${group.first.name} ${pass}: best ${best} ${byVariant[best].median.toFixed(3)} ms, torch ${torch.median.toFixed(3)} ms\n`);
    }
  }
  peer.close();

  const order = new Map(all.map((l, i) => [l.name, i]));
  table.sort((a, b) => order.get(a.layer) - order.get(b.layer) || passes.indexOf(a.pass) - passes.indexOf(b.pass));
  const pad = (s, n) => String(s).padEnd(n);
  const num = (v, d, n) => (v == null ? '-' : v.toFixed(d)).padStart(n);
  console.log(`machine: ${os.cpus()[0]?.model}, ${peak.threads} threads; peak ${peak.fmaGflops.toFixed(1)} GFLOP/s fp32 FMA, ` +
    `${peak.bandwidthGBs.toFixed(1)} GB/s; cpu backend, fp32, batch ${batch}, ${warmup} warm-up + ${repeat} interleaved rounds; ` +
    `peer PyTorch ${hello.version} (${hello.threads} threads, mkldnn ${hello.mkldnn})`);
  console.log(`${pad('layer', 16)}${pad('pass', 11)}${pad('best variant', 13)}${'best ms'.padStart(9)}${'% peak'.padStart(8)}` +
    `${'torch ms'.padStart(10)}${'torch/best'.padStart(11)}${'own gemm %'.padStart(11)}`);
  for (const l of table) {
    const own = l.variants['im2col-gemm'];
    console.log(`${pad(l.layer, 16)}${pad(l.pass, 11)}${pad(l.best.variant, 13)}${num(l.best.median, 3, 9)}${num(l.best.pctPeak, 1, 8)}` +
      `${num(l.torch.median, 3, 10)}${num(l.torchOverBest, 2, 11)}${num(own && own.pctPeak, 1, 11)}`);
  }
  const slower = table.filter((l) => l.torchOverBest < 1);
  const own3x3 = table.filter((l) => /3x3/.test(l.shape) && l.variants['im2col-gemm']).map((l) => l.variants['im2col-gemm'].pctPeak);
  const summary = {
    rows: table.length,
    bestNoSlowerThanTorch: table.length - slower.length,
    slowerThanTorch: slower.map((l) => `${l.layer} ${l.pass} (${l.torchOverBest.toFixed(2)}x)`),
    geomeanTorchOverBest: Math.exp(table.reduce((s, l) => s + Math.log(l.torchOverBest), 0) / table.length),
    medianBestPctPeak: median(table.map((l) => l.best.pctPeak)),
    ownGemm3x3PctPeak: own3x3.length ? lib.summarize(own3x3) : null,
  };
  console.log('\nsummary');
  console.log(`  best stepscope variant no slower than PyTorch: ${summary.bestNoSlowerThanTorch}/${summary.rows} layer-passes` +
    (slower.length ? `; slower: ${summary.slowerThanTorch.join(', ')}` : ''));
  console.log(`  geometric mean of torch/best: ${summary.geomeanTorchOverBest.toFixed(2)}x`);
  console.log(`  median layer-pass at ${summary.medianBestPctPeak.toFixed(1)}% of measured fp32 FMA peak`);
  if (summary.ownGemm3x3PctPeak) {
    const o = summary.ownGemm3x3PctPeak;
    console.log(`  im2col-gemm on 3x3 layers: ${o.min.toFixed(1)}% min, ${o.median.toFixed(1)}% median, ${o.max.toFixed(1)}% max of peak`);
  }
  if (args.out) {
    const tmp = `${args.out}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ date: new Date().toISOString(), machine: { cpuModel: os.cpus()[0]?.model, peak }, batch, peer: hello, table, summary }, null, 2));
    fs.renameSync(tmp, args.out);
  }
}

main().catch((err) => {
  process.stderr.write(`conv-vs-pytorch: ${err.message}\n`);
  process.exitCode = err instanceof lib.UsageError ? 2 : 1;
});
