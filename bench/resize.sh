#!/usr/bin/env bash
# The seed demo's job on a folder of photos, four ways, in one run on one machine:
#   (a) shoal, the seed's definition, the resize function as a Lambda process (batches of 100)
#   (b) the same with the in-process builtin function
#   (c) Pillow, 128x128 Lanczos q75, in 2 processes
#   (d) vipsthumbnail through xargs -P2 (when installed)
# and the kernel floor: the single-thread resize time x photos / cores.
#   bench/resize.sh PHOTO_DIR [PYTHON_WITH_PILLOW]     (ROUNDS=3 by default)
# This VM's speed drifts by a third within seconds, so each round runs the kernel before
# and after each of (a) and (b), and each ratio is against the mean of those two.
set -euo pipefail
cd "$(dirname "$0")/.."
photos="$(cd "$1" && pwd)"; py="${2:-python3}"; rounds="${ROUNDS:-3}"
cores=$(nproc)
cargo build --release -q -p shoal-cli -p shoal-resize --features shoal-cli/resize
cargo build --release -q -p shoal-resize --example kernel
# tmpfs when there is one: disk writeback on these VMs swamps the figures.
work=$(mktemp -d -p "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )"); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/buckets/photos"
cp -r "$photos" "$work/buckets/photos/images"
n=$(ls "$photos" | wc -l)
# The whole machine's CPU seconds (from /proc/stat), so that function processes count too.
cpu() { awk '/^cpu /{printf "%.2f\n", ($2+$3+$4+$7+$8)/100}' /proc/stat; }
timed() { # prints "wall_seconds cpu_seconds"
  local c0 t0 c1 t1
  c0=$(cpu); t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N); c1=$(cpu)
  "$py" -c "print(f'{$t1 - $t0:.3f} {$c1 - $c0:.2f}')"
}
kernel() { target/release/examples/kernel "$photos" | "$py" -c "import json,sys; print(json.load(sys.stdin)['ms_per_photo'])"; }
# The kernel on every core at once (one process per core, each over all the photos): the
# same floor when the cores scale, which on this VM they do not always.
kernels() {
  local i; for i in $(seq "$cores"); do kernel > "$work/k$i" & done; wait
  cat "$work"/k[0-9]* | "$py" -c "import sys; v=[float(l) for l in sys.stdin]; print(sum(v)/len(v))"
}
shoal() { # variant
  local input=examples/resize-photos/input.json
  [ "$1" = builtin ] && input=examples/resize-photos/input-builtin.json
  rm -rf "$work/buckets/thumbnails"; mkdir -p "$work/buckets/thumbnails"
  timed target/release/shoal run examples/resize-photos/state-machine.asl.json --input "@$input" \
    --buckets "$work/buckets" --config examples/resize-photos/shoal.toml --json
  test "$(ls "$work/buckets/thumbnails/images" | wc -l)" = "$n"
}
results="$work/results"
for r in $(seq "$rounds"); do
  echo "$r parallel $(kernels)" >> "$work/parallel"
  k0=$(kernel)
  for variant in process builtin; do
    t=$(shoal $variant)
    k1=$(kernel)
    echo "$r $variant $("$py" -c "print(($k0 + $k1) / 2)") $t" >> "$results"
    k0=$k1
  done
done
"$py" - "$results" "$n" "$cores" "$work/parallel" <<'EOF'
import statistics, sys
path, n, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
parallel = {l.split()[0]: float(l.split()[2]) for l in open(sys.argv[4])}
rows = [l.split() for l in open(path)]
print(f"| round | (a) kernel ms/photo | (a) floor s | (a) process s | (a) images/s | (a) ratio | (b) kernel ms/photo | (b) floor s | (b) builtin s | (b) images/s | (b) ratio | kernel on {cores} cores ms/photo | (a) ratio to it | (b) ratio to it |")
print("|" + "---|" * 14)
ratios = {"process": [], "builtin": []}
pratios = {"process": [], "builtin": []}
rounds = sorted({r[0] for r in rows}, key=int)
for rd in rounds:
    by = {r[1]: r for r in rows if r[0] == rd}
    cells = [rd]
    for v in ("process", "builtin"):
        k = float(by[v][2])
        floor = k * n / cores / 1000
        s = float(by[v][3])
        ratios[v].append(s / floor)
        cells += [f"{k:.3f}", f"{floor:.3f}", f"{s:.2f}", f"{n / s:,.0f}", f"{s / floor:.2f}"]
    kp = parallel[rd]
    cells.append(f"{kp:.3f}")
    for v in ("process", "builtin"):
        r = float(by[v][3]) / (kp * n / cores / 1000)
        pratios[v].append(r)
        cells.append(f"{r:.2f}")
    print("| " + " | ".join(cells) + " |")
for v, label in (("process", "(a)"), ("builtin", "(b)")):
    walls = [float(r[3]) for r in rows if r[1] == v]
    cpus = [float(r[4]) for r in rows if r[1] == v]
    print(f"{label} {v}: median {n / statistics.median(walls):,.0f} images/s, "
          f"median ratio {statistics.median(ratios[v]):.2f} "
          f"({statistics.median(pratios[v]):.2f} to the kernel on all cores), "
          f"CPU {statistics.median(cpus) * 1000 / n:.2f} ms per image")
EOF
echo
echo "| run | photos | seconds | images/s | CPU ms per image |"
echo "|---|---|---|---|---|"
row() { "$py" -c "n=$n; s=$2; cpu=$3; print(f'| $1 | {n} | {s:.2f} | {n/s:,.0f} | {cpu*1000/n:.2f} |')"; }
mkdir -p "$work/pil"
t=$(timed "$py" -c "
import os, sys
from multiprocessing import Pool
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
def one(name):
    with Image.open(os.path.join(src, name)) as im:
        im.convert('RGB').resize((128, 128), Image.LANCZOS).save(os.path.join(dst, name), quality=75)
if __name__ == '__main__':
    with Pool(2) as p:
        p.map(one, sorted(os.listdir(src)), chunksize=16)
" "$photos" "$work/pil")
set -- $t
row "(c) Pillow $("$py" -c 'import PIL; print(PIL.__version__)'), 2 processes" "$1" "$2"
if command -v vipsthumbnail >/dev/null; then
  mkdir -p "$work/vips"
  t=$(cd "$photos" && timed sh -c "ls | xargs -P2 -n 50 vipsthumbnail -s 128x128! -o '$work/vips/%s.jpg[Q=75]'")
  set -- $t
  row "(d) vipsthumbnail, xargs -P2" "$1" "$2"
else
  echo "| (d) vipsthumbnail | not installed here | | | |"
fi
