#!/usr/bin/env bash
# deps.sh: install what the build and the tests need, where it is missing.
# LibTorch: when scripts/find-libtorch.sh finds none, Debian's libtorch-dev and
# python3-torch (1.13, CPU; about 75 s) are installed. A Python named by
# $PYTHON, or python3 on PATH, that has torch is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v go >/dev/null || { echo "deps: no Go toolchain on PATH: install Go 1.22 or newer (https://go.dev/dl)" >&2; exit 1; }
if ! scripts/find-libtorch.sh >/dev/null 2>&1; then
  missing+=(libtorch-dev python3-torch python3-torchvision python3-numpy)
fi
# JPEG decoding: libjpeg-turbo, linked statically (gaia/data/jpeg_cgo.go).
if [ ! -f /usr/include/jpeglib.h ] || ! ls /usr/lib/*/libjpeg.a >/dev/null 2>&1; then
  missing+=(libjpeg62-turbo-dev)
fi
# The preprocessing tests compare with Debian's Pillow (the same
# libjpeg-turbo), and make YCCK JPEGs through TurboJPEG.
/usr/bin/python3 -c 'import PIL, numpy' >/dev/null 2>&1 || missing+=(python3-pil python3-numpy)
ls /usr/lib/*/libturbojpeg.so.0 >/dev/null 2>&1 || missing+=(libturbojpeg0)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
eval "$(scripts/find-libtorch.sh)"
# Python packages the reference scripts and the tests use, in the Python that
# matches the LibTorch linked.
need_py=()
for mod in numpy torchvision sklearn scipy; do
  "$TORCH_PYTHON" -c "import $mod" >/dev/null 2>&1 || need_py+=("$mod")
done
if [ ${#need_py[@]} -gt 0 ]; then
  if [ "$TORCH_PYTHON" = /usr/bin/python3 ]; then
    apt_install "${need_py[@]/#/python3-}"
  else
    for p in "${need_py[@]}"; do
      case $p in
        torchvision)
          # torchvision 0.(minor+15) goes with torch 2.minor; --no-deps keeps torch as it is.
          tv=$("$TORCH_PYTHON" -c 'import torch; a,b=torch.__version__.split("+")[0].split(".")[:2]; print(f"0.{int(b)+15}" if a=="2" else "")')
          "$TORCH_PYTHON" -m pip install -q --no-deps "torchvision==${tv}.*"
          "$TORCH_PYTHON" -m pip install -q pillow ;;
        sklearn) "$TORCH_PYTHON" -m pip install -q scikit-learn ;;
        *) "$TORCH_PYTHON" -m pip install -q "$p" ;;
      esac
    done
  fi
fi
