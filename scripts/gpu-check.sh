#!/usr/bin/env bash
# One command for a GPU machine (the device tool, see ../shared/gpu.md):
# builds both addons against the cuDNN/cuBLAS/NCCL of the machine's Python
# wheels (sm_90), runs every CUDA test (each variant against the CPU
# reference), the training step and (PHASES=conv) the conv benchmark of
# every variant (tf32 and fp32), each right after PyTorch's same ResNet-50
# step or convolutions on the same GPU (same batch, dtype and layout,
# cudnn.benchmark on), and prints a side-by-side table last, with issue #5's
# targets.
# Every result lands in RESULTS (gpu-check-out/, kept between the calls of
# a warm machine, so the table of call 2 shows call 1's figures too); the
# device tool returns at most 8 files from $OUT, so after each step the
# whole folder is packed into $OUT/results.tar.gz (replaced atomically),
# beside copies of gpu-check.log and summary.txt.
#
#   bash scripts/gpu-check.sh --prepare   # here, before: .carry/node.xz and .carry/runtime.tar.xz
#   run: carry [".carry"], command "bash scripts/gpu-check.sh", timeout_s 600 (the script keeps to BUDGET_S)
#
# Knobs:
#   PHASES           "tests step" (also "conv": the conv benchmark, and "sanitize": our kernels under
#                    compute-sanitizer; one call holds "tests step", a second "conv sanitize"); they run in
#                    the order tests, conv, step, sanitize whatever the order named; conv and step each
#                    measure PyTorch right before stepscope
#   BUDGET_S         570: the call's wall time; steps are cut or skipped to keep to it (set it below the
#                    run's timeout_s)
#   CONV_BATCH (32: the issue's targets are at batch 32), CONV_LAYERS (all), CONV_REPEAT (20 calls per row,
#                    each timed on its own on both sides), SKIP_TF32_CONV=1
#   STEP_BATCH (32), STEP_RESOLUTION (224), STEP_DTYPES ("bf16 tf32 fp32"): the stepscope step runs eager in
#                    each dtype, with --graph in tf32, and NHWC with --graph in tf32 and bf16
#   SANITIZE_TOOLS   "racecheck memcheck synccheck"
#   SKIP_BUILD=1     the addons as built: a rehearsal on the CPU stand-in
#                    (STEPSCOPE_CUDA_ADDON=test/fixtures/fake-cuda-addon.js; the tests run one)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# What the carried runtime (dist/) was compiled from: a hash of the sources,
# so a device run with a stale .carry stops in seconds instead of running old JS.
source_hash() {
  find src test bench scripts tsconfig.json package.json package-lock.json binding.d.ts binding-cuda.d.ts -type f \
    ! -name '*.log' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -c1-40
}

