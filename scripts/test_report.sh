#!/usr/bin/env bash
# test_report.sh, run by `make test`: the demo's report.html in a real
# browser. Runs the demo's config (configs/demo.yaml, into OUT), checks the
# page is valid HTML (html5lib's strict parser and tidy, no warning), renders
# it in headless Chromium (Debian's chromium, installed when missing) and
# checks: the screenshot is not blank, the table has one row per detector of
# metrics.csv, one gallery per detector for the ID set and for each OOD set,
# every image loaded (naturalWidth > 0), every thumbnail has a caption. Then
# `gaia report` remakes the page from the score files alone and it passes the
# same checks. Every browser started here is stopped (by its PID) before
# the script ends, also on failure.
#   scripts/test_report.sh [OUT]            (default build/report-test)
#   SCREENSHOT=docs/report.png scripts/...  also writes the README's screenshot
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${1:-build/report-test}
PY=${PILLOW_PYTHON:-/usr/bin/python3}

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v tidy >/dev/null || need+=(tidy)
"$PY" -c 'import html5lib' 2>/dev/null || need+=(python3-html5lib)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
. scripts/apt.sh
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi

. scripts/demo_data.sh
mkdir -p "$OUT"
bin/gaia bench --quiet configs/demo.yaml --out "$OUT/demo" > "$OUT/table.txt"

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # Chromium's helpers (zygote, GPU, renderer) carry its profile folder.
  pkill -9 -f -- "--user-data-dir=$tmp/profile" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# chromium URL_FILE ARGS...: one headless Chromium, its own profile, killed
# after 120 s; waited for by PID.
browse() {
  local page=$1; shift
  timeout -s KILL 120 chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$tmp/profile" --hide-scrollbars --virtual-time-budget=20000 "$@" "file://$(realpath "$page")" \
    2> "$tmp/chromium.err" &
  local pid=$!
  pids+=("$pid")
  wait "$pid" || { echo "test_report: chromium failed:"; tail -5 "$tmp/chromium.err"; return 1; }
}

check() {
  local dir=$1 what=$2
  local page="$dir/report.html"
  # Valid HTML: html5lib's strict parser (the HTML5 parsing rules) and tidy.
  "$PY" -c '
import sys, html5lib
html5lib.HTMLParser(strict=True).parse(open(sys.argv[1], "rb"))' "$page" \
    || { echo "test_report: $page is not valid HTML (html5lib)"; return 1; }
  if ! tidy -q -e "$page" > "$tmp/tidy.txt" 2>&1; then
    echo "test_report: tidy finds problems in $page:"; head -20 "$tmp/tidy.txt"; return 1
  fi
  if grep -Eq 'src="(https?:)?//|href="https?:|<script' "$page"; then
    echo "test_report: $page fetches from the network or runs a script"; return 1
  fi
  # The page as the browser lays it out: a copy with a checking script.
  cp "$page" "$tmp/probe.html"
  cat >> "$tmp/probe.html" <<'JS'
<script>
window.addEventListener("load", function () {
  var imgs = document.images, broken = [];
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) broken.push(imgs[i].alt);
  }
  var tiles = document.querySelectorAll(".tile"), uncaptioned = 0;
  for (var j = 0; j < tiles.length; j++) {
    var cap = tiles[j].querySelector(".cap .score");
    if (!cap || cap.textContent.trim() === "" || !tiles[j].querySelector("img")) uncaptioned++;
  }
  var rows = [];
  document.querySelectorAll("table.metrics tbody tr td.det").forEach(function (td) { rows.push(td.textContent.trim()); });
  var r = {images: imgs.length, broken: broken.slice(0, 5), nbroken: broken.length, rows: rows,
           galleries: document.querySelectorAll(".gallery").length, tiles: tiles.length, uncaptioned: uncaptioned,
           width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
           setupTop: document.getElementById("setup").getBoundingClientRect().top + window.scrollY,
           detTop: document.querySelector("section.det").getBoundingClientRect().top + window.scrollY};
  var pre = document.createElement("pre");
  pre.id = "gaia-check";
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>
JS
  browse "$tmp/probe.html" --window-size=1280,1600 --dump-dom > "$tmp/dom.html"
  browse "$page" --window-size=1280,1600 --screenshot="$dir/screenshot.png"
  "$PY" - "$tmp/dom.html" "$OUT/demo/metrics.csv" "$dir/screenshot.png" "$what" <<'PY'
import csv, json, re, sys
from PIL import Image, ImageStat
dom, metrics, shot, what = sys.argv[1:]
m = re.search(r'<pre id="gaia-check">(.*?)</pre>', open(dom).read(), re.S)
if not m:
    sys.exit(f"test_report: {what}: the browser did not run the check (no load event?)")
r = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
json.dump(r, open(shot + ".json", "w"))
dets, sets = [], []
for row in csv.DictReader(open(metrics)):
    if row["detector"] not in dets:
        dets.append(row["detector"])
    if row["ood_set"] != "mean" and row["ood_set"] not in sets:
        sets.append(row["ood_set"])
problems = []
if r["rows"] != dets:
    problems.append(f"table rows {r['rows']}, want one per detector {dets}")
if r["galleries"] != len(dets) * (1 + len(sets)):
    problems.append(f"{r['galleries']} galleries, want {len(dets)} detectors x (ID + {len(sets)} OOD sets)")
if r["tiles"] != 16 * r["galleries"]:
    problems.append(f"{r['tiles']} thumbnails, want 16 per gallery")
if r["nbroken"]:
    problems.append(f"{r['nbroken']} of {r['images']} images did not load, e.g. {r['broken']}")
if r["uncaptioned"]:
    problems.append(f"{r['uncaptioned']} thumbnails without an image or a score")
if r["width"] > 1300:
    problems.append(f"the page is {r['width']} px wide at 1280: it scrolls sideways")
im = Image.open(shot).convert("L")
st = ImageStat.Stat(im)
dark = sum(im.histogram()[:200]) / (im.width * im.height)
if st.stddev[0] < 10 or dark < 0.02:
    problems.append(f"the screenshot looks blank (stddev {st.stddev[0]:.1f}, {100*dark:.1f}% dark pixels)")
if problems:
    sys.exit(f"test_report: {what}:\n  " + "\n  ".join(problems))
print(f"test_report: {what}: valid HTML; in Chromium {len(r['rows'])} table rows, {r['galleries']} galleries, "
      f"{r['images']} images all loaded; screenshot {im.width}x{im.height}, {100*dark:.0f}% ink")
PY
}

