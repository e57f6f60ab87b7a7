#!/usr/bin/env bash
# Unpacks cuDNN 9, cuBLAS 13 and NCCL 2 (headers and shared libraries) from
# NVIDIA's Python wheels into .deps/nvidia (ignored by git), where the CUDA
# addon's CMake project looks for them. pip reads the local package mirror,
# so nothing comes from the network here. Idempotent: a stamp file naming the
# packages makes a second run a no-op. A user with their own cuDNN install
# does not need this: set CUDNN_ROOT / CUBLAS_ROOT / NCCL_ROOT instead.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${STEPSCOPE_CUDA_DEPS:-$PWD/.deps/nvidia}"
PACKAGES=(nvidia-cudnn-cu13 nvidia-cublas nvidia-nccl-cu13)
STAMP="$DEST/.stepscope-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "${PACKAGES[*]}" ]]; then
  echo "fetch-cuda-deps: already in $DEST"
  exit 0
fi
PIP="${PIP:-$(command -v pip3 || command -v pip || true)}"
if [[ -z "$PIP" ]]; then
  echo "fetch-cuda-deps: pip not found (needed to unpack the NVIDIA wheels)" >&2
  exit 1
fi
mkdir -p "$DEST"
start=$(date +%s)
# --no-deps: the CUDA runtime comes from the toolkit (nvcc), not from a wheel.
# --retries: where only the local mirror answers, do not wait for the network.
"$PIP" install --quiet --no-deps --upgrade --retries "${PIP_RETRIES:-1}" --target "$DEST" "${PACKAGES[@]}"
echo "${PACKAGES[*]}" > "$STAMP"
echo "fetch-cuda-deps: ${PACKAGES[*]} in $DEST ($(( $(date +%s) - start )) s, $(du -sh "$DEST" | cut -f1))"
