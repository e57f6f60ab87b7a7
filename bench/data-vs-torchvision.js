#!/usr/bin/env node
'use strict';
// Side by side in one run, on one thread each, on the same generated
// ImageFolder: stepscope raw (decode + RandomResizedCrop + flip + normalize),
// stepscope records (read + the same augmentation, records packed from the
// same files at shorter side 256) and torchvision's PIL pipeline
// (bench/data_torchvision.py: open + convert + RandomResizedCrop(224) +
// RandomHorizontalFlip + ToTensor + Normalize). Rounds are interleaved (each
// contender makes one pass over all images per round) so all see the same
// machine state; warm-up rounds are dropped. Files are in the page cache.
//
//   node bench/data-vs-torchvision.js [--images 200] [--rounds 7] [--warmup 1] [--batch 32] [--out file.json]
// Needs `npm ci` and `pip install torchvision==0.28.0 pillow` (see the peer's docstring).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { addon } = require('../dist/src/native.js');
const { makeImageFolder } = require('../dist/src/data/make.js');
const { scanImageFolder } = require('../dist/src/data/imagefolder.js');
const { summarize } = require('../dist/src/bench/stats.js');
const { parseInteger } = require('../dist/src/options.js');
const { UsageError } = require('../dist/src/errors.js');

const defaults = { images: '200', rounds: '7', warmup: '1', batch: '32', out: '' };

function parseArgs(argv) {
  const args = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) || argv[i + 1] === undefined) {
      throw new UsageError(`unknown or incomplete option '${argv[i]}'; allowed: ${Object.keys(args).map((k) => `--${k}`).join(', ')}`);
    }
    args[key] = argv[i + 1];
  }
  return args;
}

function startPeer(listFile) {
  const child = spawn('python3', [path.join(__dirname, 'data_torchvision.py'), '--files', listFile, '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the torchvision peer exited (pip install torchvision==0.28.0 pillow)');
    return JSON.parse(value);
  };
  return {
    hello: next(),
    async round() {
      child.stdin.write('round\n');
      return (await next()).imagesPerSec;
    },
    close: () => child.stdin.end(),
  };
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const images = parseInteger('--images', a.images, 1, 100000), rounds = parseInteger('--rounds', a.rounds, 1, 1000);
  const warmup = parseInteger('--warmup', a.warmup, 0, 100), batch = parseInteger('--batch', a.batch, 1, 4096);
  const native = addon();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stepscope-data-vs-tv-'));
  try {
    const root = path.join(tmp, 'images');
    await makeImageFolder(root, images, 10, 1, os.availableParallelism());
    const folder = scanImageFolder(root);
    const records = path.join(tmp, 'images.records');
    await native.packRecords({ files: folder.files, labels: folder.labels, classes: 10, out: records, size: 256, threads: os.availableParallelism() });
    const listFile = path.join(tmp, 'files.txt');
    fs.writeFileSync(listFile, folder.files.join('\n'));
    const peer = startPeer(listFile);
    const hello = await peer.hello;
    const loaders = {
      'stepscope raw': new native.DataLoader({ kind: 'raw', files: folder.files, labels: folder.labels }, { threads: 1, size: 224 }),
      'stepscope records': new native.DataLoader({ kind: 'records', path: records }, { threads: 1, size: 224 }),
    };
    const rates = { 'stepscope raw': [], 'stepscope records': [], torchvision: [] };
    for (let r = 0; r < warmup + rounds; r++) {
      process.stderr.write(`\rround ${r + 1}/${warmup + rounds}${r < warmup ? ' (warm-up)' : ''}   `);
      for (const [name, loader] of Object.entries(loaders)) {
        const t0 = process.hrtime.bigint();
        for (let s = 0; s < images; s += batch) {
          const indices = Array.from({ length: Math.min(batch, images - s) }, (_, k) => s + k);
          await loader.load(indices, r, 1);
        }
        const rate = images / (Number(process.hrtime.bigint() - t0) / 1e9);
        if (r >= warmup) rates[name].push(rate);
      }
      const tv = await peer.round();
      if (r >= warmup) rates.torchvision.push(tv);
    }
    process.stderr.write('\n');
    peer.close();
    const s = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, summarize(v)]));
    const sizes = folder.files.map((f) => fs.statSync(f).size);
    const header = `input pipeline, one thread each: ${images} generated JPEGs (mean ${(sizes.reduce((x, y) => x + y, 0) / images / 1024).toFixed(0)} KiB, ~500x375), ` +
      `crop 224, records at shorter side 256; ${warmup} warm-up + ${rounds} interleaved rounds; ${os.cpus()[0]?.model}, ${os.availableParallelism()} cores; ` +
      `torch ${hello.torch}, torchvision ${hello.torchvision}, Pillow ${hello.pillow}`;
    console.log(header);
    console.log('contender           images/s per thread (median)    min     max');
    for (const [k, v] of Object.entries(s)) console.log(`${k.padEnd(20)}${v.median.toFixed(0).padStart(29)}${v.min.toFixed(0).padStart(9)}${v.max.toFixed(0).padStart(8)}`);
    const rawVsTv = s['stepscope raw'].median / s.torchvision.median, recVsRaw = s['stepscope records'].median / s['stepscope raw'].median;
    console.log(`stepscope raw / torchvision: ${rawVsTv.toFixed(2)}x (target >= 2x)`);
    console.log(`stepscope records / stepscope raw: ${recVsRaw.toFixed(2)}x (target >= 3x)`);
    if (a.out) fs.writeFileSync(a.out, JSON.stringify({ header, rates, summary: s, rawVsTorchvision: rawVsTv, recordsVsRaw: recVsRaw, peer: hello }, null, 1));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`data-vs-torchvision: ${e.message}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
});
