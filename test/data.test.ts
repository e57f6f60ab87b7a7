// The input pipeline: augmentation geometry (crop boxes, flips) through the
// real decoder, normalization, record round trips, determinism across thread
// counts, every bad-input case (each error names the file or record), skip
// counting, and the CLI's options. Small generated files in a tmp dir.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { DataLoader, RgbImage } from '../binding';
import { addon } from '../src/native';
import { scanImageFolder } from '../src/data/imagefolder';
import { batchSamples } from '../src/data/sampler';
import { makeImageFolder } from '../src/data/make';
import { DataError } from '../src/errors';
import { cli, tempDir } from './helpers';

const native = addon();
const tmp = tempDir('stepscope-data-');
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

function image(height: number, width: number, rgb: (y: number, x: number) => [number, number, number]): RgbImage {
  const pixels = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) pixels.set(rgb(y, x), (y * width + x) * 3);
  return { height, width, pixels };
}

/** An ImageFolder with the given files (name -> image) per class. */
function folder(name: string, classes: Record<string, Record<string, RgbImage | Buffer>>): string {
  const root = path.join(tmp, name);
  for (const [cls, files] of Object.entries(classes)) {
    fs.mkdirSync(path.join(root, cls), { recursive: true });
    for (const [file, content] of Object.entries(files)) {
      const p = path.join(root, cls, file);
      if (Buffer.isBuffer(content)) fs.writeFileSync(p, content);
      else native.jpegEncode(p, content, 100);
    }
  }
  return root;
}

// R encodes the column, G the row: the decoded crop tells where it came from.
const W = 320, H = 240;
const position = image(H, W, (y, x) => [Math.round((x * 255) / (W - 1)), Math.round((y * 255) / (H - 1)), 128]);
// Without libjpeg (a build with STEPSCOPE_WITH_JPEG=OFF or no libjpeg62-turbo-dev) every test that
// writes or reads a JPEG is skipped with this reason.
const NO_JPEG = native.buildInfo().jpeg.found ? false : `built without libjpeg: ${native.buildInfo().jpeg.reason ?? 'not found'}`;
const positionRoot = NO_JPEG ? '' : folder('position', { a: { 'p.jpg': position } });
const positionFile = path.join(positionRoot, 'a', 'p.jpg');

const rawLoader = (root: string, threads = 1, size = 32, onBadImage: 'skip' | 'fail' = 'fail'): DataLoader => {
  const f = scanImageFolder(root);
  return new native.DataLoader({ kind: 'raw', files: f.files, labels: f.labels }, { threads, size, onBadImage });
};

const unnormalize = (v: number, c: number) => (v * STD[c] + MEAN[c]) * 255;

test('crop boxes stay inside the image, with the scale and ratio ranges, and flip half the time', () => {
  let flips = 0, fallbacks = 0;
  const sizes: [number, number][] = [[375, 500], [500, 375], [256, 341], [32, 32], [7, 300], [300, 7], [1, 1]];
  for (const [h, w] of sizes) {
    for (let seed = 0; seed < 150; seed++) {
      const b = native.augmentParams(seed, seed % 3, seed * 7, h, w);
      assert.ok(b.top >= 0 && b.left >= 0 && b.height >= 1 && b.width >= 1, JSON.stringify(b));
      assert.ok(b.top + b.height <= h && b.left + b.width <= w, `${h}x${w}: ${JSON.stringify(b)}`);
      const area = (b.height * b.width) / (h * w), ratio = b.width / b.height;
      if (h >= 32 && w >= 32 && h / w < 4 / 3 && w / h < 4 / 3) {
        // Rounding of w and h to integers moves the area and ratio a little.
        assert.ok(area >= 0.08 * 0.9 && area <= 1, `area ${area}`);
        assert.ok(ratio >= (3 / 4) * 0.9 && ratio <= (4 / 3) * 1.1, `ratio ${ratio}`);
      }
      if (h === 7 || w === 7) {
        fallbacks += Number(b.height === h || b.width === w);
      }
      flips += Number(b.flip);
      assert.deepEqual(native.augmentParams(seed, seed % 3, seed * 7, h, w), b, 'same key, same crop');
    }
  }
  const n = sizes.length * 150;
  assert.ok(flips > 0.4 * n && flips < 0.6 * n, `${flips} flips of ${n}`);
  assert.ok(fallbacks > 0, 'extreme aspect ratios fall back to the centre crop');
  const a = native.augmentParams(1, 0, 5, 375, 500), b = native.augmentParams(1, 1, 5, 375, 500);
  assert.notDeepEqual(a, b, 'another epoch, another crop');
});

