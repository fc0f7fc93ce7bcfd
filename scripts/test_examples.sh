#!/usr/bin/env bash
# test_examples.sh DIR: the programs of examples/ built the way a user's
# own module builds them (a module of their own with a replace directive
# pointing at this checkout, LibTorch found through `make env`'s exports),
# then run against the MNIST ResNet: the gatekeeper middleware must pass
# exactly the uploads the gate's threshold accepts (by gaia score's scores
# of the same images) and refuse the others with 422 before its handler;
# the mount server must answer its own route and gaia serve's under /ood/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-build/examples-test}
GO=${GO:-go}
PY=${PILLOW_PYTHON:-/usr/bin/python3}
rm -rf "$OUT"
mkdir -p "$OUT/mod" "$OUT/png"
OUT=$(cd "$OUT" && pwd)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# 1. A module of the user's own.
cp -r examples/gatekeeper examples/mount "$OUT/mod/"
cat > "$OUT/mod/go.mod" <<MOD
module example.com/gaia-user

go 1.24

require github.com/gaia-ood/gaia v0.0.0

replace github.com/gaia-ood/gaia => $ROOT
MOD
( cd "$OUT/mod" && GOFLAGS=-mod=mod $GO mod tidy >/dev/null 2>&1 && $GO build -o "$OUT/gatekeeper" ./gatekeeper && $GO build -o "$OUT/mount" ./mount )
echo "test_examples: examples/gatekeeper and examples/mount build in a module of their own"

# 2. MNIST test images as PNG uploads, their gaia score scores, a gate.
. scripts/demo_data.sh
"$PY" - "$MNIST_DIR/t10k-images-idx3-ubyte.gz" "$OUT/png" <<'PYEOF'
import gzip, struct, sys
from PIL import Image
with gzip.open(sys.argv[1]) as f:
    _, n, h, w = struct.unpack(">IIII", f.read(16))
    for i in range(40):
        Image.frombytes("L", (w, h), f.read(h * w)).save(f"{sys.argv[2]}/{i:03d}.png")
PYEOF
MODEL=$ROOT/models/mnist_resnet.pt
bin/gaia score --quiet --model "$MODEL" --data "folder:$OUT/png" --detectors gaia-z --out "$OUT/id.csv"
bin/gaia calibrate --id "$OUT/id.csv" --detector gaia-z --tpr 0.8 --out "$OUT/gate.json" >/dev/null

port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "test_examples: $1 never answered" >&2; return 1; }

# 3. The gatekeeper: every upload's fate is the gate's decision on its score.
P=$(port)
"$OUT/gatekeeper" -model "$MODEL" -gate "$OUT/gate.json" -addr "127.0.0.1:$P" 2>"$OUT/gatekeeper.log" &
pids+=($!)
wait_up "http://127.0.0.1:$P/"
th=$("$PY" -c 'import json,sys; print(repr(json.load(open(sys.argv[1]))["threshold"]))' "$OUT/gate.json")
passed=0 refused=0
while IFS=, read -r _ src _ _ score; do
  code=$(curl -s -o "$OUT/answer.json" -w '%{http_code}' --data-binary "@$src" -H 'Content-Type: image/png' "http://127.0.0.1:$P/classify")
  # The threshold is one of the scores: one batched differently may fall on
  # either side of it by float noise (1e-4 relative).
  want=$("$PY" -c 'import sys; s, t = map(float, sys.argv[1:]); print("either" if abs(s - t) <= 1e-4 * max(1, abs(t)) else 200 if s <= t else 422)' "$score" "$th")
  if [ "$want" != either ] && [ "$code" != "$want" ]; then
    echo "test_examples: $src (gaia-z $score, threshold $th): gatekeeper answered $code, the gate decides $want" >&2
    cat "$OUT/answer.json" >&2
    exit 1
  fi
  if [ "$code" = 200 ]; then passed=$((passed + 1)); grep -q '"label"' "$OUT/answer.json"; else refused=$((refused + 1)); grep -q 'out of distribution' "$OUT/answer.json"; fi
done < <(tail -n +2 "$OUT/id.csv")
[ "$passed" -ge 30 ] && [ "$refused" -ge 4 ] || { echo "test_examples: $passed passed, $refused refused of 40 (gate at 80%)" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary 'not an image' -H 'Content-Type: image/png' "http://127.0.0.1:$P/classify")
[ "$code" = 400 ] || { echo "test_examples: a non-image got $code, not 400" >&2; exit 1; }
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
echo "test_examples: gatekeeper passed $passed and refused $refused of 40 uploads, each as the gate's threshold on gaia score's score decides; a non-image 400"

# 4. gaia serve's handler mounted on a mux of one's own.
P=$(port)
"$OUT/mount" -model "$MODEL" -gate "$OUT/gate.json" -addr "127.0.0.1:$P" 2>"$OUT/mount.log" &
pids+=($!)
wait_up "http://127.0.0.1:$P/hello"
curl -sf "http://127.0.0.1:$P/hello" | grep -q 'gaia-z'
curl -sf "http://127.0.0.1:$P/ood/readyz" | grep -q ready
curl -sf --data-binary "@$OUT/png/000.png" -H 'Content-Type: image/png' "http://127.0.0.1:$P/ood/v1/score" > "$OUT/score.json"
"$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; assert "gate" in r and "gaia-z" in r["scores"], r' "$OUT/score.json"
echo "test_examples: mount answers /hello and gaia serve's /ood/readyz and /ood/v1/score"
