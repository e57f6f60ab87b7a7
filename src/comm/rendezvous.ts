// Hands bytes made on rank 0 (NCCL's unique id) to every other rank, through
// the place the ranks meet: the store directory `stepscope launch` makes on
// one machine (STEPSCOPE_GLOO_STORE), or a TCP server that rank 0 runs at
// MASTER_ADDR:MASTER_PORT across machines, as torchrun's store does. Gloo
// meets in the same places through its own stores (native/comm).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

export type RendezvousStore = { storePath: string } | { storeHost: string; storePort: number };

export interface RendezvousPlace {
  rank: number;
  size: number;
  store: RendezvousStore;
}

const POLL_MS = 20;

function commError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_COMM' });
}

/**
 * Rank 0 calls make() and returns its bytes; every other rank waits (up to
 * timeoutMs) for them under `key`. Keys keep several exchanges apart.
 */
export async function shareFromRankZero(place: RendezvousPlace, key: string, make: () => Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  if (!/^[A-Za-z0-9._-]+$/.test(key)) throw new Error(`rendezvous key '${key}': allowed letters, digits, '.', '_' and '-'`);
  if (place.rank === 0) {
    const bytes = make();
    if ('storePath' in place.store) publishFile(place.store.storePath, key, bytes);
    else if (place.size > 1) await serveTcp(place.store.storePort, key, bytes, place.size - 1);
    return bytes;
  }
  const deadline = Date.now() + timeoutMs;
  const who = `rank ${place.rank} of ${place.size}`;
  if ('storePath' in place.store) {
    const file = path.join(place.store.storePath, key);
    for (;;) {
      if (fs.existsSync(file)) return new Uint8Array(fs.readFileSync(file));
      if (Date.now() > deadline) throw commError(`${who}: nothing from rank 0 at ${file} within ${timeoutMs} ms (rank 0 did not start, or failed before its rendezvous)`);
      await sleep(POLL_MS);
    }
  }
  const { storeHost, storePort } = place.store;
  for (;;) {
    const bytes = await fetchTcp(storeHost, storePort, key).catch(() => undefined);
    if (bytes && bytes.length > 0) return bytes;
    if (Date.now() > deadline) throw commError(`${who}: nothing from rank 0 at ${storeHost}:${storePort} (key ${key}) within ${timeoutMs} ms (rank 0 did not start, or the port is not reachable)`);
    await sleep(POLL_MS * 5);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Written whole or not at all: a rank never reads half an id. */
function publishFile(dir: string, key: string, bytes: Uint8Array): void {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, key);
  const partial = `${file}.${process.pid}.partial`;
  fs.writeFileSync(partial, bytes);
  fs.renameSync(partial, file);
}

// One server per port and process, holding every key this rank 0 published.
const servers = new Map<number, { server: net.Server; values: Map<string, { bytes: Uint8Array; left: number }> }>();

/**
 * Serves `key` on `port` (all interfaces) until `readers` ranks have read it.
 * Protocol: the client sends "key\n"; the server answers the bytes, or
 * nothing when it has no such key yet, and closes.
 */
async function serveTcp(port: number, key: string, bytes: Uint8Array, readers: number): Promise<void> {
  let entry = servers.get(port);
  if (!entry) {
    const values = new Map<string, { bytes: Uint8Array; left: number }>();
    const server = net.createServer((socket) => {
      let asked = '';
      socket.on('data', (chunk) => {
        asked += chunk.toString('latin1');
        const end = asked.indexOf('\n');
        if (end < 0) return;
        const name = asked.slice(0, end);
        const value = values.get(name);
        if (value) {
          socket.end(value.bytes);
          if (--value.left === 0) values.delete(name);
          if (values.size === 0) closeServer(port);
        } else {
          socket.end();
        }
      });
      socket.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(commError(`rank 0: cannot serve the rendezvous on port ${port}: ${err.code ?? err.message} (another process holds it? choose another MASTER_PORT)`)));
      server.listen(port, () => resolve());
    });
    server.unref(); // never keeps the process alive on its own
    entry = { server, values };
    servers.set(port, entry);
  }
  entry.values.set(key, { bytes, left: readers });
}

function closeServer(port: number): void {
  servers.get(port)?.server.close();
  servers.delete(port);
}

function fetchTcp(host: string, port: number, key: string): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    socket.setTimeout(5000, () => socket.destroy(new Error('timed out')));
    socket.on('connect', () => socket.write(`${key}\n`));
    socket.on('data', (c) => chunks.push(c));
    socket.on('end', () => resolve(new Uint8Array(Buffer.concat(chunks))));
    socket.on('error', reject);
  });
}
