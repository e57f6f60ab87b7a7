// Round trips of every dtype through the safetensors reader/writer, and a
// typed SafetensorsError (naming the file and the tensor) for every bad file.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { tempDir } from './helpers';
import {
  readSafetensors,
  SafeTensor,
  SafetensorsError,
  toFloat32,
  writeSafetensors,
} from '../src/io/safetensors';

const dir = tempDir('stepscope-safetensors-');
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
let counter = 0;
function tmpFile(): string {
  return path.join(dir, `t${counter++}.safetensors`);
}

// Builds a file by hand: length, header text (padded or not) and data bytes.
function rawFile(header: string | object, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const json = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const file = tmpFile();
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
  return file;
}

function expectError(file: string, message: RegExp, tensor?: string): void {
  assert.throws(
    () => readSafetensors(file),
    (e: unknown) => {
      assert.ok(e instanceof SafetensorsError, `not a SafetensorsError: ${String(e)}`);
      assert.equal(e.code, 'ERR_SAFETENSORS');
      assert.ok(e.message.includes(file), `message does not name the file: ${e.message}`);
      if (tensor !== undefined) assert.ok(e.message.includes(`'${tensor}'`), `message does not name '${tensor}': ${e.message}`);
      assert.match(e.message, message);
      return true;
    },
  );
}

test('all dtypes and metadata survive a round trip', () => {
  const tensors: Record<string, SafeTensor> = {
    'w.f32': { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1.5, -2, 3.25, 0, -0, 1e-30]) },
    'w.f64': { dtype: 'F64', shape: [3], data: Float64Array.from([Math.PI, -1e300, 5e-324]) },
    'labels.i64': { dtype: 'I64', shape: [2, 1], data: BigInt64Array.from([3n, -(2n ** 62n)]) },
    'idx.i32': { dtype: 'I32', shape: [4], data: Int32Array.from([0, -1, 2147483647, -2147483648]) },
    scalar: { dtype: 'F32', shape: [], data: Float32Array.from([7]) },
    empty: { dtype: 'F32', shape: [0, 5], data: new Float32Array(0) },
  };
  const metadata = { width: '4', note: 'héllo "quoted"' };
  const file = tmpFile();
  writeSafetensors(file, tensors, metadata);

  const raw = fs.readFileSync(file);
  const n = Number(raw.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header is padded to a multiple of 8');
  const header = JSON.parse(raw.toString('utf8', 8, 8 + n)) as Record<string, { data_offsets: number[] }>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  assert.deepEqual(names, [...names].sort(), 'tensors are sorted by name');
  // Data is laid out in name order, back to back.
  let at = 0;
  for (const name of names) {
    assert.equal(header[name].data_offsets[0], at);
    at = header[name].data_offsets[1];
  }
  assert.equal(raw.length, 8 + n + at);

  const back = readSafetensors(file);
  assert.deepEqual(back.metadata, metadata);
  assert.deepEqual([...back.tensors.keys()].sort(), Object.keys(tensors).sort());
  for (const [name, t] of Object.entries(tensors)) {
    const got = back.tensors.get(name)!;
    assert.equal(got.dtype, t.dtype, name);
    assert.deepEqual(got.shape, t.shape, name);
    assert.equal(got.data.constructor, t.data.constructor, name);
    assert.deepEqual(got.data, t.data, name);
  }
  assert.ok(Object.is(back.tensors.get('w.f32')!.data[4], -0), 'negative zero is kept bit for bit');
  // No temp files are left behind.
  assert.deepEqual(
    fs.readdirSync(dir).filter((f) => f.includes('.tmp-')),
    [],
  );
});

test('a Map works, metadata is optional, and writing replaces the file', () => {
  const file = tmpFile();
  fs.writeFileSync(file, 'old contents');
  const m = new Map<string, SafeTensor>([
    ['b', { dtype: 'I32', shape: [1], data: Int32Array.from([9]) }],
    ['a', { dtype: 'F64', shape: [1, 1], data: Float64Array.from([0.1]) }],
  ]);
  writeSafetensors(file, m);
  const back = readSafetensors(file);
  assert.deepEqual(back.metadata, {});
  assert.deepEqual([...back.tensors.keys()], ['a', 'b']);
  assert.equal(back.tensors.get('a')!.data[0], 0.1);
});

test('a file with a tensor at an unaligned offset reads correctly', () => {
  // The header is 1 byte long past padding, so the data starts at an odd byte.
  const f64 = Buffer.alloc(8);
  f64.writeDoubleLE(2.5);
  let text = JSON.stringify({ x: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } });
  if (text.length % 2 === 0) text += ' ';
  const file = rawFile(text, f64);
  assert.equal((8 + text.length) % 2, 1);
  assert.equal(readSafetensors(file).tensors.get('x')!.data[0], 2.5);
});

test('toFloat32 passes F32 through, converts F64, rejects integers', () => {
  const f32: SafeTensor = { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) };
  assert.equal(toFloat32(f32, 'a'), f32.data);
  const f64: SafeTensor = { dtype: 'F64', shape: [2], data: Float64Array.from([0.1, -3]) };
  const conv = toFloat32(f64, 'b');
  assert.ok(conv instanceof Float32Array);
  assert.deepEqual(conv, Float32Array.from([0.1, -3]));
  for (const t of [
    { dtype: 'I64', shape: [1], data: BigInt64Array.from([1n]) },
    { dtype: 'I32', shape: [1], data: Int32Array.from([1]) },
  ] as SafeTensor[]) {
    assert.throws(
      () => toFloat32(t, 'labels'),
      (e: unknown) => e instanceof SafetensorsError && /'labels'/.test(e.message) && new RegExp(t.dtype).test(e.message),
    );
  }
});

