#!/usr/bin/env bash
# bench_preprocess.sh: decode + preprocessing per core, gaia against Pillow
# and torchvision on the same full-size JPEGs, in one run.
#
#   scripts/bench_preprocess.sh [DIR]    (make bench runs it; DIR holds JPEGs,
#                                          default: generated ImageNet-sized stand-ins)
#
# One image at a time on one core, from bytes in memory, best of 3 rounds:
# gaia's Go benchmark (BenchmarkPreprocess: the Pillow-identical path, the
# opt-in draft path, and the path before the Pillow-identical one) and
# scripts/pillow_reference.py time (Pillow's open + convert + Resize +
# CenterCrop; torchvision's whole pipeline with ToTensor and Normalize).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PILLOW_PYTHON:-/usr/bin/python3}
dir=${1:-}
if [ -z "$dir" ]; then
  dir=build/bench/imagenet/val
  if [ ! -d "$dir" ]; then
    "$py" scripts/make_fake_imagenet.py --out build/bench/imagenet --id-classes 20 --per-class 10 --ood 1 >/dev/null
  fi
fi
dir=$(cd "$dir" && pwd) # go test runs in the package's folder
files=$(mktemp)
trap 'rm -f "$files"' EXIT
find "$dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) | sort | head -n 200 > "$files"
n=$(wc -l < "$files")
echo "bench_preprocess: $n JPEGs from $dir, $(nproc) CPUs, one core used, $(date -u +%F)" >&2
go_out=$(GOMAXPROCS=1 GAIA_BENCH_IMAGENET="$dir" ${GO:-go} test -run '^$' -bench BenchmarkPreprocess -benchtime 3x -count 3 -cpu 1 ./gaia/data)
echo "$go_out" | grep -E '^Benchmark' >&2
ms() { # the best ms/image of a Go sub-benchmark
  echo "$go_out" | awk -v n="BenchmarkPreprocess/$1" '$1 == n { for (i = 1; i <= NF; i++) if ($(i+1) == "ms/image") print $i }' | sort -g | head -n 1
}
printf '| path | gaia ms/image | gaia draft | gaia before (image/jpeg, float) | Pillow | torchvision (+ ToTensor, Normalize) | gaia vs Pillow | gaia vs torchvision | gaia vs before |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for c in "imagenet224:resize=256,center-crop=224" "bit480:resize=480x480"; do
  name=${c%%:*}; tf=${c#*:}
  py_out=$("$py" scripts/pillow_reference.py time --sources "$files" --transform "$tf" --rounds 3)
  pil=$(echo "$py_out" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["pillow_ms_per_image"])')
  tv=$(echo "$py_out" | "$py" -c 'import json,sys; print(json.load(sys.stdin).get("torchvision_ms_per_image", "nan"))')
  g=$(ms "$name/gaia"); d=$(ms "$name/gaia-draft"); old=$(ms "$name/before")
  "$py" - "$name" "$g" "$d" "$old" "$pil" "$tv" <<'PY'
import sys
name, g, d, old, pil, tv = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {name} | {g:.2f} | {d:.2f} | {old:.2f} | {pil:.2f} | {tv:.2f} | {pil / g:.2f}x | {tv / g:.2f}x | {old / g:.2f}x |")
PY
done
