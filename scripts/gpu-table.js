#!/usr/bin/env node
// The side-by-side table of scripts/gpu-check.sh, from the JSON it saved in
// a results folder: per ResNet-50 convolution (unique shapes) and pass, the
// best stepscope CUDA variant and cudnn:autotune against PyTorch on the same
// GPU (cudnn.benchmark on), totals over the layers, and the training
// step: PyTorch's and stepscope's (eager and --graph) per dtype, with the
// throughput ratio against PyTorch eager of the same dtype. Last, issue #5's
// four performance targets, each met or missed with the figures behind it.
//   node scripts/gpu-table.js <results folder>
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2];
if (!dir || !fs.existsSync(dir)) {
  console.error(`gpu-table: results folder '${dir ?? ''}' not found; usage: node scripts/gpu-table.js <folder>`);
  process.exit(2);
}
const read = (name) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
  } catch {
    return undefined;
  }
};
const fmt = (v, d = 3) => (v === undefined || v === null || Number.isNaN(v) ? '-' : v.toFixed(d));
/** The row with the smallest median (undefined for none). */
const fastestOf = (rows) => rows.reduce((a, r) => (a && a.medianMs <= r.medianMs ? a : r), undefined);
const pad = (rows) => {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ')).join('\n');
};

const out = [];
// Issue #5's targets, filled in as the tables are built and printed last: all four, always.
const targets = { step: undefined, bf16: undefined, autotune: [], own: undefined };
/**
 * A target's verdict over its rows, each { label, value, ok } or { label, missing: why }: 'missed' when a
 * measured row misses, else 'incomplete' when a row has no data (a cut budget, a failed run), else 'met'.
 */
