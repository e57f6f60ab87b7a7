// A dependency-free reader and writer for the safetensors format:
//   8 bytes   little-endian u64 N, the length of the header
//   N bytes   JSON: { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }
//   rest      raw little-endian tensor data; offsets are relative to the end of the header
// Bad files give a SafetensorsError that names the file and the tensor; nothing crashes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { writeFileAtomic } from './json-file';

export type SafeDType = 'F32' | 'F64' | 'I64' | 'I32';

export interface SafeTensor {
  dtype: SafeDType;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
  readonly code = 'ERR_SAFETENSORS';
}

const ITEM_SIZE: Record<SafeDType, number> = { F32: 4, F64: 8, I64: 8, I32: 4 };
const DTYPES = Object.keys(ITEM_SIZE) as SafeDType[];
const METADATA_KEY = '__metadata__';
const LITTLE_ENDIAN = os.endianness() === 'LE';

function fail(file: string, tensor: string | undefined, detail: string): never {
  const where = tensor === undefined ? file : `${file}: tensor '${tensor}'`;
  throw new SafetensorsError(`${where}: ${detail}`);
}

function isDType(value: unknown): value is SafeDType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  try {
    const s = JSON.stringify(value);
    if (s === undefined) return String(value);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return String(value);
  }
}

// Checks a shape and returns its element count.
function checkShape(file: string, name: string, shape: unknown): number {
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    fail(file, name, `shape ${describe(shape)} is not an array of non-negative integers`);
  }
  let numel = 1;
  for (const d of shape as number[]) numel *= d;
  if (!Number.isSafeInteger(numel)) fail(file, name, `shape ${describe(shape)} has too many elements`);
  return numel;
}

function makeArray(dtype: SafeDType, length: number): SafeTensor['data'] {
  switch (dtype) {
    case 'F32':
      return new Float32Array(length);
    case 'F64':
      return new Float64Array(length);
    case 'I64':
      return new BigInt64Array(length);
    case 'I32':
      return new Int32Array(length);
  }
}

function matchesDType(dtype: SafeDType, data: unknown): boolean {
  switch (dtype) {
    case 'F32':
      return data instanceof Float32Array;
    case 'F64':
      return data instanceof Float64Array;
    case 'I64':
      return data instanceof BigInt64Array;
    case 'I32':
      return data instanceof Int32Array;
  }
}

// Copies little-endian bytes into a fresh (aligned) typed array.
function decode(dtype: SafeDType, bytes: Uint8Array, numel: number): SafeTensor['data'] {
  const out = makeArray(dtype, numel);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = ITEM_SIZE[dtype];
  for (let i = 0; i < numel; i++) {
    const at = i * size;
    if (out instanceof Float32Array) out[i] = view.getFloat32(at, true);
    else if (out instanceof Float64Array) out[i] = view.getFloat64(at, true);
    else if (out instanceof BigInt64Array) out[i] = view.getBigInt64(at, true);
    else out[i] = view.getInt32(at, true);
  }
  return out;
}

// The little-endian bytes of a typed array.
function encode(data: SafeTensor['data']): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bytes = new Uint8Array(data.byteLength);
  const view = new DataView(bytes.buffer);
  const size = data.BYTES_PER_ELEMENT;
  for (let i = 0; i < data.length; i++) {
    const at = i * size;
    if (data instanceof Float32Array) view.setFloat32(at, data[i], true);
    else if (data instanceof Float64Array) view.setFloat64(at, data[i], true);
    else if (data instanceof BigInt64Array) view.setBigInt64(at, data[i], true);
    else view.setInt32(at, data[i], true);
  }
  return bytes;
}

