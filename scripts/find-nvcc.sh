#!/usr/bin/env bash
# find-nvcc.sh: print the path of an nvcc to compile cuda/ with, or nothing.
# In order: $NVCC, nvcc on PATH, /usr/local/cuda/bin/nvcc, the nvcc of a PyPI
# nvidia-cuda-nvcc wheel beside $TORCH_PYTHON's torch, build/nvcc-venv's.
set -u
for c in "${NVCC:-}" "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc; do
  if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; exit 0; fi
done
for py in "${TORCH_PYTHON:-}" "$(dirname "$0")/../build/nvcc-venv/bin/python"; do
  [ -n "$py" ] && [ -x "$py" ] || continue
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null) || continue
  for c in "$site"/nvidia/cu*/bin/nvcc "$site"/nvidia/cuda_nvcc/bin/nvcc; do
    if [ -x "$c" ]; then echo "$c"; exit 0; fi
  done
done
exit 0
