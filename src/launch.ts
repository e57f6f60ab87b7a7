// `stepscope launch -n N -- <command>`: starts N ranks of a stepscope command
// on this machine with the variables torchrun users know (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT). On one machine the ranks meet in a
// fresh store directory; across machines (--nnodes) or with --master-port they
// meet in the TCP store that global rank 0 serves at MASTER_ADDR:MASTER_PORT.
// Rank 0's output is the command's output; other ranks' stderr is prefixed.
// Cores are split between the local ranks unless OMP_NUM_THREADS is set.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface LaunchOptions {
  nprocs: number;      // ranks on this machine
  nnodes: number;      // machines, each running launch with the same nprocs
  nodeRank: number;    // this machine's index
  masterAddr: string;
  masterPort: number;
  tcpStore: boolean;   // rendezvous through rank 0's TCP store, not a directory
}

export async function launch(o: LaunchOptions, command: string[]): Promise<number> {
  const store = o.tcpStore ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'stepscope-gloo-'));
  const bin = path.resolve(__dirname, '..', '..', 'bin', 'stepscope.js');
  const threads = process.env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(os.cpus().length / o.nprocs)));
  const { STEPSCOPE_GLOO_STORE: _inherited, ...env } = process.env;
  const codes = await Promise.all(
    Array.from({ length: o.nprocs }, (_, local) =>
      new Promise<number>((resolve) => {
        const rank = o.nodeRank * o.nprocs + local;
        const child = spawn(process.execPath, [bin, ...command], {
          env: {
            ...env, RANK: String(rank), LOCAL_RANK: String(local), WORLD_SIZE: String(o.nprocs * o.nnodes),
            MASTER_ADDR: o.masterAddr, MASTER_PORT: String(o.masterPort), OMP_NUM_THREADS: threads,
            ...(store ? { STEPSCOPE_GLOO_STORE: store } : {}),
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
  if (store) fs.rmSync(store, { recursive: true, force: true });
  const failed = codes.findIndex((c) => c !== 0);
  return failed < 0 ? 0 : codes[failed];
}
