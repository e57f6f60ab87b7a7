#!/usr/bin/env bash
# One command for a GPU machine (the device tool, see ../shared/gpu.md):
# builds both addons against the cuDNN/cuBLAS/NCCL of the machine's Python
# wheels (sm_90), runs every CUDA test (each variant against the CPU
# reference), the conv benchmark of every variant (fp32 and tf32), PyTorch's
# convolutions and ResNet-50 step on the same GPU (same batch and dtype,
# channels-last, cudnn.benchmark on), and prints a side-by-side table last.
# Everything lands in $OUT (JSON, TAP, logs, summary.txt).
#
#   bash scripts/gpu-check.sh --prepare   # here, before: .carry/node.xz and .carry/runtime.tar.xz
#   run: carry [".carry"], command "bash scripts/gpu-check.sh", timeout ~540 s
#
# Knobs: PHASES ("tests conv pytorch step"; also "sanitize": our kernels under compute-sanitizer), CONV_BATCH (8), STEP_BATCH (32), CONV_LAYERS (all), CONV_REPEAT (5),
# STEP_DTYPES ("fp32 tf32 bf16"), SKIP_TF32_CONV=1. The stepscope step runs
# eager in each dtype, with --graph in tf32, and NHWC with --graph in tf32 and bf16.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ "${1:-}" == "--prepare" ]]; then
  # Node and the JS runtime (compiled dist/, node_modules without the
  # compiler) travel with the tree; the GPU machine has no network.
  set -e
  mkdir -p .carry
  xz -T2 -6 -c "$(command -v node)" > .carry/node.xz
  npx tsc -p .
  tar -cJf .carry/runtime.tar.xz --exclude='node_modules/typescript' --exclude='node_modules/@types' dist node_modules
  du -sh .carry/* && du -sh .carry
  exit 0
fi

OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
CONV_BATCH="${CONV_BATCH:-8}"
STEP_BATCH="${STEP_BATCH:-32}"
CONV_LAYERS="${CONV_LAYERS:-all}"
CONV_REPEAT="${CONV_REPEAT:-5}"
STEP_DTYPES="${STEP_DTYPES:-fp32 tf32 bf16}"
# PHASES: which parts run after the build (a device session can split them over two calls).
PHASES="${PHASES:-tests conv pytorch step}"
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
log() { echo "[gpu-check $(date -u +%T)] $*" | tee -a "$OUT/gpu-check.log" >&2; }
step() {  # step NAME TIMEOUT_S CMD...: runs, logs, never stops the script
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  local rc=$?
  log "$name: exit $rc in $((SECONDS - t0)) s"
  return $rc
}

# 1. Node
if ! command -v node > /dev/null; then
  mkdir -p /tmp/nodebin
  if [[ -f .carry/node.xz ]] && command -v xz > /dev/null; then xz -dc .carry/node.xz > /tmp/nodebin/node
  elif [[ -f .carry/node.gz ]]; then gzip -dc .carry/node.gz > /tmp/nodebin/node
  else log "node not found and not carried (.carry/node.xz): run scripts/gpu-check.sh --prepare first"; exit 1; fi
  chmod +x /tmp/nodebin/node
  export PATH=/tmp/nodebin:$PATH
fi
[[ -f .carry/runtime.tar.xz && ! -d node_modules/cmake-js ]] && tar -xJf .carry/runtime.tar.xz
log "node $(node --version), $(nvcc --version | tail -1)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true

# 2. Build: the CPU addon (the reference) and the CUDA addon against the
#    Python wheels' cuDNN/cuBLAS/NCCL, sm_90 only (faster to compile).
step build-cpu 300 node node_modules/cmake-js/bin/cmake-js compile --out build || { log "CPU build failed"; tail -20 "$OUT/build-cpu.err"; exit 1; }
STEPSCOPE_CUDA=1 STEPSCOPE_CUDA_ARCHITECTURES=90 step build-cuda 300 node scripts/build-cuda.js || { log "CUDA build failed"; cat build/cuda-status.json; tail -30 build-cuda/build.log; exit 1; }
cp build/cuda-status.json build-cuda/build.log "$OUT/" 2>/dev/null
step doctor 120 node bin/stepscope.js doctor --json --trials 1
cp "$OUT/doctor.out" "$OUT/doctor.json"
node -e "const d=require('$OUT/doctor.json'); console.error(JSON.stringify(d.cuda.info ?? d.cuda.reason))" 2>&1 | tee -a "$OUT/gpu-check.log"

# 3. Tests: every CUDA variant against the CPU reference (device tests run here).
if has_phase tests; then
# The stand-in tests (the JS side on a CPU copy of the addon) ran in CI: not on device time.
STEPSCOPE_SKIP_STAND_IN=1 step cuda-tests 240 node --test --test-reporter=tap dist/test/cuda.test.js
grep -E "^# (pass|fail|skipped)" "$OUT/cuda-tests.out" | tee -a "$OUT/gpu-check.log"
# The step's other ops (batch norm, pooling, FC, loss, SGD, ...) against the CPU reference, every output as a row.
step cuda-ops 120 node -e "require('./dist/src/ops/ops-cuda-check').checkCudaOps().then((rows) => console.log(JSON.stringify(rows)))"
cp "$OUT/cuda-ops.out" "$OUT/cuda-ops.json" 2>/dev/null
node -e "const r=require('$OUT/cuda-ops.json'); const bad=r.filter((x)=>!x.ok); console.error('other ops vs CPU reference: '+(r.length-bad.length)+'/'+r.length+' outputs within tolerance'+(bad.length?'; failing: '+bad.map((x)=>x.op+' '+x.variant+' '+x.buffer+' '+x.maxRelErr).join(', '):''))" 2>&1 | tee -a "$OUT/gpu-check.log"
fi

# 3b. Our own conv kernels under compute-sanitizer (not in the default phases: ask for it, e.g.
#     PHASES="tests sanitize"): races in shared memory, bad accesses, barrier misuse.
if has_phase sanitize; then
  SANITIZER=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
  if [[ -x "$SANITIZER" ]]; then
    for tool in racecheck memcheck synccheck; do
      step "sanitize-$tool" 240 "$SANITIZER" --tool "$tool" --error-exitcode 9 node scripts/gpu-sanitize.js
      { echo -n "compute-sanitizer $tool: "; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|\"checked\"" "$OUT/sanitize-$tool.out" | tr '\n' ' '; echo; } | tee -a "$OUT/gpu-check.log"
    done
  else
    log "sanitize: compute-sanitizer not found"
  fi
fi

# 4. The conv benchmark, every variant, fp32 then tf32.
if has_phase conv; then
step conv-cuda-fp32 300 node bin/stepscope.js bench conv --backend cuda --variant all --layer "$CONV_LAYERS" --batch "$CONV_BATCH" --repeat "$CONV_REPEAT" --json
cp "$OUT/conv-cuda-fp32.out" "$OUT/conv-cuda-fp32.json"
if [[ "${SKIP_TF32_CONV:-0}" != 1 ]]; then
  step conv-cuda-tf32 240 node bin/stepscope.js bench conv --backend cuda --dtype tf32 --variant cudnn:heuristic,cudnn:autotune,im2col-cublas,implicit-gemm-tf32,implicit-gemm-tf32-pipelined,implicit-gemm-tf32-along-m,implicit-gemm-bf16 --layer "$CONV_LAYERS" --batch "$CONV_BATCH" --repeat "$CONV_REPEAT" --json
  cp "$OUT/conv-cuda-tf32.out" "$OUT/conv-cuda-tf32.json"
fi
fi

# 5. PyTorch on the same GPU: the same unique conv shapes, then the step.
if has_phase pytorch; then
node -e "
const { resnet50Convs } = require('./dist/src/model/resnet50');
const { uniqueShapes } = require('./dist/src/bench/conv-bench');
const wanted = '$CONV_LAYERS' === 'all' ? null : '$CONV_LAYERS'.split(',');  // the same groups as the bench's
const layers = resnet50Convs({ batch: $CONV_BATCH }).filter((l) => !wanted || wanted.includes(l.name));
console.log(JSON.stringify(uniqueShapes(layers).map((g) => ({ key: g.first.name, ...g.first.shape }))));" > "$OUT/shapes.json"
for dtype in fp32 tf32; do
  step "pytorch-conv-$dtype" 180 python3 bench/pytorch_gpu.py conv --shapes "$OUT/shapes.json" --dtype "$dtype"
  cp "$OUT/pytorch-conv-$dtype.out" "$OUT/pytorch-conv-$dtype.json"
done
for dtype in $STEP_DTYPES; do
  step "pytorch-step-$dtype" 180 python3 bench/pytorch_gpu.py step --batch "$STEP_BATCH" --dtype "$dtype" --channels-last
  cp "$OUT/pytorch-step-$dtype.out" "$OUT/pytorch-step-$dtype.json"
done
fi

# The stepscope step on the GPU (cudnn:heuristic, one GPU) at the same batch and dtypes as PyTorch's step:
# eager NCHW for every dtype; --graph for tf32; channels-last with --graph (PyTorch's layout) for tf32 and
# bf16 (the issue's 1.25x target: bf16, fused batch norm + ReLU, graph replay).
stepscope_step() {  # stepscope_step NAME ARGS...: runs the step, saves NAME.json, prints its line
  local name=$1; shift
  step "$name" 300 node bin/stepscope.js step --backend cuda --batch "$STEP_BATCH" --resolution 224 --iterations 10 --warmup 3 --json "$@"
  cp "$OUT/$name.out" "$OUT/$name.json" 2>/dev/null
  node -e "const r=require('$OUT/$name.json'); const s=r.summary; console.error('$name (batch $STEP_BATCH): '+s.totalMs.median.toFixed(2)+' ms per iteration (forward '+s.forwardMs.median.toFixed(2)+', backward '+s.backwardMs.median.toFixed(2)+', enqueue '+s.enqueueUsPerKernel.toFixed(2)+' us/kernel), '+(1000*$STEP_BATCH/s.totalMs.median).toFixed(0)+' images/s')" 2>&1 | tee -a "$OUT/gpu-check.log"
}
has_phase step && for dtype in $STEP_DTYPES; do
  stepscope_step "stepscope-step-$dtype" --dtype "$dtype"
  [[ "$dtype" == tf32 ]] && stepscope_step "stepscope-step-$dtype-graph" --dtype "$dtype" --graph
  [[ "$dtype" == fp32 ]] || stepscope_step "stepscope-step-$dtype-nhwc-graph" --dtype "$dtype" --layout nhwc --graph
done
# With 2 GPUs or more: every GPU driven from one process (--gpus all), overlapped NCCL buckets, bf16 NHWC eager.
GPU_COUNT=$(node -e "try { console.log(require('./build/stepscope_cuda.node').cudaInfo().deviceCount) } catch { console.log(0) }")
has_phase step && (( GPU_COUNT >= 2 )) && stepscope_step "stepscope-step-bf16-nhwc-gpus$GPU_COUNT" --dtype bf16 --layout nhwc --gpus all

# 6. The side-by-side table, last.
node scripts/gpu-table.js "$OUT"
