// Shared by the tests: the CLI run as a user runs it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');

export function cli(args: string[], env: Record<string, string> = {}): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'stepscope.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 300_000,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const made: string[] = [];
process.on('exit', () => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the system's temporary one, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Debian's chromium (or another Chromium on the PATH), or undefined. */
export function findChromium(): string | undefined {
  return ['chromium', 'chromium-browser', 'google-chrome'].find((c) => spawnSync('which', [c], { env: { PATH: process.env.PATH } }).status === 0);
}

/** The environment for the browser: the sanitizer run preloads ASan into every child, not into the browser. */
export function browserEnv(): NodeJS.ProcessEnv {
  const { LD_PRELOAD: _p, ASAN_OPTIONS: _a, UBSAN_OPTIONS: _u, LSAN_OPTIONS: _l, ...env } = process.env;
  return env;
}

/** The DOM of an HTML file as headless Chromium parsed it, or undefined when there is no Chromium here. */
export function renderedDom(html: string): string | undefined {
  const chromium = findChromium();
  if (!chromium) return undefined;
  const dom = spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--dump-dom', `file://${html}`], { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 << 20, env: browserEnv() });
  if (dom.status !== 0) throw new Error(`chromium failed on ${html}: ${dom.stderr}`);
  return dom.stdout;
}

/** A TCP port nobody listens on now (for rank 0's rendezvous store). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