if [[ "${1:-}" == "--prepare" ]]; then
  # Node and the JS runtime (compiled dist/, node_modules without the
  # compiler) travel with the tree; the GPU machine has no network.
  set -e
  [[ -f node_modules/typescript/bin/tsc ]] || { echo "gpu-check --prepare: node_modules is missing: run npm ci first" >&2; exit 1; }
  mkdir -p .carry
  rm -f .carry/source.sha1 .carry/runtime.tar.xz  # a half-made .carry must not pass for a prepared one
  xz -T2 -6 -c "$(command -v node)" > .carry/node.xz
  node node_modules/typescript/bin/tsc -p .
  tar -cJf .carry/runtime.tar.xz --exclude='node_modules/typescript' --exclude='node_modules/@types' dist node_modules
  source_hash > .carry/source.sha1
  du -sh .carry/* && du -sh .carry
  exit 0
fi

RESULTS="${GPU_CHECK_RESULTS:-$ROOT/gpu-check-out}"
OUT="${OUT:-$RESULTS}"
CONV_BATCH="${CONV_BATCH:-32}"
STEP_BATCH="${STEP_BATCH:-32}"
STEP_RESOLUTION="${STEP_RESOLUTION:-224}"
CONV_LAYERS="${CONV_LAYERS:-all}"
CONV_REPEAT="${CONV_REPEAT:-20}"
STEP_DTYPES="${STEP_DTYPES:-bf16 tf32 fp32}"
# PHASES: which parts run after the build (a device session can split them over two calls).
PHASES="${PHASES:-tests step}"
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }
for phase in $PHASES; do
  case $phase in
    tests | sanitize | conv | step) ;;
    pytorch) echo "gpu-check: PHASES: 'pytorch' is no phase of its own: conv and step each measure PyTorch first" >&2; exit 2 ;;
    *) echo "gpu-check: PHASES: unknown phase '$phase'; allowed: tests sanitize conv step" >&2; exit 2 ;;
  esac
done
SANITIZE_TOOLS="${SANITIZE_TOOLS:-racecheck memcheck synccheck}"
mkdir -p "$RESULTS" "$OUT"
log() { echo "[gpu-check $(date -u +%T)] $*" | tee -a "$RESULTS/gpu-check.log" >&2; }
# The device tool returns at most 8 files: the results travel as one archive, replaced whole after each step
# (what a timeout leaves is the last complete one), with the log and the table beside it.
pack() {
  [[ "$OUT" -ef "$RESULTS" ]] && return 0
  tar -czf "$OUT/results.tmp.tgz" -C "$RESULTS" . 2> /dev/null && mv -f "$OUT/results.tmp.tgz" "$OUT/results.tar.gz"
  cp -f "$RESULTS/gpu-check.log" "$OUT/" 2> /dev/null
  [[ -f "$RESULTS/summary.txt" ]] && cp -f "$RESULTS/summary.txt" "$OUT/"
  return 0
}
# BUDGET_S: the whole call's wall time. The device tool kills a command at its limit (600 s at most), which
# would lose the table: each step's limit is cut to what is left after RESERVE_S (the table), and a step
# with under 20 s left is skipped, so the script always ends on its own with the table printed.
BUDGET_S="${BUDGET_S:-570}"
# Decimal only (bash reads 0570 as octal) and enough for the builds and the table.
[[ "$BUDGET_S" =~ ^[1-9][0-9]*$ ]] && (( BUDGET_S >= 90 )) || { echo "gpu-check: BUDGET_S must be a whole number of seconds from 90 up, got '$BUDGET_S'" >&2; exit 2; }
RESERVE_S=25  # the table, and the 10 s between a timeout's SIGTERM and SIGKILL
SKIPPED=199   # step's status when the budget is spent (not one that timeout or a command returns)
PAIR_MIN_S=60 # PyTorch's run and stepscope's of one dtype start only together
seconds_left() { echo $((BUDGET_S - RESERVE_S - SECONDS)); }
# PyTorch's half of a pair (up to 180 s) leaves stepscope's half 40 s at least: a slow or hung peer cannot
# take the whole pair's time.
peer_limit() { local left; left=$(seconds_left); local l=$(( left - 40 < 180 ? left - 40 : 180 )); echo $(( l < 20 ? 20 : l )); }
step() {  # step NAME TIMEOUT_S CMD...: runs, logs, never stops the script
  local name=$1 limit=$2; shift 2
  local left
  left=$(seconds_left)
  if (( left < 20 )); then
    log "$name: skipped: ${left} s left of BUDGET_S=$BUDGET_S"
    return $SKIPPED
  fi
  if (( limit > left )); then
    log "$name: limit cut from $limit s to $left s (BUDGET_S=$BUDGET_S)"
    limit=$left
  fi
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" > "$RESULTS/$name.out" 2> "$RESULTS/$name.err"  # SIGKILL 10 s after a SIGTERM that did not end it
  local rc=$?
  if (( rc == 0 )); then
    log "$name: exit 0 in $((SECONDS - t0)) s"
  else
    # Why, in the log itself (the device tool returns only the output's tail): the last line that names an
    # error, else the last line that is not a stack frame, Node's version banner or a source excerpt.
    local why
    why=$(grep -E 'Error|ERR_|error:|failed' "$RESULTS/$name.err" | grep -v -E '^\s+at ' | tail -n 1 | cut -c1-300)
    [[ -z "$why" ]] && why=$(grep -v -E '^\s*(at |$|\^|[{}]|code:)|^Node\.js v' "$RESULTS/$name.err" | tail -n 1 | cut -c1-300)
    (( rc == 124 )) && why="timed out after $limit s${why:+; last: $why}"
    (( rc == 137 )) && why="killed (SIGKILL: a timeout's, or out of memory)${why:+; last: $why}"
    log "$name: exit $rc in $((SECONDS - t0)) s: ${why:-no message (see $name.out)}"
  fi
  pack
  return $rc
}
json_step() {  # json_step NAME TIMEOUT_S CMD...: a step whose stdout is its JSON result, kept as NAME.json
  step "$@"
  local rc=$?
  cp "$RESULTS/$1.out" "$RESULTS/$1.json" 2>/dev/null && pack
  return $rc
}

# 1. The carried runtime must be of these sources; then Node (the machine's if it is 20 or newer, else the
#    carried one: the tests need node --test's TAP reporter).
# (SKIP_BUILD=1, a rehearsal here, runs the dist/ compiled here: no carried runtime to check.)
if [[ "${SKIP_BUILD:-0}" != 1 && -f .carry/runtime.tar.xz && ! -f .carry/source.sha1 ]]; then
  log "the carried runtime (.carry) has no source stamp (a --prepare that did not finish): run scripts/gpu-check.sh --prepare again"
  pack
  exit 3
fi
if [[ "${SKIP_BUILD:-0}" != 1 && -f .carry/source.sha1 && "$(source_hash)" != "$(cat .carry/source.sha1)" ]]; then
  log "the carried runtime (.carry) was prepared from other sources: run scripts/gpu-check.sh --prepare again before the device call"
  pack
  exit 3
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if (( node_major < 20 )); then
  mkdir -p /tmp/nodebin
  if [[ -f .carry/node.xz ]] && command -v xz > /dev/null; then xz -dc .carry/node.xz > /tmp/nodebin/node
  elif [[ -f .carry/node.gz ]]; then gzip -dc .carry/node.gz > /tmp/nodebin/node
  else log "node not found and not carried (.carry/node.xz): run scripts/gpu-check.sh --prepare first"; exit 1; fi
  chmod +x /tmp/nodebin/node
  export PATH=/tmp/nodebin:$PATH
fi
# The carried dist/ and node_modules: unpacked where there are none, and again where the dist/ there came from
# another carry (a warm machine's second call after --prepare); a dist/ compiled here (no stamp) is kept.
if [[ -f .carry/runtime.tar.xz ]] && { [[ ! -d node_modules/cmake-js ]] || { [[ -f dist/.source.sha1 ]] && ! cmp -s .carry/source.sha1 dist/.source.sha1; }; }; then
  # Another code version: an earlier call's results (of the old code) move aside, so no table mixes them in.
  if [[ -f dist/.source.sha1 ]] && compgen -G "$RESULTS/*.json" > /dev/null; then
    old="$RESULTS/superseded-$(cut -c1-8 dist/.source.sha1)"
    mkdir -p "$old" && find "$RESULTS" -maxdepth 1 -type f ! -name gpu-check.log -exec mv -t "$old" {} +
    log "results of the previous code version moved to $(basename "$old")/"
  fi
  rm -rf dist && tar -xJf .carry/runtime.tar.xz && cp .carry/source.sha1 dist/.source.sha1 2> /dev/null
fi
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"  # without ninja, cmake-js passes no -j
log "node $(node --version), $(nvcc --version | tail -1)"
timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$RESULTS/nvidia-smi.csv" 2>&1 || true

# 2. Build: the CPU addon (the reference) and the CUDA addon against the
#    Python wheels' cuDNN/cuBLAS/NCCL, sm_90 only (faster to compile).
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
  log "build: skipped (SKIP_BUILD=1), the addons as built"
else
step build-cpu 300 node node_modules/cmake-js/bin/cmake-js compile --out build || {
  log "CPU build failed"; grep -m5 'error:' "$RESULTS/build-cpu.out" | tee -a "$RESULTS/gpu-check.log"; tail -20 "$RESULTS/build-cpu.err"; pack; exit 1; }
STEPSCOPE_CUDA=1 STEPSCOPE_CUDA_ARCHITECTURES=90 step build-cuda 300 node scripts/build-cuda.js || {
  log "CUDA build failed"; cat build/cuda-status.json; grep -m5 'error' build-cuda/build.log | tee -a "$RESULTS/gpu-check.log"; tail -30 build-cuda/build.log
  cp build-cuda/build.log "$RESULTS/" 2> /dev/null; pack; exit 1; }
fi
cp build/cuda-status.json build-cuda/build.log "$RESULTS/" 2>/dev/null
json_step doctor 120 node bin/stepscope.js doctor --json --trials 1
node scripts/gpu-log-line.js doctor "$RESULTS/doctor.json" | tee -a "$RESULTS/gpu-check.log"

# 3. Tests: every CUDA variant against the CPU reference (device tests run here).
if has_phase tests; then
# The stand-in tests (the JS side on a CPU copy of the addon) ran in CI: not on device time.
# With the step phase after them, the tests leave it three pairs' minimum (the targets need the step figures).
keep_for_step() { local want=$1 left; left=$(seconds_left); has_phase step && (( want > left - 3 * PAIR_MIN_S )) && want=$(( left - 3 * PAIR_MIN_S )); echo $(( want < 20 ? 20 : want )); }
STEPSCOPE_SKIP_STAND_IN=1 step cuda-tests "$(keep_for_step 240)" node --test --test-reporter=tap dist/test/cuda.test.js
grep -E "^# (pass|fail|skipped)" "$RESULTS/cuda-tests.out" | tee -a "$RESULTS/gpu-check.log"
# The failures by name, and their first error lines, in the log (TAP goes to stdout, not to the .err the step reads).
grep -E '^not ok' "$RESULTS/cuda-tests.out" | cut -c1-200 | tee -a "$RESULTS/gpu-check.log"
grep -E '^\s+(error|message): ' "$RESULTS/cuda-tests.out" | head -n 10 | cut -c1-300 | tee -a "$RESULTS/gpu-check.log"
# The step's other ops (batch norm, pooling, FC, loss, SGD, ...) against the CPU reference, every output as a row.
json_step cuda-ops "$(keep_for_step 120)" node -e "require('./dist/src/ops/ops-cuda-check').checkCudaOps().then((rows) => console.log(JSON.stringify(rows)), (e) => { console.error('cuda-ops: ' + (e.code ? e.code + ': ' : '') + e.message); process.exitCode = 1; })"
node scripts/gpu-log-line.js cuda-ops "$RESULTS/cuda-ops.json" | tee -a "$RESULTS/gpu-check.log"
fi

# 4. The conv benchmark, each dtype right after PyTorch's same shapes (the peer measured in the same run):
#    tf32 first (the issue's "half of cuDNN's best" is a tf32 figure), then fp32 with every variant.
if has_phase conv; then
node scripts/gpu-shapes.js "$CONV_LAYERS" "$CONV_BATCH" > "$RESULTS/shapes.json" || log "conv: the shapes for PyTorch could not be listed (see above)"
TF32_VARIANTS=cudnn:heuristic,cudnn:autotune,im2col-cublas,implicit-gemm-tf32,implicit-gemm-tf32-pipelined,implicit-gemm-tf32-along-m,implicit-gemm-bf16
for dtype in tf32 fp32; do
  [[ "$dtype" == tf32 && "${SKIP_TF32_CONV:-0}" == 1 ]] && continue
  # A pair or nothing: PyTorch's half alone is device time with nothing to compare it to.
  (( $(seconds_left) >= PAIR_MIN_S )) || { log "conv $dtype: skipped, PyTorch and stepscope: $(seconds_left) s left, a pair needs $PAIR_MIN_S"; continue; }
  json_step "pytorch-conv-$dtype" "$(peer_limit)" python3 bench/pytorch_gpu.py conv --shapes "$RESULTS/shapes.json" --dtype "$dtype" --repeat "$CONV_REPEAT"
  variants=all; [[ "$dtype" == tf32 ]] && variants=$TF32_VARIANTS
  json_step "conv-cuda-$dtype" 300 node bin/stepscope.js bench conv --backend cuda --dtype "$dtype" --variant "$variants" --layer "$CONV_LAYERS" --batch "$CONV_BATCH" --repeat "$CONV_REPEAT" --json
done
fi

# 5. The training step, each dtype as a pair: PyTorch eager (channels-last but for fp32, cudnn.benchmark on), then the
#    stepscope step (cudnn:heuristic, fused batch norm + ReLU, one GPU) at the same batch: eager NCHW for
#    every dtype, --graph for tf32, channels-last with --graph (PyTorch's layout) for tf32 and bf16 (the
#    issue's 1.25x target: bf16, fused batch norm + ReLU, graph replay). A pair starts only with PAIR_MIN_S
#    left. A step cut short by the budget keeps what it measured: its JSON is then a partial result
#    (step --json on SIGTERM), shown in the table as partial and not counted for a target.
stepscope_step() {  # stepscope_step NAME ARGS...: runs the step, saves NAME.json, prints its line
  local name=$1; shift
  json_step "$name" 300 node bin/stepscope.js step --backend cuda --batch "$STEP_BATCH" --resolution "$STEP_RESOLUTION" --iterations 10 --warmup 3 --json "$@"
  (( $? == SKIPPED )) && return  # the budget is spent, the log says so
  node scripts/gpu-log-line.js step "$RESULTS/$name.json" "$name" | tee -a "$RESULTS/gpu-check.log"
}
if has_phase step; then
  for dtype in $STEP_DTYPES; do
    (( $(seconds_left) >= PAIR_MIN_S )) || { log "step $dtype: skipped, PyTorch and stepscope: $(seconds_left) s left, a pair needs $PAIR_MIN_S"; continue; }
    # fp32: NCHW on both sides (stepscope's fp32 step is NCHW; with TF32 off, cuDNN's FMA kernels are often faster in NCHW).
    peer_layout=--channels-last; [[ "$dtype" == fp32 ]] && peer_layout=
    json_step "pytorch-step-$dtype" "$(peer_limit)" python3 bench/pytorch_gpu.py step --batch "$STEP_BATCH" --resolution "$STEP_RESOLUTION" --dtype "$dtype" $peer_layout
    [[ "$dtype" == fp32 ]] || stepscope_step "stepscope-step-$dtype-nhwc-graph" --dtype "$dtype" --layout nhwc --graph
    stepscope_step "stepscope-step-$dtype" --dtype "$dtype"
    [[ "$dtype" == tf32 ]] && stepscope_step "stepscope-step-$dtype-graph" --dtype "$dtype" --graph
    # fp32: PyTorch channels-last too, when time is left (the table holds stepscope to the faster layout).
    if [[ "$dtype" == fp32 ]] && (( $(seconds_left) >= 40 )); then
      json_step "pytorch-step-fp32-nhwc" "$(peer_limit)" python3 bench/pytorch_gpu.py step --batch "$STEP_BATCH" --resolution "$STEP_RESOLUTION" --dtype fp32 --channels-last
    fi
  done
  # With 2 GPUs or more: every GPU driven from one process (--gpus all), overlapped NCCL buckets, bf16 NHWC eager.
  GPU_COUNT=$(timeout 20 node -e "try { console.log(require('./build/stepscope_cuda.node').cudaInfo().deviceCount) } catch { console.log(0) }")
  (( GPU_COUNT >= 2 )) && stepscope_step "stepscope-step-bf16-nhwc-gpus$GPU_COUNT" --dtype bf16 --layout nhwc --gpus all
fi

# 6. Our own conv kernels under compute-sanitizer, last (not in the default phases: ask for it, e.g.
#    PHASES="conv sanitize"): races in shared memory, bad accesses, barrier misuse.
if has_phase sanitize; then
  SANITIZER=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
  if [[ -x "$SANITIZER" ]]; then
    for tool in $SANITIZE_TOOLS; do
      step "sanitize-$tool" 240 "$SANITIZER" --tool "$tool" --error-exitcode 9 node scripts/gpu-sanitize.js
      { echo -n "compute-sanitizer $tool: "; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|\"checked\"" "$RESULTS/sanitize-$tool.out" 2>/dev/null | tr '\n' ' '; echo; } | tee -a "$RESULTS/gpu-check.log"
    done
  else
    log "sanitize: compute-sanitizer not found"
  fi
fi

# 7. The side-by-side table, last (of every result in RESULTS: on a warm machine, the earlier calls' too).
node scripts/gpu-table.js "$RESULTS"
table_rc=$?
pack
exit $table_rc
