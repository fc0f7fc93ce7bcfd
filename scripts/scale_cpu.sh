#!/bin/bash
# Scaling of one machine's cores for a scoring job: one process against two
# shard processes (and two replicas in one process), same data, same model.
# Prints a markdown table of wall time and images/s.
#   scripts/scale_cpu.sh MODEL.pt DATASPEC [DETECTORS]
set -euo pipefail
model=$1
spec=$2
dets=${3:-gaia-z,msp,energy}
gaia=${GAIA:-bin/gaia}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=$("$gaia" score --quiet --model "$model" --data "$spec" --detectors msp --device cpu --out "$tmp/count.csv" && tail -n +2 "$tmp/count.csv" | wc -l)
common=(--quiet --model "$model" --data "$spec" --detectors "$dets" --batch 128 --device cpu)

timed() { # label, then a command; prints a table row
	local label=$1
	shift
	local t0 t1
	t0=$(date +%s.%N)
	"$@"
	t1=$(date +%s.%N)
	awk -v l="$label" -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "| %s | %.1f | %.0f |\n", l, b - a, n / (b - a) }'
}
one() { OMP_NUM_THREADS=$1 "$gaia" score "${common[@]}" --out "$tmp/one.csv"; }
two() {
	rm -rf "$tmp/shards"
	OMP_NUM_THREADS=$1 "$gaia" score "${common[@]}" --shard 0/2 --out-dir "$tmp/shards" &
	OMP_NUM_THREADS=$1 "$gaia" score "${common[@]}" --shard 1/2 --out-dir "$tmp/shards" &
	wait %1 && wait %2
	"$gaia" merge "$tmp/shards" --out "$tmp/merged.csv" >/dev/null
}
replicas() { OMP_NUM_THREADS=2 "$gaia" score "${common[@]}" --device cpu,cpu --out "$tmp/rep.csv"; }

echo "$n images, $(nproc) CPUs, $(date -u +%F), $("$gaia" version | tr '\n' ' ')"
echo
echo "| layout | seconds | images/s |"
echo "|---|---:|---:|"
timed "1 process, 1 thread" one 1
timed "1 process, 2 threads" one 2
timed "2 shard processes, 1 thread each (+ merge)" two 1
timed "2 shard processes, 2 threads each (+ merge)" two 2
timed "1 process, --device cpu,cpu (1 thread per replica)" replicas
