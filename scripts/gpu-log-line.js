#!/usr/bin/env node
// One line for scripts/gpu-check.sh's log from a result it saved: what the
// device told (doctor), how the other ops compared with the CPU reference
// (cuda-ops), or a training step's times (step). It never throws: a missing
// or broken result is one line that says so, so the log stays readable in
// the device tool's output tail.
//   node scripts/gpu-log-line.js doctor|cuda-ops|step <file.json> [label]
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const KINDS = ['doctor', 'cuda-ops', 'step'];

/** The one-line message for `kind` from the parsed result `r` (label: the step's name). */
function lineFor(kind, r, label) {
  if (kind === 'doctor') {
    const cuda = r.cuda ?? {};
    const peak = r.cudaPeak ? `; measured peaks fp32 ${gflops(r.cudaPeak.fp32Gflops)}, tf32 ${gflops(r.cudaPeak.tf32Gflops)}, bf16 ${gflops(r.cudaPeak.bf16Gflops)} TFLOP/s, ${r.cudaPeak.bandwidthGBs.toFixed(0)} GB/s` : '';
    return `doctor: ${cuda.available ? JSON.stringify(cuda.info) : `CUDA backend unavailable: ${cuda.reason ?? JSON.stringify(cuda)}`}${peak}`;
  }
  if (kind === 'cuda-ops') return opsLine(r);
  const s = r.summary;
  const batch = r.config?.batch;
  // A step stopped by a timeout (step --json's partial result): what it measured before the stop.
  const partial = r.format === 'stepscope-partial-run' ? `interrupted by ${r.interrupted} after ${r.measured} of ${r.config?.iterations ?? '?'} measured iterations` : '';
  if (partial && !s) return `${label}: ${partial}, nothing measured`;
  return `${label} (batch ${batch})${partial ? ` ${partial}` : ''}: ${s.totalMs.median.toFixed(2)} ms per iteration [min ${s.totalMs.min.toFixed(2)}, max ${s.totalMs.max.toFixed(2)}]` +
    ` (forward ${s.forwardMs.median.toFixed(2)}, backward ${s.backwardMs.median.toFixed(2)}, enqueue ${s.enqueueUsPerKernel.toFixed(2)} us/kernel),` +
    ` ${((1000 * batch) / s.totalMs.median).toFixed(0)} images/s`;
}

const gflops = (v) => (v / 1000).toFixed(1);

/** The ops check in one line: failures grouped by op, variant and configuration, the worst error of each. */
function opsLine(rows) {
  const bad = rows.filter((x) => !x.ok);
  const head = `other ops vs CPU reference: ${rows.length - bad.length}/${rows.length} outputs within tolerance`;
  if (bad.length === 0) return head;
  const groups = new Map();
  for (const x of bad) {
    const config = [x.params.nhwc ? 'nhwc' : '', x.params.bf16 ? 'bf16' : ''].filter(Boolean).join(' ');
    const key = `${x.op} ${x.variant}${config ? ` (${config})` : ''}`;
    const g = groups.get(key) ?? { outputs: new Set(), worst: 0, error: undefined };
    g.outputs.add(x.buffer);
    if (x.error) g.error = x.error;
    else g.worst = Math.max(g.worst, x.maxRelErr);
    groups.set(key, g);
  }
  const shown = [...groups].slice(0, 8).map(([k, g]) => `${k}: ${[...g.outputs].join('/')} (${g.error ? `refused: ${g.error}` : `worst ${g.worst.toPrecision(3)}`})`);
  const more = groups.size > 8 ? `, and ${groups.size - 8} more (cuda-ops.json)` : '';
  return `${head}; failing: ${shown.join(', ')}${more}`;
}

function main(argv) {
  const [kind, file, label] = argv;
  if (!KINDS.includes(kind) || !file) {
    console.error(`gpu-log-line: usage: node scripts/gpu-log-line.js ${KINDS.join('|')} <file.json> [label]`);
    return 2;
  }
  const name = label ?? path.basename(file, '.json');
  let r;
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    console.log(`${name}: no result (${err.code === 'ENOENT' ? `${file} missing` : `${file} is not JSON`}; see its .err)`);
    return 0;
  }
  try {
    console.log(lineFor(kind, r, name));
  } catch (err) {
    console.log(`${name}: result without the expected fields (${err.message})`);
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2));