check "$OUT/demo" "bench's report.html"
ids=(--id MNIST="$OUT/demo/scores/MNIST.csv")
for s in Fashion-MNIST Uniform Gaussian; do ids+=(--ood "$s=$OUT/demo/scores/$s.csv"); done
bin/gaia report --quiet --ci "${ids[@]}" --out "$OUT/remade"  # the intervals bench reports have by default
check "$OUT/remade" "gaia report's report.html"
# The page built from the score files holds the same table and thumbnails.
"$PY" - "$OUT/demo/report.html" "$OUT/remade/report.html" <<'PY'
import re, sys
a, b = (open(p).read() for p in sys.argv[1:])
for what, pat in (("table", r'<table class="metrics">.*?</table>'), ("thumbnails", r'<div class="gallery">.*?</div>\n</div>')):
    x, y = re.findall(pat, a, re.S), re.findall(pat, b, re.S)
    if x != y:
        sys.exit(f"test_report: gaia report's {what} differs from bench's")
print("test_report: gaia report remade the same table and galleries from the score files")
PY
if [ -n "${SCREENSHOT:-}" ]; then
  # The README's picture: the header and table, then the first detector's galleries.
  h=$("$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(int(r["detTop"]) + 760)' "$OUT/demo/screenshot.png.json")
  browse "$OUT/demo/report.html" --window-size=1280,"$h" --screenshot="$tmp/tall.png"
  "$PY" - "$tmp/tall.png" "$OUT/demo/screenshot.png.json" "$SCREENSHOT" <<'PY'
import json, sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
r = json.load(open(sys.argv[2]))
top = im.crop((0, 0, im.width, int(r["setupTop"]) - 8))
gal = im.crop((0, int(r["detTop"]) - 8, im.width, min(im.height, int(r["detTop"]) + 740)))
out = Image.new("RGB", (im.width, top.height + gal.height), "white")
out.paste(top, (0, 0))
out.paste(gal, (0, top.height))
out = out.resize((out.width * 3 // 4, out.height * 3 // 4), Image.LANCZOS)
out.quantize(colors=96, method=Image.MEDIANCUT).save(sys.argv[3], optimize=True)
PY
  echo "test_report: screenshot $SCREENSHOT"
fi
