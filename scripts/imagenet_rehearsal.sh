#!/bin/bash
# The ImageNet-1K protocol end to end at full shapes, on generated images and
# random weights (docs/imagenet.md): BiT-S-R101x1 at 480 x 480 (or ARCH=resnet50
# at 224), configs/imagenet1k.yaml unchanged, the paths set through the
# environment as a researcher sets them.
#   scripts/imagenet_rehearsal.sh [OUT]       (PYTHON, GAIA, ARCH, DEVICE, PER_CLASS, OOD)
set -euo pipefail
out=${1:-build/imagenet-rehearsal}
py=${PYTHON:-python3}
gaia=${GAIA:-bin/gaia}
arch=${ARCH:-bit_s_r101x1}
data=$out/data
mkdir -p "$out"
if [ ! -f "$data/val.txt" ]; then
	"$py" scripts/make_fake_imagenet.py --out "$data" --id-classes 20 --per-class "${PER_CLASS:-10}" --ood "${OOD:-100}"
fi
model=$out/$arch.pt
if [ ! -f "$model" ]; then
	pre=()
	[ "$arch" = resnet50 ] && pre=(--preprocess imagenet224)
	"$py" scripts/export.py --arch "$arch" --seed 1 "${pre[@]}" --out "$model"
fi
export GAIA_MODEL=$model IMAGENET_VAL=$data/val INATURALIST=$data/iNaturalist SUN=$data/SUN PLACES=$data/Places TEXTURES=$data/dtd/images
cfg=$out/imagenet1k.yaml
# The committed config, with only the output folder (and device) changed.
sed -e "s#^out: .*#out: $out/report#" configs/imagenet1k.yaml > "$cfg"
[ -n "${DEVICE:-}" ] && echo "device: $DEVICE" >> "$cfg"
time "$gaia" bench "$cfg"
echo "report: $out/report/report.md"
