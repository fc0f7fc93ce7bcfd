#!/bin/bash
# The GAIA authors' CIFAR protocol end to end on stand-ins (docs/reproduce.md):
# configs/gaia_cifar10.yaml (or CLASSES=100: gaia_cifar100.yaml) unchanged but
# for its output folder, run on small generated sets in their real formats (a
# pickled CIFAR test batch and training batches, an SVHN .mat, image folders)
# with a random gaia_resnet34 (ARCH=wrn_40_2 for the WRN), the paths set
# through the environment as a researcher sets them; then checks that the
# report is complete.
#   scripts/rehearse_cifar.sh [OUT]       (PYTHON, GAIA, ARCH, CLASSES, DEVICE)
set -euo pipefail
out=${1:-build/cifar-rehearsal}
py=${PYTHON:-python3}
gaia=${GAIA:-bin/gaia}
arch=${ARCH:-gaia_resnet34}
classes=${CLASSES:-10}
cfgname=gaia_cifar${classes}
data=$out/data
mkdir -p "$out"
if [ ! -f "$data/test_32x32.mat" ]; then
	"$py" scripts/make_cifar_standins.py --out "$data" --classes "$classes"
fi
model=$out/${arch}_${classes}.pt
if [ ! -f "$model" ]; then
	"$py" scripts/export.py --arch "$arch" --num-classes "$classes" --seed 1 --out "$model"
fi
export GAIA_MODEL=$model GAIA_DATA=$data
cfg=$out/$cfgname.yaml
sed -e "s#^out: .*#out: $out/report#" "configs/$cfgname.yaml" > "$cfg"
[ -n "${DEVICE:-}" ] && echo "device: $DEVICE" >> "$cfg"
"$gaia" bench --quiet "$cfg" > "$out/table.txt"
cat "$out/table.txt"
# The report is complete: the protocol, every set and detector in the table
# and in metrics.csv, the taps of each detector, the fit.
python3 - "$out/report" "$gaia" <<'PY'
import csv, os, subprocess, sys
rep, gaia = sys.argv[1], sys.argv[2]
md = open(os.path.join(rep, "report.md")).read()
sets = ["SVHN", "LSUN", "TinyImageNet", "Places", "Textures"]
dets = ["gaia-a", "gaia-z", "msp", "maxlogit", "energy", "odin", "gradnorm",
        "mahalanobis", "react", "knn", "vim", "ash", "dice", "klm"]
problems = []
if "Protocol: the GAIA authors'" not in md:
    problems.append("no Protocol line")
head = next(l for l in md.splitlines() if l.startswith("| detector"))
for s in sets + ["mean"]:
    if f"{s} FPR95" not in head:
        problems.append(f"table has no {s} column")
for d in dets:
    if f"\n| {d} |" not in md:
        problems.append(f"table has no {d} row")
    if d not in ("msp", "maxlogit", "energy", "odin") and f"- {d} taps:" not in md:
        problems.append(f"setup does not say the taps {d} used")  # the logit-based ones use none
rows = list(csv.DictReader(open(os.path.join(rep, "metrics.csv"))))
got = {(r["detector"], r["ood_set"]) for r in rows}
for d in dets:
    for s in sets + ["mean"]:
        if (d, s) not in got:
            problems.append(f"metrics.csv has no {d} / {s}")
for r in rows:
    for k in ("fpr95", "auroc"):
        v = float(r[k])
        if not 0 <= v <= 1:
            problems.append(f"metrics.csv {r['detector']} {r['ood_set']} {k} = {v}")
if "Fit of the feature-based detectors" not in md:
    problems.append("no fit in the setup")
for f in ["fit.safetensors", "metrics.json"] + [f"scores/{s}.csv" for s in sets]:
    if not os.path.exists(os.path.join(rep, f)):
        problems.append(f"no {f}")
if problems:
    print("rehearse-cifar: the report is incomplete:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"rehearse-cifar: report complete: {len(dets)} detectors x {len(sets)} sets, protocol, taps and fit ({rep}/report.md)")
PY
