// `stepscope launch -n N -- <command>`: starts N ranks of a stepscope command
// on this machine with the variables torchrun users know (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT). On one machine the ranks meet in a
// fresh store directory; across machines (--nnodes) or with --master-port they
// meet in the TCP store that global rank 0 serves at MASTER_ADDR:MASTER_PORT.
// Rank 0's output is the command's output; other ranks' stderr is prefixed.
// Cores are split between the local ranks unless OMP_NUM_THREADS is set.
// As torchrun: when a rank fails, the others are stopped (they would wait for
// it until their rendezvous or collective timed out), and launch exits with
// the code of the first rank that failed, the cause.
import { spawn, type ChildProcess } from 'node:child_process';
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
  const children: ChildProcess[] = [];
  let firstFailure: { rank: number; code: number } | undefined;
  const stopOthers = (failedRank: number, code: number) => {
    if (firstFailure) return;
    firstFailure = { rank: failedRank, code };
    const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
    if (running.length === 0) return;
    process.stderr.write(`stepscope launch: rank ${failedRank} exited with code ${code}; stopping the other ranks\n`);
    for (const c of running) c.kill('SIGTERM');
  };
  await Promise.all(
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
        children.push(child);
        child.stderr!.on('data', (chunk: Buffer) => {
          const text = chunk.toString();
          process.stderr.write(rank === 0 ? text : text.replace(/^(?=.)/gm, `[rank ${rank}] `));
        });
        child.on('close', (code, signal) => {
          const c = code ?? (signal ? 1 : 0);
          if (c !== 0) stopOthers(rank, c);
          resolve(c);
        });
      }),
    ),
  );
  if (store) fs.rmSync(store, { recursive: true, force: true });
  return firstFailure?.code ?? 0; // every failing rank reports itself: the first is the cause
}
