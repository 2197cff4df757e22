#!/usr/bin/env bash
# What the state store costs a map run: the Distributed Map benchmark (JSONL items
# through a Pass processor, batched and unbatched, with a ResultWriter) run with the
# store on (--state-dir) and off (--ephemeral), alternated, REPS times each; medians.
#   bench/store.sh [ITEMS] [REPS]      (default 1000000 5; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
shoal=$PWD/target/release/shoal
n=${1:-1000000}
reps=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen_jsonl.py "$work" "$n"
echo "| items | run | store off s (median) | store on s (median) | on / off |"
echo "|---|---|---|---|---|"
for def in dm-batched dm-unbatched; do
  off=(); on=()
  for r in $(seq "$reps"); do
    for mode in off on; do
      rm -rf "$work/results"/* "$work/state"
      if [ "$mode" = off ]; then flag=(--ephemeral); else flag=(--state-dir "$work/state"); fi
      s=$( { /usr/bin/time -f "%e" "$shoal" run "bench/$def.asl.json" --buckets "$work" --json "${flag[@]}" >"$work/out.json"; } 2>&1 | tail -1)
      grep -q '"SUCCEEDED"' "$work/out.json" || { cat "$work/out.json"; exit 1; }
      if [ "$mode" = off ]; then off+=("$s"); else on+=("$s"); fi
    done
  done
  python3 -c "
import statistics,sys
off=[float(x) for x in '${off[*]}'.split()]; on=[float(x) for x in '${on[*]}'.split()]
a=statistics.median(off); b=statistics.median(on)
print(f'| {$n:,} | $def | {a:.2f} | {b:.2f} | {b/a:.3f} |')"
done