function verdict(rows) {
  const measured = rows.filter((r) => !r.missing);
  const misses = measured.filter((r) => !r.ok);
  const missing = rows.filter((r) => r.missing);
  const word = misses.length > 0 ? 'missed' : missing.length > 0 ? 'incomplete' : 'met';
  const noData = missing.length ? `; no data for ${missing.length}: ${missing.slice(0, 4).map((r) => `${r.label} (${r.missing})`).join(', ')}${missing.length > 4 ? ', ...' : ''}` : '';
  return { word, measured, misses, noData };
}
const OWN_IGEMM = ['implicit-gemm-tf32', 'implicit-gemm-tf32-pipelined', 'implicit-gemm-tf32-along-m', 'implicit-gemm-bf16'];
for (const dtype of ['fp32', 'tf32']) {
  const ours = read(`conv-cuda-${dtype}.json`);
  const peer = read(`pytorch-conv-${dtype}.json`);
  if (!ours) {
    out.push(`conv ${dtype}: no stepscope results (conv-cuda-${dtype}.json missing)`);
    continue;
  }
  // A PyTorch row pairs with ours only at the same batch (results of earlier calls stay in the folder).
  const peerMs = new Map((peer?.rows ?? []).filter((r) => r.batch === undefined || r.batch === ours.batch).map((r) => [`${r.key} ${r.pass}`, r.medianMs]));
  const peerBatch = (peer?.rows ?? []).find((r) => r.batch !== undefined && r.batch !== ours.batch)?.batch;
  const rows = [['layer', 'pass', `best stepscope variant (${dtype})`, 'ms', 'cudnn:autotune ms', 'pytorch ms', 'best/pytorch', 'autotune/pytorch']];
  const autotuneRows = [];  // the target's rows: autotune ms / pytorch ms per unique shape and pass
  // Totals weight each shape by its layer count, over rows where both sides have a time.
  const totals = { best: 0, autotune: 0, peer: 0, layers: new Set() };
  const groups = new Map();
  for (const r of ours.rows) {
    const key = `${r.sameShapeAs ?? r.layer} ${r.pass}`;
    if (!groups.has(key)) groups.set(key, { layer: r.sameShapeAs ?? r.layer, pass: r.pass, rows: [], count: new Set() });
    const g = groups.get(key);
    g.count.add(r.layer);
    if (!r.sameShapeAs) g.rows.push(r);
  }
  for (const g of groups.values()) {
    const ok = g.rows.filter((r) => r.status === 'ok');
    // The best of this dtype's precision only: a bf16 (or, in the fp32 run, a tf32) kernel against PyTorch's
    // fp32 or tf32 would overstate stepscope. The rows without a precision (older JSON) count as this dtype's.
    const best = fastestOf(ok.filter((r) => !r.precision || r.precision === dtype));
    const auto = ok.find((r) => r.variant === 'cudnn:autotune');
    const p = peerMs.get(`${g.layer} ${g.pass}`);
    const n = g.count.size;
    if (best && auto && p !== undefined) {
      totals.best += n * best.medianMs;
      totals.autotune += n * auto.medianMs;
      totals.peer += n * p;
      for (const l of g.count) totals.layers.add(l);
    }
    const label = g.layer + (n > 1 ? ` (x${n})` : '');
    const autoRow = g.rows.find((r) => r.variant === 'cudnn:autotune');
    if (auto && p) autotuneRows.push({ label: `${label} ${g.pass}`, value: auto.medianMs / p, ok: auto.medianMs / p <= 1.05 });
    // Autotune ran and gave a wrong result: a miss, as for our kernels, not a gap in the data.
    else if (autoRow?.status === 'failed-check') autotuneRows.push({ label: `${label} ${g.pass}`, value: Number.NaN, note: 'failed the reference check', ok: false });
    else autotuneRows.push({ label: `${label} ${g.pass}`, missing: !autoRow ? 'no cudnn:autotune row' : !auto ? `cudnn:autotune ${autoRow.status}` : peerBatch !== undefined ? `PyTorch ran batch ${peerBatch}` : 'no PyTorch time' });
    rows.push([label, g.pass, best?.variant ?? '-', fmt(best?.medianMs), fmt(auto?.medianMs), fmt(p), best && p ? fmt(best.medianMs / p, 2) : '-', auto && p ? fmt(auto.medianMs / p, 2) : '-']);
  }
  // The total compares like with like, so it needs PyTorch's rows: without them it would sum nothing.
  if (totals.layers.size > 0) {
    rows.push([`total (${totals.layers.size} layers)`, 'all', '', fmt(totals.best, 2), fmt(totals.autotune, 2), fmt(totals.peer, 2), fmt(totals.best / totals.peer, 2), fmt(totals.autotune / totals.peer, 2)]);
  }
  // A run stopped early (bench conv --json on SIGTERM) has not met anything on the layers it never reached.
  const cut = ours.interrupted ? { label: 'the layers after the last row', missing: `bench stopped by ${ours.interrupted}` } : undefined;
  if (cut) autotuneRows.push(cut);
  // Target: autotuned cuDNN within 5% of PyTorch per layer (time ratio <= 1.05 on every unique shape and pass).
  const v = verdict(autotuneRows);
  const slowest = [...v.misses].sort((a, b) => (Number.isNaN(b.value) ? Infinity : b.value) - (Number.isNaN(a.value) ? Infinity : a.value));
  targets.autotune.push(`cudnn:autotune within 5% of PyTorch per layer (${dtype}, batch ${ours.batch}): ${v.word}, ${v.measured.length - v.misses.length}/${autotuneRows.length} rows within` +
    (slowest.length ? `; slowest: ${slowest.slice(0, 5).map((r) => `${r.label} ${r.note ?? `${r.value.toFixed(2)}x`}`).join(', ')}` : '') + v.noData);
  const failed = ours.rows.filter((r) => r.status === 'failed-check' && !r.sameShapeAs).length;
  const unsupported = ours.rows.filter((r) => r.status === 'unsupported' && !r.sameShapeAs).length;
  const errors = ours.rows.filter((r) => r.status === 'error' && !r.sameShapeAs);
  // PyTorch rows timed while the GPU had already drained the queue count host dispatch: said, not hidden.
  const notQueued = peer?.device === 'cuda' ? (peer.rows ?? []).filter((r) => r.queued === false).length : 0;
  out.push(`conv ${dtype}, batch ${ours.batch}, ${ours.machine?.gpu?.name ?? 'GPU'}: stepscope (CUDA events) vs PyTorch ${peer?.torch ?? '(missing)'} (cudnn.benchmark)` +
    (notQueued ? ` [${notQueued} PyTorch row(s) not queued ahead of the GPU: their times include host dispatch]` : '') +
    (cut ? ` [stopped by ${ours.interrupted}: partial rows]` : '') +
    `; ${failed} row(s) failed the reference check, ${unsupported} unsupported, ${errors.length} failed in cuDNN` +
    (errors.length ? ` (${errors.slice(0, 3).map((r) => `${r.layer} ${r.pass} ${r.variant}`).join(', ')}${errors.length > 3 ? ', ...' : ''})` : ''));
  out.push(pad(rows));
  out.push('');
  // Issue #5's target: our implicit GEMM at half of cuDNN's best or better on the 3x3 layers (speed ratio = cuDNN ms / ours ms).
  // The tf32 run only: in the fp32 run cuDNN does FMA math, ours tf32.
  if (dtype !== 'tf32') continue;
  const own = [['3x3 layer', 'pass', 'best cudnn:*', 'ms', ...OWN_IGEMM.map((v) => `${v} ms`), 'best own tf32 / cudnn speed']];
  const ownRows = [];  // the target's rows: cuDNN's best ms / our fastest tf32 ms per 3x3 shape and pass
  for (const g of [...groups.values()].filter((x) => x.rows[0]?.shape?.r === 3)) {
    const ok = g.rows.filter((r) => r.status === 'ok');
    const cudnn = fastestOf(ok.filter((r) => r.variant.startsWith('cudnn:')));
    const mine = OWN_IGEMM.map((v) => ok.find((r) => r.variant === v));
    // The ratio takes the tf32 kernels only: the precision of cuDNN's rows in this run.
    const fastest = fastestOf(mine.filter((r) => r && r.variant !== 'implicit-gemm-bf16'));
    own.push([g.layer + (g.count.size > 1 ? ` (x${g.count.size})` : ''), g.pass, cudnn?.variant ?? '-', fmt(cudnn?.medianMs), ...mine.map((r) => fmt(r?.medianMs)),
      cudnn && fastest ? fmt(cudnn.medianMs / fastest.medianMs, 2) : '-']);
    const label = `${g.layer} ${g.pass}`;
    const ownTf32 = g.rows.filter((r) => OWN_IGEMM.includes(r.variant) && r.variant !== 'implicit-gemm-bf16');
    if (cudnn && fastest) ownRows.push({ label, value: cudnn.medianMs / fastest.medianMs, ok: cudnn.medianMs / fastest.medianMs >= 0.5 });
    // Ours ran and none passed its check: a miss, not a gap in the data.
    else if (cudnn && ownTf32.some((r) => r.status === 'failed-check')) ownRows.push({ label, value: 0, ok: false });
    else ownRows.push({ label, missing: !cudnn ? 'no cuDNN time' : ownTf32.length === 0 ? 'our kernels not run' : `ours ${[...new Set(ownTf32.map((r) => r.status))].join('/')}` });
  }
  if (cut) ownRows.push(cut);  // stopped before (more of) the 3x3 layers: incomplete, not unmeasured
  if (ownRows.length > 0) {
    const v = verdict(ownRows);
    const values = v.measured.map((r) => r.value);
    targets.own = `our implicit GEMM at half of cuDNN's best on the 3x3 layers (tf32, batch ${ours.batch}): ${v.word}, ${v.measured.length - v.misses.length}/${ownRows.length} rows at >= 0.50` +
      (values.length ? ` (speed ratios ${Math.min(...values).toFixed(2)}-${Math.max(...values).toFixed(2)})` : '') + v.noData;
  }
  if (own.length > 1) {
    out.push(`conv ${dtype}: our implicit GEMM against cuDNN's best on the 3x3 layers (target: speed ratio >= 0.50)`);
    out.push(pad(own));
    out.push('');
  }
}
// The GPU's measured peaks (doctor --json): each stepscope step's GFLOP/s as a % of its dtype's peak.
const doctor = read('doctor.json');
const peakOf = (dtype) => doctor?.cudaPeak && (dtype === 'bf16' ? doctor.cudaPeak.bf16Gflops : dtype === 'tf32' ? doctor.cudaPeak.tf32Gflops : doctor.cudaPeak.fp32Gflops);
const steps = [['training step', 'dtype', 'layout', 'batch', 'total ms', 'min-max ms', 'data ms', 'forward ms', 'backward ms', 'optimizer ms', 'x pytorch', '% peak', 'convolutions']];
// The spread of the measured iterations (after warm-up), beside each median.
const spread = (values) => (values?.length ? `${fmt(Math.min(...values), 2)}-${fmt(Math.max(...values), 2)}` : '-');
const resultsNamed = (pattern) => fs.readdirSync(dir).filter((f) => pattern.test(f)).sort().map(read).filter(Boolean);
const pytorch = resultsNamed(/^pytorch-step-.*\.json$/).filter((s) => s.median);
// A step stopped by the budget's timeout leaves a partial result (its measured iterations so far): shown, marked,
// never counted for a target.
const stepResults = resultsNamed(/^stepscope-step-.*\.json$/);
const stepscope = stepResults.filter((r) => r.summary);
const isPartial = (r) => r.format === 'stepscope-partial-run';
const partialMark = (r) => (isPartial(r) ? ` (partial: ${r.measured}/${r.config.iterations})` : '');
const DTYPE_ORDER = ['fp32', 'tf32', 'bf16'];
// Each dtype's fastest PyTorch run (fp32 runs in both layouts) at stepscope's batch and resolution: the peer
// stepscope is held to (results of earlier calls at other sizes stay in the folder, never paired).
const stepSize = stepscope.find((r) => !(r.environment.gpus > 1))?.config;
const sameSize = (s) => !stepSize || ((s.batch === undefined || s.batch === stepSize.batch) && (s.resolution === undefined || stepSize.resolution === undefined || s.resolution === stepSize.resolution));
const pytorchMs = new Map();
for (const s of pytorch.filter(sameSize)) pytorchMs.set(s.dtype, Math.min(pytorchMs.get(s.dtype) ?? Infinity, s.median.totalMs));
// stepscope's time without its data phase: PyTorch makes its batch once, outside the timed iterations, while
// stepscope's total includes making (or loading) each one. The median over the measured iterations, where saved.
const computeMs = (r) => {
  const its = (r.iterations ?? []).filter((f) => !f.warmup && typeof f.totalMs === 'number' && typeof f.dataMs === 'number');
  if (its.length === 0) return r.summary.totalMs.median - (r.summary.dataMs?.median ?? 0);
  const v = its.map((f) => f.totalMs - f.dataMs).sort((a, b) => a - b);
  return v[Math.floor((v.length - 1) / 2)];
};
// Each dtype's rows together: PyTorch eager first, then stepscope eager before --graph, NCHW before NHWC.
const configOrder = (r) => (r.config.graph ? 2 : 0) + (r.environment.layout === 'nhwc' ? 1 : 0) + (r.environment.gpus > 1 ? 4 : 0);
for (const dtype of [...new Set([...DTYPE_ORDER, ...pytorchMs.keys(), ...stepscope.map((r) => r.environment.dtype)])]) {
  for (const s of pytorch.filter((x) => x.dtype === dtype)) {
    steps.push([`pytorch ${s.torch}`, s.dtype, s.channelsLast ? 'NHWC' : 'NCHW', s.batch, fmt(s.median.totalMs, 2), spread(s.iterations?.totalMs), '-', fmt(s.median.forwardMs, 2), fmt(s.median.backwardMs, 2), fmt(s.median.optimizerMs, 2),
      fmt(pytorchMs.get(dtype) / s.median.totalMs, 2), '-', 'cudnn.benchmark']);
  }
  // Throughput against PyTorch eager of the same dtype (> 1: stepscope is faster).
  for (const r of stepscope.filter((x) => x.environment.dtype === dtype).sort((a, b) => configOrder(a) - configOrder(b))) {
    const s = r.summary, peer = pytorchMs.get(dtype);
    const gpus = r.environment.gpus > 1 ? ` --gpus ${r.environment.gpus}` : '';
    steps.push([`stepscope${r.config.graph ? ' --graph' : ''}${gpus}${partialMark(r)}`, dtype, r.environment.layout.toUpperCase(), r.config.batch, fmt(s.totalMs.median, 2), spread([s.totalMs.min, s.totalMs.max]), fmt(s.dataMs?.median, 2),
      fmt(s.forwardMs.median, 2), fmt(s.backwardMs.median, 2), fmt(s.optimizerMs.median, 2), peer ? fmt(peer / computeMs(r), 2) : '-', peakOf(dtype) ? fmt((100 * s.gflops) / peakOf(dtype), 1) : '-',
      r.config.plan?.ops?.conv ?? '-']);
  }
}
// Targets: the step no slower than PyTorch eager of the same dtype (each dtype's best stepscope run on one GPU,
// and its eager runs alone), and 1.25x with bf16, fused batch norm + ReLU and graph replay.
const oneGpu = stepscope.filter((r) => !(r.environment.gpus > 1) && !isPartial(r));
// A one-GPU run of dtype d stopped by the budget, measured or not (stopped before its first iteration: no summary).
const interrupted = (d) => stepResults.some((r) => isPartial(r) && r.config?.dtype === d && !(r.environment?.gpus > 1));
const speedup = (r) => pytorchMs.get(r.environment.dtype) / computeMs(r);
const describe = (r) => `${r.environment.dtype} ${r.environment.layout.toUpperCase()}${r.config.graph ? ' --graph' : ''} ${speedup(r).toFixed(2)}x`;
const fastestRun = (runs) => runs.reduce((a, r) => (a && speedup(a) >= speedup(r) ? a : r), undefined);
const stepDtypes = DTYPE_ORDER.filter((d) => pytorchMs.has(d) || oneGpu.some((r) => r.environment.dtype === d) || interrupted(d));
if (stepDtypes.length > 0) {
  const rowsFor = (pick) => stepDtypes.map((d) => {
    const run = fastestRun(oneGpu.filter((r) => r.environment.dtype === d && pick(r)));
    if (!pytorchMs.has(d)) return { label: d, missing: 'no PyTorch run' };
    if (!run) return { label: d, missing: interrupted(d) ? 'its stepscope run was interrupted' : 'no stepscope run' };
    return { label: d, value: speedup(run), ok: speedup(run) >= 1, run };
  });
  const best = verdict(rowsFor(() => true));
  const eager = verdict(rowsFor((r) => !r.config.graph));
  targets.step = `step no slower than PyTorch eager (same dtype): ${best.word} with each dtype's best run: ${best.measured.map((r) => describe(r.run)).join(', ') || '-'}${best.noData}` +
    `; ${eager.word} eager against eager: ${eager.measured.map((r) => describe(r.run)).join(', ') || '-'}`;
}
const fusedGraphBf16 = fastestRun(oneGpu.filter((r) => r.environment.dtype === 'bf16' && r.config.graph && r.config.plan?.ops?.batchnorm === 'fused-relu'));
if (pytorchMs.has('bf16') && fusedGraphBf16) {
  targets.bf16 = `step at 1.25x PyTorch eager with bf16, fused batch norm + ReLU and --graph: ${speedup(fusedGraphBf16) >= 1.25 ? 'met' : 'missed'}: ${describe(fusedGraphBf16)}`;
} else if (pytorchMs.has('bf16') || fusedGraphBf16) {
  targets.bf16 = `step at 1.25x PyTorch eager with bf16, fused batch norm + ReLU and --graph: incomplete: no ${fusedGraphBf16 ? 'PyTorch bf16 run' : 'stepscope bf16 --graph run with batchnorm=fused-relu'}`;
}
out.push(`training step: 'x pytorch' is throughput against the dtype's fastest PyTorch eager run, stepscope's time without its data phase (PyTorch makes its batch once, untimed); the eager-against-eager verdict below is the issue's "no slower than PyTorch eager"`);
out.push(pad(steps));
const notMeasured = (what, why) => `${what}: not measured (${why})`;
out.push('', "issue #5's performance targets:", ...[
  targets.step ?? notMeasured('step no slower than PyTorch eager (same dtype)', 'no step results'),
  targets.bf16 ?? notMeasured('step at 1.25x PyTorch eager with bf16, fused batch norm + ReLU and --graph', 'no bf16 step results'),
  ...(targets.autotune.length ? targets.autotune : [notMeasured('cudnn:autotune within 5% of PyTorch per layer', 'no conv results')]),
  targets.own ?? notMeasured("our implicit GEMM at half of cuDNN's best on the 3x3 layers (tf32)", 'no tf32 conv results with 3x3 layers'),
].map((t) => `- ${t}`));
const text = out.join('\n');
fs.writeFileSync(path.join(dir, 'summary.txt'), `${text}\n`);
console.log(text);
