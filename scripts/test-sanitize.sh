#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-sanitize/ and runs the same tests against it. Node itself is not
# instrumented, so the ASan runtime is preloaded; leak checking is off
# because V8 keeps memory until exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js compile --out build-sanitize --CDSTEPSCOPE_SANITIZE=ON
npx tsc -p .
export STEPSCOPE_ADDON="$PWD/build-sanitize/Release/stepscope.node"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
# protect_shadow_gap=0: the CUDA driver maps memory where ASan's shadow gap
# would be (the CUDA addon is loaded by the cuda tests, not instrumented).
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:detect_odr_violation=0:protect_shadow_gap=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
node -e "const b = require(process.env.STEPSCOPE_ADDON).buildInfo(); if (!b.sanitize) { console.error('not a sanitizer build'); process.exit(1); }"
node --test --test-concurrency=1 dist/test/
