#!/usr/bin/env bash
# find-libtorch.sh: find a LibTorch to build against and print, one a line,
#   TORCH_INCLUDE=...  TORCH_LIB=...  TORCH_PYTHON=...  TORCH_SOURCE=...  TORCH_CUDA=0|1
# In order: $LIBTORCH (the official zip layout; $PYTHON names a Python with the
# same torch for exporting test models), else the torch package of $PYTHON
# (default: python3 on PATH), else Debian's libtorch-dev with /usr/bin/python3.
# Exits 1, saying so on stderr, when none is found (`make deps` installs one).
set -u
py=${PYTHON:-python3}
emit() { # include lib python source
  cuda=0
  if ls "$2"/libtorch_cuda.so >/dev/null 2>&1; then cuda=1; fi
  printf 'TORCH_INCLUDE=%s\nTORCH_LIB=%s\nTORCH_PYTHON=%s\nTORCH_SOURCE="%s"\nTORCH_CUDA=%s\n' "$1" "$2" "$3" "$4" "$cuda"
  exit 0
}
if [ -n "${LIBTORCH:-}" ]; then
  if [ ! -f "$LIBTORCH/include/torch/script.h" ]; then
    echo "find-libtorch: LIBTORCH=$LIBTORCH has no include/torch: expected the official libtorch zip layout" >&2
    exit 1
  fi
  emit "$LIBTORCH/include" "$LIBTORCH/lib" "$(command -v "$py" || echo none)" "LIBTORCH=$LIBTORCH"
fi
if command -v "$py" >/dev/null 2>&1; then
  dir=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
  if [ -n "$dir" ] && [ -f "$dir/include/torch/script.h" ]; then
    emit "$dir/include" "$dir/lib" "$(command -v "$py")" "python torch $("$py" -c 'import torch; print(torch.__version__)')"
  fi
fi
if [ -f /usr/include/torch/script.h ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  emit /usr/include "$(dirname "$(ls /usr/lib/*/libtorch.so | head -n1)")" /usr/bin/python3 "debian libtorch-dev $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
fi
echo "find-libtorch: no LibTorch found (tried \$LIBTORCH, the torch package of $py, Debian's libtorch-dev with python3-torch); run 'make deps'" >&2
exit 1
