// The NCCL id's rendezvous (src/comm/rendezvous.ts): rank 0's bytes reach
// the other ranks through a store directory or rank 0's TCP server, whichever
// rank starts first; a missing rank 0 is a clear ERR_COMM after the timeout.
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { shareFromRankZero, type RendezvousStore } from '../src/comm/rendezvous';
import { freePort, tempDir } from './helpers';

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function exchange(store: RendezvousStore, key: string, size: number): Promise<Uint8Array[]> {
  const id = new Uint8Array(crypto.randomBytes(128));
  let made = 0;
  // The other ranks ask first: they must wait for rank 0, not fail.
  const others = Array.from({ length: size - 1 }, (_, i) => shareFromRankZero({ rank: i + 1, size, store }, key, () => assert.fail('only rank 0 makes the bytes'), 10_000));
  await delay(100);
  const own = await shareFromRankZero({ rank: 0, size, store }, key, () => (made++, id), 10_000);
  const got = [own, ...(await Promise.all(others))];
  assert.equal(made, 1);
  for (const g of got) assert.deepEqual(g, id);
  return got;
}

test('rendezvous through a store directory: every rank gets rank 0\'s bytes', async () => {
  const dir = tempDir('stepscope-rdv-');
  await exchange({ storePath: dir }, 'nccl-unique-id', 3);
  // Two keys in one store stay apart.
  const again = await exchange({ storePath: dir }, 'second', 2);
  assert.equal(again.length, 2);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['nccl-unique-id', 'second']); // no partial files left
  fs.rmSync(dir, { recursive: true, force: true });
});

test('rendezvous through rank 0\'s TCP server: every rank gets rank 0\'s bytes, the port is freed after', async () => {
  const port = await freePort();
  await exchange({ storeHost: '127.0.0.1', storePort: port }, 'nccl-unique-id', 3);
  await delay(50);
  // Everyone has read: the server closed, so the port can be served again.
  await exchange({ storeHost: '127.0.0.1', storePort: port }, 'again', 2);
});

test('rendezvous without rank 0: ERR_COMM naming the place and the timeout; bad keys refused', async () => {
  const dir = tempDir('stepscope-rdv-');
  await assert.rejects(shareFromRankZero({ rank: 1, size: 2, store: { storePath: dir } }, 'id', () => new Uint8Array(1), 200),
    (e: Error & { code?: string }) => e.code === 'ERR_COMM' && e.message.includes(path.join(dir, 'id')) && /within 200 ms/.test(e.message));
  const port = await freePort();
  await assert.rejects(shareFromRankZero({ rank: 1, size: 2, store: { storeHost: '127.0.0.1', storePort: port } }, 'id', () => new Uint8Array(1), 300),
    (e: Error & { code?: string }) => e.code === 'ERR_COMM' && e.message.includes(`127.0.0.1:${port}`) && /within 300 ms/.test(e.message));
  await assert.rejects(shareFromRankZero({ rank: 0, size: 2, store: { storePath: dir } }, '../escape', () => new Uint8Array(1), 100), /allowed letters, digits/);
  fs.rmSync(dir, { recursive: true, force: true });
});
