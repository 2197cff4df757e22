#!/usr/bin/env bash
# The seed demo on the embedded default: builds shoal and the resize function, makes a
# bucket of real photos, runs the seed's own definition over it (a live progress bar on a
# terminal), and prints a summary.
#   examples/resize-photos/run.sh [PHOTOS]       (default 2000; BUILTIN=1 runs the in-process function)
#
# The photos are cut (random crops, scales, mirror images) from six freely licensed
# photos that ship in scikit-image's wheel on PyPI (skimage/data): astronaut.png,
# rocket.jpg and hubble_deep_field.jpg (NASA/SpaceX, public domain), chelsea.png and
# coffee.png (CC0, by Stefan van der Walt and Rachel Michetti), retina.jpg (CC0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
cd "$root"
n="${1:-2000}"
work="$root/target/resize-demo"
buckets="$work/buckets"

scripts/build-deps.sh
cargo build --release -q -p shoal-cli -p shoal-resize --features shoal-cli/resize

if [ ! -d "$work/sources" ]; then
  mkdir -p "$work/wheel" "$work/sources"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    scikit-image==0.26.0 -d "$work/wheel"
  python3 - "$work" <<'PY'
import glob, sys, zipfile
work = sys.argv[1]
z = zipfile.ZipFile(glob.glob(work + "/wheel/scikit_image-*.whl")[0])
for name in ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg"]:
    open(f"{work}/sources/{name}", "wb").write(z.read("skimage/data/" + name))
PY
fi
if [ "$(ls "$buckets/photos/images" 2>/dev/null | wc -l)" != "$n" ]; then
  rm -rf "$buckets/photos"
  target/release/shoal-demo-photos "$work/sources" "$buckets/photos/images" "$n"
fi
rm -rf "$buckets/thumbnails"
mkdir -p "$buckets/thumbnails"

input="$here/input.json"
[ "${BUILTIN:-0}" = 1 ] && input="$here/input-builtin.json"
start=$(date +%s.%N)
target/release/shoal run "$here/state-machine.asl.json" --input "@$input" \
  --buckets "$buckets" --config "$here/shoal.toml" --json > "$work/result.json"
end=$(date +%s.%N)

python3 - "$work/result.json" "$start" "$end" "$buckets/thumbnails" <<'PY'
import json, os, sys
result, start, end, out = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
secs = end - start
if result["status"] != "SUCCEEDED":
    print(f"the execution failed: {result.get('error')}: {result.get('cause')}")
    sys.exit(1)
done = sum(b["succeeded"] for b in result["output"])
failed = [f for b in result["output"] for f in b["failed"]]
print(f"images: {done} resized to 128x128, {len(failed)} failed")
print(f"seconds: {secs:.2f}  images/s: {done / secs:,.0f}  (AWS, 81 Lambdas: 8,088 in 8.4 s = 960/s)")
for f in failed[:10]:
    print(f"  failed: {f['key']}: {f['error']}")
print(f"output: {out}/images/")
PY
