// What this machine offers: backends, libraries (with versions or the reason
// they are missing) and the measured peak that every % of peak refers to.
import type { BuildInfo, PeakMeasurement } from '../binding';
import { addon } from './native';

export interface BackendStatus {
  name: 'cpu' | 'cuda';
  available: boolean;
  reason?: string;
}

export interface DoctorReport {
  node: string;
  platform: string;
  cpuModel: string;
  backends: BackendStatus[];
  build: BuildInfo;
  peak: PeakMeasurement;
}

export async function doctor(trials = 3): Promise<DoctorReport> {
  const os = await import('node:os');
  const native = addon();
  const build = native.buildInfo();
  const peak = await native.measurePeak(trials);
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    backends: [
      { name: 'cpu', available: true },
      { name: 'cuda', available: false, reason: 'the CUDA backend is not built yet (issue #5): no CUDA addon was found' },
    ],
    build,
    peak,
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lib = (name: string, l: BuildInfo['onednn']) =>
    `  ${name.padEnd(9)} ${l.found ? `found  ${l.version}${l.threads ? ` (${l.threads} threads)` : ''}` : `missing: ${l.reason}`}`;
  return [
    `stepscope doctor`,
    `  node      ${r.node} (${r.platform}), CPU: ${r.cpuModel}`,
    `backends`,
    ...r.backends.map((b) => `  ${b.name.padEnd(9)} ${b.available ? 'available' : `unavailable: ${b.reason}`}`),
    `libraries (cpu addon, ${r.build.compiler}${r.build.sanitize ? ', sanitizer build' : ''})`,
    lib('oneDNN', r.build.onednn),
    lib('OpenBLAS', r.build.openblas),
    lib('Gloo', r.build.gloo),
    lib('libjpeg', r.build.jpeg),
    `  OpenMP    ${r.build.openmp}, ${r.build.threads} threads`,
    `  sgemm     own micro-kernel ${r.build.sgemmKernel}`,
    `measured peak (${r.peak.threads} threads)`,
    `  fp32 FMA  ${r.peak.fmaGflops.toFixed(1)} GFLOP/s (${r.peak.fmaKernel} kernel)`,
    `  memory    ${r.peak.bandwidthGBs.toFixed(1)} GB/s (triad, read + write)`,
  ].join('\n');
}
