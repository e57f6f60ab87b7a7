// `stepscope launch -n N -- <command>`: starts N ranks of a stepscope command
// on this machine with the variables torchrun users know (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and a fresh Gloo store directory.
// Rank 0's output is the command's output; other ranks' stderr is prefixed.
// Cores are split between the ranks unless OMP_NUM_THREADS is set.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export async function launch(n: number, command: string[]): Promise<number> {
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'stepscope-gloo-'));
  const bin = path.resolve(__dirname, '..', '..', 'bin', 'stepscope.js');
  const threads = process.env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(os.cpus().length / n)));
  const codes = await Promise.all(
    Array.from({ length: n }, (_, rank) =>
      new Promise<number>((resolve) => {
        const child = spawn(process.execPath, [bin, ...command], {
          env: {
            ...process.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: String(n),
            MASTER_ADDR: process.env.MASTER_ADDR ?? '127.0.0.1', MASTER_PORT: process.env.MASTER_PORT ?? '29500',
            STEPSCOPE_GLOO_STORE: store, OMP_NUM_THREADS: threads,
          },
          stdio: ['ignore', rank === 0 ? 'inherit' : 'ignore', 'pipe'],
        });
        child.stderr!.on('data', (chunk: Buffer) => {
          const text = chunk.toString();
          process.stderr.write(rank === 0 ? text : text.replace(/^(?=.)/gm, `[rank ${rank}] `));
        });
        child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
      }),
    ),
  );
  fs.rmSync(store, { recursive: true, force: true });
  const failed = codes.findIndex((c) => c !== 0);
  return failed < 0 ? 0 : codes[failed];
}