test('the decoded crop comes from the drawn box, mirrored when flipped (raw and records)', { skip: NO_JPEG }, async () => {
  const size = 32;
  const raw = rawLoader(positionRoot, 1, size);
  const packed = path.join(tmp, 'position.records');
  await native.packRecords({ files: [positionFile], labels: [0], classes: 1, out: packed, size: 120 });
  const rec = new native.DataLoader({ kind: 'records', path: packed }, { threads: 1, size });
  const stored = rec.sample(0);
  assert.deepEqual([stored.height, stored.width], [120, 160]);
  const seen = new Set<boolean>();
  for (let seed = 1; seed <= 12; seed++) {
    for (const [loader, h, w, toSource] of [
      [raw, H, W, (v: number) => v],
      // records hold the image resized to 120x160: stored pixel i is source (i + 0.5) * 2 - 0.5
      [rec, 120, 160, (v: number) => (v + 0.5) * 2 - 0.5],
    ] as const) {
      const box = native.augmentParams(seed, 0, 0, h, w);
      seen.add(box.flip);
      const { input } = await loader.load([0], 0, seed);
      for (const o of [1, 8, 16, 23, 30]) {
        const sx = toSource(Math.min(Math.max(box.left + ((o + 0.5) * box.width) / size - 0.5, 0), w - 1));
        const sy = toSource(Math.min(Math.max(box.top + ((o + 0.5) * box.height) / size - 0.5, 0), h - 1));
        const col = box.flip ? size - 1 - o : o;
        // R along output row 4 (mirrored when flipped), G down output column 4.
        const r = unnormalize(input[0 * size * size + 4 * size + col], 0), g = unnormalize(input[1 * size * size + o * size + 4], 1);
        const what = `seed ${seed} ${loader === raw ? 'raw' : 'records'} ${JSON.stringify(box)} output ${o}`;
        assert.ok(Math.abs(r - (sx * 255) / (W - 1)) < 6, `${what}: R ${r.toFixed(1)}, expected ${((sx * 255) / (W - 1)).toFixed(1)}`);
        assert.ok(Math.abs(g - (sy * 255) / (H - 1)) < 6, `${what}: G ${g.toFixed(1)}, expected ${((sy * 255) / (H - 1)).toFixed(1)}`);
      }
    }
  }
  assert.deepEqual([...seen].sort(), [false, true], 'both flipped and unflipped crops were checked');
});

test('a batch larger than half of the memory the process may use is refused before it is allocated', { skip: NO_JPEG }, async () => {
  // Linux grants such an allocation and then the OOM killer ends the process mid-load; refused, it is a clear error.
  const size = 4096, sampleBytes = 3 * size * size * 4;
  const loader = rawLoader(positionRoot, 1, size);
  const samples = Math.floor(os.totalmem() / 2 / sampleBytes) + 1;
  await assert.rejects(loader.load(new Array(samples).fill(0), 0, 1), (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, 'ERR_INVALID_ARG');
    assert.match(e.message, new RegExp(`a batch of ${samples} samples of ${3 * size * size} floats is [0-9.]+ GiB, more than half of the memory this process may use`));
    return true;
  });
});

test('normalization: a known colour comes out as (c/255 - mean) / std', { skip: NO_JPEG }, async () => {
  const root = folder('solid', { a: { 's.jpg': image(48, 64, () => [200, 100, 50]) } });
  const packed = path.join(tmp, 'solid.records');
  await native.packRecords({ files: [path.join(root, 'a', 's.jpg')], labels: [0], classes: 1, out: packed, size: 40 });
  for (const loader of [rawLoader(root, 1, 16), new native.DataLoader({ kind: 'records', path: packed }, { size: 16 })]) {
    const { input } = await loader.load([0], 0, 3);
    [200, 100, 50].forEach((c, ch) => {
      const expected = (c / 255 - MEAN[ch]) / STD[ch];
      for (let i = 0; i < 256; i++) assert.ok(Math.abs(input[ch * 256 + i] - expected) < 0.03, `channel ${ch}: ${input[ch * 256 + i]} vs ${expected}`);
    });
  }
});

