#!/usr/bin/env bash
# gpu-check.sh: one command for a GPU machine that has no network and no Go
# toolchain, but has a GPU and torch (2.11, CUDA 13.0) in its python3.
#
# What runs there is built here, against PyPI's torch 2.11.0 with the fused
# CUDA kernels (`make gpu-bundle PYTHON=/path/to/venv/bin/python` writes
# build/gpu/: bin/gaia and the `go test -c` binaries of torch and gaia). The
# binaries find that machine's LibTorch and CUDA runtime through
# LD_LIBRARY_PATH, which this script sets from its python3's torch.
#
#   scripts/gpu-check.sh            # on the GPU machine, from the repository root
#
# Steps, each timed: the card and versions; test models made by the local
# torch; the test suites on CUDA (TF32 off, against float32 references);
# CUDA-vs-CPU agreement of every detector; throughput and peak GPU memory of
# GAIA-A, GAIA-Z, all detectors and the bare forward+backward for CIFAR
# ResNet-20 and ResNet-34 at 32x32 (batch 128) and ResNet-50 at 224x224
# (batch 32); peak memory with gradients reduced in hooks and after; BiT-S-R101x1
# at 480x480 (the ImageNet budget); gaia serve under load (gaia-load).
# Without a GPU it runs the same on the CPU, smaller, saying so (a rehearsal).
# Everything printed also goes to $OUT/gpu-check.txt (OUT defaults to build/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-build/gpu}
OUT=${OUT:-build/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.txt") 2>&1

t0=$(date +%s)
step() { printf '\n== %s (t=%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }
status=0
fail() { echo "FAILED: $*"; status=1; }

step "machine"
date -u '+%Y-%m-%d %H:%M UTC'
uname -srm
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())' || { echo "no torch in $PY"; exit 1; }
cuda=$("$PY" -c 'import torch; print(1 if torch.cuda.is_available() else 0)')
if [ "$cuda" = 1 ]; then
  DEV=cuda
else
  DEV=cpu
  echo "NO CUDA DEVICE: this is a rehearsal on the CPU; the CUDA-only checks are skipped and the sizes are smaller"
fi

# LibTorch and the CUDA runtime of this machine's torch, for the prebuilt binaries.
libs=$("$PY" - <<'EOF'
import glob, os, torch
d = [os.path.join(os.path.dirname(torch.__file__), "lib")]
site = os.path.dirname(os.path.dirname(torch.__file__))
d += sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib")))
d += [p for p in ("/usr/local/cuda/lib64",) if os.path.isdir(p)]
print(":".join(d))
EOF
)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for b in gaia torch.test gaia.test; do
  [ -x "$BUNDLE/$b" ] || { echo "missing $BUNDLE/$b: run 'make gpu-bundle PYTHON=...' on the build machine and carry build/gpu"; exit 1; }
done
"$BUNDLE/gaia" version || { echo "the prebuilt gaia does not start with this machine's LibTorch"; exit 1; }
"$BUNDLE/gaia" info --model models/mnist_resnet.pt --device "$DEV" | sed -n '1,6p'

step "test models (made by this machine's torch)"
TD="$OUT/testdata"
archs=cifar_resnet20,resnet18,plain_cnn,bit_s_r50x1
if "$PY" -c 'import torchvision' >/dev/null 2>&1; then archs="$archs,densenet121"; fi
"$PY" scripts/make_testdata.py --out "$TD" --archs "$archs" || fail "make_testdata"
if "$PY" -c 'import sklearn' >/dev/null 2>&1; then
  "$PY" scripts/metrics_reference.py --out "$TD/metrics_cases.json" || fail "metrics_reference"
fi
export GAIA_TESTDATA="$TD" GAIA_TESTDATA_PARTIAL=1 GAIA_TEST_DEVICE="$DEV"

step "tests on $DEV"
for b in torch.test gaia.test; do
  "$BUNDLE/$b" -test.short -test.count=1 -test.v > "$OUT/$b.log" 2>&1 || fail "$b"
  grep -E '^(--- (PASS|FAIL|SKIP)|ok|FAIL|PASS)' "$OUT/$b.log" | grep -v -- '--- PASS: .*/' | head -40
  grep -A3 -- '--- FAIL' "$OUT/$b.log" | head -60
done

step "CUDA vs CPU on the same inputs"
if [ "$DEV" = cuda ]; then
  "$BUNDLE/gaia.test" -test.run 'TestCUDAMatchesCPU' -test.count=1 -test.v 2>&1 | grep -E 'kernels|differ|---|ok|FAIL|Error|sample' | head -40
else
  echo "skipped: no CUDA device"
fi

step "throughput and peak memory"
M="$OUT/models"
mkdir -p "$M"
"$PY" scripts/export.py --arch cifar_resnet20 --out "$M/cifar_resnet20.pt" >/dev/null || fail "export cifar_resnet20"
"$PY" scripts/export.py --arch resnet34 --num-classes 10 --out "$M/resnet34.pt" >/dev/null || fail "export resnet34"
"$PY" scripts/export.py --arch resnet50 --num-classes 1000 --out "$M/resnet50.pt" >/dev/null || fail "export resnet50"
if [ "$DEV" = cuda ]; then
  secs=1; b32=128; b224=32
else
  secs=0.5; b32=16; b224=2
fi
speed() { "$BUNDLE/gaia" speed --device "$DEV" --seconds "$secs" --format markdown "$@" 2>/dev/null || fail "speed $*"; echo; }
speed --model "$M/cifar_resnet20.pt" --batch "$b32"
speed --model "$M/resnet34.pt" --input 3x32x32 --batch "$b32"
speed --model "$M/resnet50.pt" --input 3x224x224 --batch "$b224"
echo "peak memory with gradients reduced after the backward instead of in hooks:"
speed --model "$M/resnet50.pt" --input 3x224x224 --batch "$b224" --reduce-after --workloads gaia-z,gaia-a

step "ImageNet-1K budget: BiT-S-R101x1 at 480x480 (docs/imagenet.md)"
"$PY" scripts/export.py --arch bit_s_r101x1 --out "$M/bit_s_r101x1.pt" >/dev/null || fail "export bit_s_r101x1"
if [ "$DEV" = cuda ]; then bit=(--batch 16); else bit=(--batch 1 --input 3x96x96); fi
speed --model "$M/bit_s_r101x1.pt" "${bit[@]}" --workloads forward,gaia-z,gaia-a,msp,energy,odin,gradnorm,all

step "gaia serve on $DEV: dynamic batching against batch size 1 (docs/perf.md)"
if [ -x "$BUNDLE/gaia-load" ]; then
  if [ "$DEV" = cuda ]; then req=3000; else req=200; fi
  "$BUNDLE/gaia-load" --model "$M/cifar_resnet20.pt" --device "$DEV" --data noise:uniform,n=512,shape=3x32x32,seed=1 \
    --images 512 --requests "$req" --max-time 60s --clients 1,16,64 --max-batch 1,32 --detectors gaia-z,msp,energy || fail "gaia-load"
else
  echo "skipped: no $BUNDLE/gaia-load"
fi

step "done"
if [ $status = 0 ]; then echo "gpu-check: all steps passed on $DEV"; else echo "gpu-check: some steps FAILED on $DEV"; fi
exit $status
