// What this machine offers: backends, libraries (with versions or the reason
// they are missing) and the measured peak that every % of peak refers to.
import type { BuildInfo, PeakMeasurement } from '../binding';
import type { CudaPeak } from '../binding-cuda';
import { addon } from './native';
import { cudaAddon, cudaStatus, type CudaStatus } from './native-cuda';
import { htmlReport } from './report/html-report';

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
  /** The CUDA addon: versions when it loaded, and why the backend is unavailable if it is. */
  cuda: CudaStatus;
  /** The GPU's measured peaks, when a GPU is usable. */
  cudaPeak?: CudaPeak;
}

export async function doctor(trials = 3): Promise<DoctorReport> {
  const os = await import('node:os');
  const native = addon();
  const build = native.buildInfo();
  const peak = await native.measurePeak(trials);
  const cuda = cudaStatus();
  const cudaPeak = cuda.available ? await cudaAddon().measurePeak(trials) : undefined;
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    backends: [
      { name: 'cpu', available: true },
      cuda.available ? { name: 'cuda', available: true } : { name: 'cuda', available: false, reason: cuda.reason },
    ],
    build,
    peak,
    cuda,
    ...(cudaPeak ? { cudaPeak } : {}),
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lib = (name: string, l: BuildInfo['onednn']) =>
    `  ${name.padEnd(9)} ${l.found ? `found${l.version ? `  ${l.version}` : ' (no version reported)'}${l.threads ? ` (${l.threads} threads)` : ''}` : `missing: ${l.reason ?? 'no reason reported'}`}`;
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
    ...formatCuda(r.cuda),
    `measured peak (${r.peak.threads} threads)`,
    `  fp32 FMA  ${r.peak.fmaGflops.toFixed(1)} GFLOP/s (${r.peak.fmaKernel} kernel)`,
    `  memory    ${r.peak.bandwidthGBs.toFixed(1)} GB/s (triad, read + write)`,
    ...(r.cudaPeak ? formatCudaPeak(r.cudaPeak).map(([k, v]) => `  ${k.padEnd(9)} ${v}`) : []),
  ].join('\n');
}

/** The GPU's measured peaks as (name, value) rows. */
function formatCudaPeak(p: CudaPeak): [string, string][] {
  return [
    ['GPU fp32', `${(p.fp32Gflops / 1e3).toFixed(1)} TFLOP/s (cuBLAS ${p.gemmSize}^3, no tensor cores)`],
    ['GPU tf32', `${(p.tf32Gflops / 1e3).toFixed(1)} TFLOP/s (tensor cores)`],
    ['GPU bf16', `${(p.bf16Gflops / 1e3).toFixed(1)} TFLOP/s (tensor cores, fp32 accumulation)`],
    ['GPU HBM', `${p.bandwidthGBs.toFixed(0)} GB/s (device copy, read + write)`],
  ];
}

function formatCuda(c: CudaStatus): string[] {
  if (!c.info) return [`cuda addon (${c.addonPath})`, `  ${c.reason}`];
  const i = c.info;
  const describe = (d: NonNullable<typeof i.device>) =>
    `${d.name}, compute capability ${d.computeCapability}, ${(d.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${d.multiprocessors} SMs`;
  const gpu = i.device ? describe(i.device) + (i.deviceCount > 1 ? ` (device ${i.device.index} of ${i.deviceCount}: step --gpus ${i.deviceCount} drives them all)` : '') : `none: ${i.reason}`;
  // Every other visible GPU on its own line (a machine may mix models).
  const others = (i.devices ?? []).filter((d) => d.index !== i.device?.index).map((d) => `  GPU ${d.index}     ${describe(d)}`);
  return [
    `cuda addon (${i.compiler}, architectures ${i.architectures})`,
    `  GPU       ${gpu}`,
    ...others,
    `  driver    ${i.driverVersion ?? 'none'}`,
    `  runtime   CUDA ${i.runtimeVersion}`,
    `  cuDNN     ${i.cudnn.found ? `${i.cudnn.version} (built for CUDA ${i.cudnn.cudart})` : `unusable: ${i.cudnn.reason}`}`,
    `  cuBLAS    ${i.cublas}`,
    `  NCCL      ${i.nccl.found ? i.nccl.version : `missing: ${i.nccl.reason}`}`,
  ];
}

/** The same facts as a self-contained HTML report (`doctor --report`). */
export function doctorReport(r: DoctorReport): string {
  const lib = (name: string, l: BuildInfo['onednn']): string[] => [name, l.found ? 'found' : 'missing', l.found ? `${l.version ?? ''}${l.threads ? ` (${l.threads} threads)` : ''}` : l.reason ?? ''];
  return htmlReport({
    title: 'stepscope doctor',
    runs: [],
    summary: [`node ${r.node} (${r.platform}), CPU: ${r.cpuModel}`, `cpu addon: ${r.build.compiler}${r.build.sanitize ? ', sanitizer build' : ''}, OpenMP ${r.build.openmp}, ${r.build.threads} threads, sgemm micro-kernel ${r.build.sgemmKernel}`],
    tables: [
      { title: 'Backends', headers: ['backend', 'status'], rows: r.backends.map((b) => [b.name, b.available ? 'available' : `unavailable: ${b.reason}`]) },
      { title: 'Libraries', headers: ['library', 'status', 'version or reason'], rows: [lib('oneDNN', r.build.onednn), lib('OpenBLAS', r.build.openblas), lib('Gloo', r.build.gloo), lib('libjpeg', r.build.jpeg)] },
      { title: 'CUDA', headers: ['cuda addon'], rows: formatCuda(r.cuda).map((line) => [line.trim()]) },
      {
        title: `Measured peak (${r.peak.threads} threads)`, headers: ['measure', 'value'],
        rows: [['fp32 FMA GFLOP/s', r.peak.fmaGflops.toFixed(1)], ['kernel', r.peak.fmaKernel], ['memory GB/s (triad, read + write)', r.peak.bandwidthGBs.toFixed(1)],
          ...(r.cudaPeak ? formatCudaPeak(r.cudaPeak) : [])],
      },
    ],
  });
}
