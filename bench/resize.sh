#!/usr/bin/env bash
# The seed demo's job on a folder of photos, four ways, in one run on one machine:
#   (a) shoal, the seed's definition, the resize function as a Lambda process (batches of 100)
#   (b) the same with the in-process builtin function
#   (c) Pillow, 128x128 Lanczos q75, in 2 processes
#   (d) vipsthumbnail through xargs -P2 (when installed)
# and the kernel floor: the single-thread resize time x photos / cores.
#   bench/resize.sh PHOTO_DIR [PYTHON_WITH_PILLOW]
set -euo pipefail
cd "$(dirname "$0")/.."
photos="$(cd "$1" && pwd)"; py="${2:-python3}"
cores=$(nproc)
cargo build --release -q -p shoal-cli -p shoal-resize
# tmpfs when there is one: disk writeback on these VMs swamps the figures.
work=$(mktemp -d -p "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )"); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/buckets/photos"
cp -r "$photos" "$work/buckets/photos/images"
n=$(ls "$photos" | wc -l)
# The kernel's single pass varies by a third on a noisy VM: the median of three.
kernels=$(for _ in 1 2 3; do
  cargo run --release -q -p shoal-resize --example kernel -- "$photos" | "$py" -c "import json,sys; print(json.load(sys.stdin)['ms_per_photo'])"
done)
kernel=$(echo "$kernels" | sort -n | sed -n 2p)
floor=$("$py" -c "print($kernel * $n / $cores / 1000)")
row() { # name seconds cpu_seconds
  "$py" -c "
n=$n; s=$2; cpu=$3; floor=$floor
print(f'| $1 | {n} | {s:.2f} | {n/s:,.0f} | {cpu*1000/n:.2f} | {s/floor:.2f} |')"
}
# Wall seconds, and the whole machine's CPU seconds meanwhile (from /proc/stat), so
# that function processes count too; the third field is 0.
cpu() { awk '/^cpu /{print ($2+$3+$4+$7+$8)/100}' /proc/stat; }
timed() {
  local c0 t0 c1 t1
  c0=$(cpu); t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N); c1=$(cpu)
  "$py" -c "print(f'{$t1 - $t0:.3f} {$c1 - $c0:.2f} 0')"
}
echo "kernel: $kernel ms per photo on one thread (median of $(echo $kernels)); floor on $cores cores: $floor s"
echo "| run | photos | seconds | images/s | CPU ms per image | ratio to kernel floor |"
echo "|---|---|---|---|---|---|"
for variant in process builtin; do
  input=examples/resize-photos/input.json
  [ $variant = builtin ] && input=examples/resize-photos/input-builtin.json
  rm -rf "$work/buckets/thumbnails"; mkdir -p "$work/buckets/thumbnails"
  t=$(timed target/release/shoal run examples/resize-photos/state-machine.asl.json --input "@$input" \
      --buckets "$work/buckets" --config examples/resize-photos/shoal.toml --json)
  set -- $t
  test "$(ls "$work/buckets/thumbnails/images" | wc -l)" = "$n"
  row "(a/b) shoal, $variant function" "$1" "$("$py" -c "print($2 + $3)")"
done
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
row "(c) Pillow $("$py" -c 'import PIL; print(PIL.__version__)'), 2 processes" "$1" "$("$py" -c "print($2 + $3)")"
if command -v vipsthumbnail >/dev/null; then
  mkdir -p "$work/vips"
  t=$(cd "$photos" && timed sh -c "ls | xargs -P2 -n 50 vipsthumbnail -s 128x128! -o '$work/vips/%s.jpg[Q=75]'")
  set -- $t
  row "(d) vipsthumbnail, xargs -P2" "$1" "$("$py" -c "print($2 + $3)")"
else
  echo "| (d) vipsthumbnail | not installed here | | | | |"
fi