test('records round trip: pack, then every record equals decode + resize, with its label', { skip: NO_JPEG }, async () => {
  const root = path.join(tmp, 'made');
  const made = await makeImageFolder(root, 9, 3, 5, 2);
  const f = scanImageFolder(root);
  assert.deepEqual(f.classes, ['class0', 'class1', 'class2']);
  assert.deepEqual(f.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2]);
  assert.equal(made.files.length, 9);
  const sizes = made.files.map((p) => native.jpegDecode(p)).map((i) => `${i.width}x${i.height}`);
  assert.ok(new Set(sizes).size > 3, `varied sizes: ${sizes}`);
  const out = path.join(tmp, 'made.records');
  const r = await native.packRecords({ files: f.files, labels: f.labels, classes: 3, out, size: 64, threads: 2 });
  assert.equal(r.records, 9);
  assert.equal(r.bytes, fs.statSync(out).size);
  const rec = new native.DataLoader({ kind: 'records', path: out }, { threads: 1, size: 32 });
  assert.equal(rec.length, 9);
  assert.equal(rec.classes, 3);
  assert.deepEqual(rec.labels(), f.labels);
  for (let i = 0; i < 9; i++) {
    const s = rec.sample(i), d = native.jpegDecode(f.files[i], 64);
    assert.equal(Math.min(s.height, s.width), 64);
    assert.deepEqual([s.height, s.width, s.label], [d.height, d.width, f.labels[i]]);
    assert.ok(Buffer.from(s.pixels).equals(Buffer.from(d.pixels)), `record ${i} pixels`);
  }
});

test('determinism: the same batch with 1 and 3 threads; another seed, another batch', { skip: NO_JPEG }, async () => {
  const root = path.join(tmp, 'made');
  for (const kind of ['raw', 'records'] as const) {
    const open = (threads: number) => kind === 'raw' ? rawLoader(root, threads, 24)
      : new native.DataLoader({ kind, path: path.join(tmp, 'made.records') }, { threads, size: 24 });
    const { epoch, indices } = batchSamples(9, 6, 3, 11);
    const a = await open(1).load(indices, epoch, 11), b = await open(3).load(indices, epoch, 11);
    assert.deepEqual(a.input, b.input, kind);
    assert.deepEqual(a.labels, b.labels);
    const c = await open(3).load(indices, epoch, 12);
    assert.notDeepEqual(a.input, c.input);
  }
  // Into a Buffer (the step's input ring): the same values, no copy.
  const loader = rawLoader(root, 2, 24);
  const target = new native.Buffer(6 * 3 * 24 * 24);
  const { epoch, indices } = batchSamples(9, 6, 3, 11);
  const direct = await loader.load(indices, epoch, 11, target);
  assert.equal(direct.input, undefined);
  assert.deepEqual(target.read(), (await loader.load(indices, epoch, 11)).input);
  await assert.rejects(loader.load(indices, epoch, 11, new native.Buffer(10)), /the target buffer holds 10 values, the batch 10368/);
  assert.deepEqual(batchSamples(9, 4, 5, 1), batchSamples(9, 4, 5, 1));
  const epoch0 = [0, 1].flatMap((i) => batchSamples(9, 4, i, 1).indices);
  assert.equal(new Set(epoch0).size, 8, 'an epoch does not repeat a sample');
  // Data-parallel workers: disjoint shards of the same epoch permutation, as DistributedSampler.
  const shards = [0, 1, 2].map((rank) => [0, 1, 2].flatMap((i) => batchSamples(20, 2, i, 7, rank, 3).indices));
  const all = shards.flat();
  assert.equal(new Set(all).size, all.length, `the workers' shards overlap: ${JSON.stringify(shards)}`);
  assert.equal(all.length, 18);
  assert.notDeepEqual(shards[0], shards[1]);
  assert.deepEqual(batchSamples(20, 2, 1, 7, 0, 1), batchSamples(20, 2, 1, 7), 'one worker: the whole dataset');
  assert.throws(() => batchSamples(2, 1, 0, 7, 0, 3), /a dataset of 2 samples cannot give each of 3 workers a sample/);
});

