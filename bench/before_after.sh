#!/usr/bin/env bash
# Two shoal binaries on the same jobs, alternated round by round in one run, so that
# this VM's drift hits both alike: a refactor's "no behaviour or speed change" check.
#   bench/before_after.sh OLD_SHOAL NEW_SHOAL [PHOTO_DIR]     (ROUNDS=3 by default)
# Jobs: bench/run.sh's 1,000,000 JSONL items (batched and unbatched), bench/invoke's
# 100,000 invocations (process pool and builtin), and, with PHOTO_DIR, the seed demo
# (process function and builtin). Both binaries need the resize builtin.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1"); new=$(realpath "$2"); photos="${3:-}"; rounds="${ROUNDS:-3}"
cargo build --release -q -p shoal-testfn
[ -z "$photos" ] || cargo build --release -q -p shoal-resize
work=$(mktemp -d -p "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )"); trap 'rm -rf "$work"' EXIT
# Executions are journaled, as by default, into a state folder of the run's own.
export SHOAL_STATE_DIR="$work/state"
python3 bench/gen_jsonl.py "$work/dm" 1000000 >/dev/null
mkdir -p "$work/inv/results"
python3 -c "import json; json.dump(list(range(100000)), open('$work/items.json', 'w'))"
if [ -n "$photos" ]; then
  mkdir -p "$work/photos/photos"; cp -r "$photos" "$work/photos/photos/images"
  n=$(ls "$photos" | wc -l)
fi
# Prints wall seconds; fails if the run did not succeed.
run() { # shoal args...
  local t0 t1 bin=$1; shift
  t0=$(date +%s.%N)
  "$bin" run "$@" --json > "$work/out.json" 2>/dev/null
  t1=$(date +%s.%N)
  grep -q '"SUCCEEDED"' "$work/out.json" || { cat "$work/out.json" >&2; exit 1; }
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}
job() { # name bin
  case $1 in
    dm-batched|dm-unbatched) rm -rf "$work/dm/results"/*; run "$2" "bench/$1.asl.json" --buckets "$work/dm" ;;
    invoke-proc|invoke-builtin) run "$2" "bench/invoke/${1#invoke-}.asl.json" --input "@$work/items.json" \
      --buckets "$work/inv" --config bench/invoke/shoal.toml ;;
    resize-process|resize-builtin)
      local input=examples/resize-photos/input.json
      [ "$1" = resize-builtin ] && input=examples/resize-photos/input-builtin.json
      rm -rf "$work/photos/thumbnails"; mkdir -p "$work/photos/thumbnails"
      run "$2" examples/resize-photos/state-machine.asl.json --input "@$input" \
        --buckets "$work/photos" --config examples/resize-photos/shoal.toml
      test "$(ls "$work/photos/thumbnails/images" | wc -l)" = "$n" ;;
  esac
}
jobs="dm-batched dm-unbatched invoke-proc invoke-builtin"
[ -z "$photos" ] || jobs="$jobs resize-process resize-builtin"
for r in $(seq "$rounds"); do
  for j in $jobs; do
    # Alternate which goes first, so neither always runs on a warmer machine.
    if [ $((r % 2)) = 1 ]; then a=old; b=new; else a=new; b=old; fi
    ta=$(job "$j" "$( [ $a = old ] && echo "$old" || echo "$new")")
    tb=$(job "$j" "$( [ $b = old ] && echo "$old" || echo "$new")")
    echo "$j $a $ta" >> "$work/times"; echo "$j $b $tb" >> "$work/times"
  done
done
python3 - "$work/times" $jobs <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("| job | old s (median) | new s (median) | new / old per round (median, range) |")
print("|---|---|---|---|")
for j in sys.argv[2:]:
    old = [float(t) for n, w, t in rows if n == j and w == "old"]
    new = [float(t) for n, w, t in rows if n == j and w == "new"]
    r = [b / a for a, b in zip(old, new)]
    print(f"| {j} | {statistics.median(old):.2f} | {statistics.median(new):.2f} | "
          f"{statistics.median(r):.3f} ({min(r):.3f}-{max(r):.3f}) |")
PY