test('missing and unreadable files', () => {
  expectError(path.join(dir, 'does-not-exist.safetensors'), /cannot read.*ENOENT/);
  expectError(dir, /cannot read.*EISDIR/);
});

test('files shorter than 8 bytes', () => {
  for (const size of [0, 3, 7]) {
    const file = tmpFile();
    fs.writeFileSync(file, Buffer.alloc(size));
    expectError(file, new RegExp(`${size} bytes, shorter than`));
  }
});

test('header length past the end of the file', () => {
  expectError(rawFile('{}', new Uint8Array(0), 3n), /header length 3 runs past the end/);
  expectError(rawFile('{}', new Uint8Array(0), 2n ** 64n - 1n), /header length 18446744073709551615 runs past/);
});

test('header that is not JSON or not an object', () => {
  expectError(rawFile('{"a": '), /not valid JSON/);
  expectError(rawFile(''), /not valid JSON/);
  expectError(rawFile('[1, 2]'), /not a JSON object/);
  expectError(rawFile('null'), /not a JSON object/);
  expectError(rawFile('"str"'), /not a JSON object/);
  expectError(rawFile({ __metadata__: { a: 1 } }), /__metadata__ entry 'a'/);
  expectError(rawFile({ __metadata__: ['x'] }), /__metadata__ is not an object/);
  expectError(rawFile({ x: 5 }), /not an object with dtype/, 'x');
});

test('unknown dtype names the tensor and the allowed dtypes', () => {
  expectError(
    rawFile({ 'layer1.0.conv1.weight': { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, new Uint8Array(2)),
    /unknown dtype "BF16": allowed F32, F64, I64, I32/,
    'layer1.0.conv1.weight',
  );
  expectError(rawFile({ y: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /unknown dtype/, 'y');
  expectError(rawFile({ z: { dtype: 'toString', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /unknown dtype/, 'z');
});

test('shapes that are not arrays of non-negative integers', () => {
  for (const shape of [[-1], [1.5], ['2'], 3, null, [null], [2 ** 60], [2 ** 40, 2 ** 40]]) {
    expectError(
      rawFile({ s: { dtype: 'F32', shape, data_offsets: [0, 4] } }, new Uint8Array(4)),
      /shape .* (is not an array of non-negative integers|has too many elements)/,
      's',
    );
  }
  expectError(rawFile({ s: { dtype: 'F32', data_offsets: [0, 4] } }, new Uint8Array(4)), /shape undefined/, 's');
});

test('data_offsets out of range or not matching the shape', () => {
  for (const offsets of [[4, 0], [-4, 0], [0], [0, 4, 8], [0, '4'], 'x', [0.5, 4.5]]) {
    expectError(
      rawFile({ o: { dtype: 'F32', shape: [1], data_offsets: offsets } }, new Uint8Array(8)),
      /data_offsets .* out of range/,
      'o',
    );
  }
  expectError(
    rawFile({ o: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, new Uint8Array(24)),
    /span 20 bytes but shape \[2,3\] of F32 needs 24/,
    'o',
  );
  expectError(
    rawFile({ o: { dtype: 'I64', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(16)),
    /needs 16/,
    'o',
  );
});

test('truncated data', () => {
  const header = {
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    b: { dtype: 'F64', shape: [2], data_offsets: [8, 24] },
  };
  expectError(rawFile(header, new Uint8Array(23)), /file truncated: data section is 23 bytes but the tensor ends at byte 24/, 'b');
  expectError(rawFile(header, new Uint8Array(0)), /file truncated/, 'b');
  // A real file cut short.
  const file = tmpFile();
  writeSafetensors(file, { w: { dtype: 'F32', shape: [4, 4], data: new Float32Array(16) } });
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 1));
  expectError(file, /file truncated/, 'w');
});

test('the writer rejects bad tensors with a typed error and leaves no file', () => {
  const cases: [Record<string, SafeTensor>, RegExp][] = [
    [{ a: { dtype: 'F16' as never, shape: [1], data: new Float32Array(1) } }, /'a'.*unknown dtype "F16"/],
    [{ a: { dtype: 'F32', shape: [2], data: new Float32Array(1) } }, /'a'.*1 elements but shape \[2\] needs 2/],
    [{ a: { dtype: 'F32', shape: [1], data: new Float64Array(1) } }, /'a'.*Float64Array.*F32/],
    [{ a: { dtype: 'I64', shape: [-1], data: new BigInt64Array(0) } }, /'a'.*shape \[-1\]/],
    [{ __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, /reserved/],
  ];
  for (const [tensors, message] of cases) {
    const file = tmpFile();
    assert.throws(
      () => writeSafetensors(file, tensors),
      (e: unknown) => e instanceof SafetensorsError && e.message.includes(file) && message.test(e.message),
      message.source,
    );
    assert.equal(fs.existsSync(file), false);
  }
  assert.throws(
    () => writeSafetensors(tmpFile(), {}, { a: 1 as unknown as string }),
    (e: unknown) => e instanceof SafetensorsError && /metadata entry 'a'/.test(e.message),
  );
  const inMissingDir = path.join(dir, 'no-such-dir', 'x.safetensors');
  assert.throws(
    () => writeSafetensors(inMissingDir, {}),
    (e: unknown) => e instanceof SafetensorsError && /cannot write.*ENOENT/.test(e.message),
  );
});