test('bad JPEGs: truncated, not a JPEG, corrupt header: errors name the file; skip replaces and counts them', { skip: NO_JPEG }, async () => {
  const good = fs.readFileSync(path.join(tmp, 'made', 'class0', 'img000000.jpg'));
  const corrupt = Buffer.from(good);
  corrupt.fill(0x55, 2, 200); // the header's markers overwritten
  // Entropy-coded data damaged by a stray marker in the middle (corruption that
  // leaves a valid bitstream cannot be seen by any decoder: records carry checksums).
  const garbled = Buffer.from(good);
  const mid = good.length >> 1;
  garbled.fill(0xd4, mid, mid + 256);
  garbled[mid + 100] = 0xff;
  garbled[mid + 101] = 0x01;
  const root = folder('bad', {
    a: { 'good1.jpg': good, 'good2.jpg': good, 'random.jpg': Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) & 255)) },
    b: { 'good3.jpg': good, 'truncated.jpg': good.subarray(0, good.length >> 1), 'corrupt.jpg': corrupt },
    c: { 'garbled.jpg': garbled, 'good4.jpg': good },
  });
  const cases: [string, RegExp][] = [
    ['random.jpg', /not a JPEG/], ['truncated.jpg', /truncated/], ['corrupt.jpg', /not a readable JPEG/], ['garbled.jpg', /Corrupt JPEG data/],
  ];
  const f = scanImageFolder(root);
  for (const [name, message] of cases) {
    const file = f.files.find((p) => p.endsWith(name))!;
    assert.throws(() => native.jpegDecode(file), (e: Error & { code: string }) => e.code === 'ERR_BAD_IMAGE' && e.message.includes(file) && message.test(e.message));
    const index = f.files.indexOf(file);
    await assert.rejects(rawLoader(root).load([index], 0, 1), (e: Error & { code: string }) =>
      e.code === 'ERR_BAD_IMAGE' && e.message.includes(file) && /--on-bad-image skip/.test(e.message));
  }
  const all = f.files.map((_, i) => i);
  const skipping = await rawLoader(root, 2, 16, 'skip').load(all, 0, 1);
  // random.jpg's replacement is the next file, corrupt.jpg, and truncated.jpg's
  // is garbled.jpg: bad too, so each is counted again.
  assert.equal(skipping.skipped.length, 6);
  assert.deepEqual([...new Set(skipping.skipped.map((s) => path.basename(s.source.replace(/'$/, ''))))].sort(), ['corrupt.jpg', 'garbled.jpg', 'random.jpg', 'truncated.jpg']);
  assert.ok(skipping.skipped.every((s) => s.message.includes(root)), 'messages name the files');
  assert.ok([...skipping.input].every(Number.isFinite));
  const packed = await native.packRecords({ files: f.files, labels: f.labels, classes: 3, out: path.join(tmp, 'bad.records'), onBadImage: 'skip' });
  assert.equal(packed.records, 4);
  assert.equal(packed.skipped.length, 4);
  await assert.rejects(native.packRecords({ files: f.files, labels: f.labels, classes: 3, out: path.join(tmp, 'bad2.records') }), /random\.jpg.*not a JPEG/);
  assert.ok(!fs.existsSync(path.join(tmp, 'bad2.records')) && !fs.existsSync(path.join(tmp, 'bad2.records.tmp')), 'a failed pack leaves no file');
});

test('a JPEG whose header claims 60000 x 60000 pixels is refused before it is decoded (no 10 GB allocation)', { skip: NO_JPEG }, async () => {
  const huge = Buffer.from(fs.readFileSync(path.join(tmp, 'made', 'class0', 'img000000.jpg')));
  // The frame header (SOF0..SOF2: FF C0..C2, length, precision, then height and width, big-endian).
  let sof = -1;
  for (let i = 2; i + 8 < huge.length && sof < 0; i++) if (huge[i] === 0xff && huge[i + 1] >= 0xc0 && huge[i + 1] <= 0xc2) sof = i;
  assert.ok(sof > 0, 'a frame header');
  huge.writeUInt16BE(60000, sof + 5);
  huge.writeUInt16BE(60000, sof + 7);
  const root = folder('huge', { a: { 'huge.jpg': huge } });
  const file = path.join(root, 'a', 'huge.jpg');
  const refused = (e: Error & { code: string }) =>
    e.code === 'ERR_BAD_IMAGE' && e.message.includes(file) && /60000 x 60000 pixels, more than the 300 megapixels decoded/.test(e.message);
  assert.throws(() => native.jpegDecode(file), refused);
  await assert.rejects(rawLoader(root).load([0], 0, 1), refused);
});

test('an empty class folder is an error naming it; so is a folder without classes', { skip: NO_JPEG }, () => {
  const root = folder('empty-class', { a: { 'x.jpg': image(8, 8, () => [1, 2, 3]) }, b: {} });
  assert.throws(() => scanImageFolder(root), (e: Error) => e instanceof DataError && e.message.includes(path.join(root, 'b')));
  fs.mkdirSync(path.join(tmp, 'no-classes'));
  assert.throws(() => scanImageFolder(path.join(tmp, 'no-classes')), DataError);
});

test('bad records: wrong magic, wrong version, corrupt header, index, record, truncation, index past the end', { skip: NO_JPEG }, async () => {
  const good = path.join(tmp, 'made.records');
  const bytes = fs.readFileSync(good);
  const variant = (name: string, edit: (b: Buffer) => Buffer) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, edit(Buffer.from(bytes)));
    return p;
  };
  const indexOffset = Number(bytes.readBigUInt64LE(24));
  const cases: [string, (b: Buffer) => Buffer, RegExp][] = [
    ['magic.records', (b) => { b.write('NOTMAGIC', 0); return b; }, /wrong magic/],
    ['version.records', (b) => { b.writeUInt32LE(2, 8); return b; }, /version 2 is not supported: this build reads version 1/],
    ['header.records', (b) => { b.writeUInt32LE(999, 16); return b; }, /header checksum mismatch/],
    ['index.records', (b) => { b[indexOffset + 16] ^= 1; return b; }, /index checksum mismatch/],
    ['short.records', (b) => b.subarray(0, b.length - 100), /truncated/],
    ['tiny.records', (b) => b.subarray(0, 10), /shorter than the 64-byte header/],
  ];
  for (const [name, edit, message] of cases) {
    const p = variant(name, edit);
    assert.throws(() => new native.DataLoader({ kind: 'records', path: p }, {}), (e: Error & { code: string }) =>
      e.code === 'ERR_BAD_RECORDS' && e.message.includes(p) && message.test(e.message), name);
  }
  const corrupt = variant('record.records', (b) => { b[64 + 1000] ^= 0xff; return b; });
  const loader = new native.DataLoader({ kind: 'records', path: corrupt }, {});
  await assert.rejects(loader.load([0], 0, 1), new RegExp(`records file '${corrupt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}': record 0 checksum mismatch`));
  assert.equal((await loader.load([1, 2], 0, 1)).labels.length, 2, 'other records still read');
  const skipped = await new native.DataLoader({ kind: 'records', path: corrupt }, { onBadImage: 'skip' }).load([0], 0, 1);
  assert.match(skipped.skipped[0].source, /record 0$/);
  await assert.rejects(new native.DataLoader({ kind: 'records', path: good }, {}).load([3, 9], 0, 1),
    (e: Error & { code: string }) => e.code === 'ERR_DATA_INDEX' && /record index 9 is past the end \(9 records\)/.test(e.message) && e.message.includes(good));
  await assert.rejects(rawLoader(path.join(tmp, 'made')).load([12], 0, 1), /sample index 12 is past the end of the dataset \(9 images\)/);
});

test('CLI: data make, data pack, step --data raw|records with prefetch; bad options exit 2; bad data exits 1 naming the file', { skip: NO_JPEG }, async () => {
  const dir = path.join(tmp, 'cli-images');
  let r = cli(['data', 'make', dir, '--images', '6', '--classes', '2', '--threads', '2']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /wrote 6 JPEG images in 2 class folders/);
  // The CLI writes in chunks (for its progress bar): the same images as one call.
  const whole = path.join(tmp, 'cli-images-whole');
  for (const f of (await makeImageFolder(whole, 6, 2, 1, 2)).files) {
    assert.ok(fs.readFileSync(f).equals(fs.readFileSync(path.join(dir, path.relative(whole, f)))), f);
  }
  const rec = path.join(tmp, 'cli.records');
  r = cli(['data', 'pack', dir, rec, '--size', '80', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).records, 6);
  const small = ['--batch', '2', '--resolution', '32', '--width', '4', '--classes', '4', '--iterations', '2', '--warmup', '0', '--lr', '0.01'];
  for (const [data, dataset, prefetch] of [['raw', dir, '0'], ['records', rec, '2']]) {
    r = cli(['step', ...small, '--data', data, '--dataset', dataset, '--prefetch', prefetch, '--data-threads', '2', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const run = JSON.parse(r.stdout);
    assert.equal(run.data.kind, data);
    assert.equal(run.data.images, 6);
    assert.ok(run.iterations.every((f: { dataBusyMs: number; dataMs: number }) => f.dataBusyMs > 0 && f.dataMs >= 0));
    assert.ok(run.summary.dataBusyMs.median > 0);
  }
  fs.writeFileSync(path.join(dir, 'class1', 'zz-bad.jpg'), 'not a jpeg at all');
  r = cli(['step', ...small, '--data', 'raw', '--dataset', dir, '--iterations', '3']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /zz-bad\.jpg' is not a readable JPEG: no JPEG start-of-image marker.*--on-bad-image skip/);
  assert.doesNotMatch(r.stderr, /    at /, 'no stack trace for bad data');
  r = cli(['step', ...small, '--data', 'raw', '--dataset', dir, '--iterations', '3', '--on-bad-image', 'skip']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /skipped 1 bad image\(s\), e\.g\. '.*zz-bad\.jpg'/);
  const bad: [string[], RegExp][] = [
    [['step', '--data', 'jpeg'], /--data 'jpeg' is not allowed: one of synthetic, raw, records/],
    [['step', '--data', 'raw'], /--data raw needs --dataset/],
    [['step', '--data', 'raw', '--dataset', path.join(tmp, 'nowhere')], /--dataset '.*nowhere' is not allowed: a readable directory/],
    [['step', '--dataset', dir], /--dataset '.*' is not allowed with --data synthetic/],
    [['step', '--prefetch', '-1'], /--prefetch '-1' is not allowed: an integer from 0 to 64/],
    [['step', '--data-threads', '0'], /--data-threads '0' is not allowed: an integer from 1 to 256/],
    [['step', '--on-bad-image', 'ignore'], /--on-bad-image 'ignore' is not allowed: one of skip, fail/],
    [['step', '--on-bad-image', 'all'], /--on-bad-image 'all' is not allowed: one of skip, fail/],
    [['step', ...small, '--classes', '2', '--data', 'records', '--dataset', rec, '--classes', '1'], /--classes '1' is not allowed: an integer from 2/],
    [['data', 'make', dir, '--images', '0'], /--images '0' is not allowed: an integer from 1/],
    [['data', 'make', dir, '--images', '3', '--classes', '4'], /--classes 4 is not allowed with --images 3/],
    [['data', 'pack', dir, rec, '--size', '4'], /--size '4' is not allowed: an integer from 8 to 4096/],
    [['bench', 'data', '--kind', 'tfrecord'], /--kind: unknown 'tfrecord'; allowed: all, raw, records/],
    [['bench', 'data', '--threads', '1,x'], /--threads 'x' is not allowed/],
    [['bench', 'data', '--report', path.join(tmp, 'no-such-dir', 'r.html')], /--report '.*r\.html' is not allowed: its directory '.*no-such-dir' does not exist/],
  ];
  for (const [args, message] of bad) {
    const b = cli(args);
    assert.equal(b.status, 2, `${args.join(' ')}: ${b.stderr}`);
    assert.match(b.stderr, message, args.join(' '));
  }
  const few = cli(['step', '--batch', '2', '--resolution', '32', '--width', '4', '--classes', '2', '--data', 'records', '--dataset', path.join(tmp, 'made.records')]);
  assert.equal(few.status, 2);
  assert.match(few.stderr, /--classes 2 is not allowed with this dataset: it has 3 classes \(give --classes 3 or more\)/);
});