export function readSafetensors(file: string): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    fail(file, undefined, `cannot read the file (${err.code ?? err.message})`);
  }
  if (buf.length < 8) fail(file, undefined, `file is ${buf.length} bytes, shorter than the 8-byte header length`);
  const headerLen = buf.readBigUInt64LE(0);
  if (headerLen > BigInt(buf.length - 8)) {
    fail(file, undefined, `header length ${headerLen} runs past the end of the file (${buf.length - 8} bytes after the length)`);
  }
  const dataStart = 8 + Number(headerLen);
  const dataLen = buf.length - dataStart;

  let header: unknown;
  try {
    header = JSON.parse(buf.toString('utf8', 8, dataStart));
  } catch (e) {
    fail(file, undefined, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) fail(file, undefined, `header is not a JSON object (got ${describe(header)})`);

  let metadata: Record<string, string> = {};
  if (Object.prototype.hasOwnProperty.call(header, METADATA_KEY)) {
    const meta = header[METADATA_KEY];
    if (!isPlainObject(meta)) fail(file, undefined, `${METADATA_KEY} is not an object of strings`);
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== 'string') fail(file, undefined, `${METADATA_KEY} entry '${k}' is ${describe(v)}, not a string`);
    }
    metadata = Object.fromEntries(Object.entries(meta)) as Record<string, string>;
  }

  const entries: { name: string; dtype: SafeDType; shape: number[]; numel: number; begin: number; end: number }[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === METADATA_KEY) continue;
    if (!isPlainObject(info)) fail(file, name, `entry is ${describe(info)}, not an object with dtype, shape and data_offsets`);
    const dtype = info.dtype;
    if (!isDType(dtype)) fail(file, name, `unknown dtype ${describe(dtype)}: allowed ${DTYPES.join(', ')}`);
    const numel = checkShape(file, name, info.shape);
    const offsets = info.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(file, name, `data_offsets ${describe(offsets)} out of range: need [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const want = numel * ITEM_SIZE[dtype];
    if (end - begin !== want) {
      fail(
        file,
        name,
        `data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape ${describe(info.shape)} of ${dtype} needs ${want}`,
      );
    }
    entries.push({ name, dtype, shape: (info.shape as number[]).slice(), numel, begin, end });
  }

  let last: (typeof entries)[number] | undefined;
  for (const e of entries) if (last === undefined || e.end > last.end) last = e;
  if (last !== undefined && last.end > dataLen) {
    fail(file, last.name, `file truncated: data section is ${dataLen} bytes but the tensor ends at byte ${last.end}`);
  }

  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) {
    const bytes = buf.subarray(dataStart + e.begin, dataStart + e.end);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: decode(e.dtype, bytes, e.numel) });
  }
  return { tensors, metadata };
}

export function writeSafetensors(
  file: string,
  tensors: Map<string, SafeTensor> | Record<string, SafeTensor>,
  metadata?: Record<string, string>,
): void {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) fail(file, undefined, `metadata is not an object of strings`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail(file, undefined, `metadata entry '${k}' is ${describe(v)}, not a string`);
    }
    header[METADATA_KEY] = { ...metadata };
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of list) {
    if (name === METADATA_KEY) fail(file, name, `the name is reserved for metadata`);
    if (name.length === 0) fail(file, name, `tensor names must not be empty`);
    if (!isPlainObject(t)) fail(file, name, `value is not a tensor`);
    if (!isDType(t.dtype)) fail(file, name, `unknown dtype ${describe(t.dtype)}: allowed ${DTYPES.join(', ')}`);
    const numel = checkShape(file, name, t.shape);
    if (!matchesDType(t.dtype, t.data)) {
      const got = (t.data as object | null)?.constructor?.name ?? describe(t.data);
      fail(file, name, `data is ${got}, which does not match dtype ${t.dtype}`);
    }
    if (t.data.length !== numel) {
      fail(file, name, `data has ${t.data.length} elements but shape ${describe(t.shape)} needs ${numel}`);
    }
    const bytes = encode(t.data);
    // Object.defineProperty keeps a name such as '__proto__' an ordinary key.
    Object.defineProperty(header, name, {
      value: { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + bytes.byteLength] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    chunks.push(bytes);
    offset += bytes.byteLength;
  }

  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const lenBytes = Buffer.alloc(8);
  lenBytes.writeBigUInt64LE(BigInt(json.length));

  // As every output: a symlink's target, a device in place, a temp file and a rename otherwise (io/json-file.ts).
  // A failed write is a SafetensorsError that also carries the syscall, so the step's OutputWriter
  // collects it as the file system's failure (reported after the other outputs).
  try {
    writeFileAtomic(file, [lenBytes, json, ...chunks]);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (typeof err?.syscall !== 'string') throw e; // a usage error (empty path, a directory)
    throw Object.assign(new SafetensorsError(`${file}: cannot write the file (${err.message})`), { syscall: err.syscall, errno: err.errno, path: file });
  }
}

export function toFloat32(t: SafeTensor, nameForErrors: string): Float32Array {
  if (t.dtype === 'F32' && t.data instanceof Float32Array) return t.data;
  if (t.dtype === 'F64' && t.data instanceof Float64Array) return Float32Array.from(t.data);
  throw new SafetensorsError(`tensor '${nameForErrors}': dtype ${t.dtype} cannot be converted to F32: allowed F32, F64`);
}
