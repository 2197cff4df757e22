#!/usr/bin/env bash
# Distributed Map throughput and memory: JSONL items through a Pass processor, batched
# (100 per child) and unbatched, next to a baseline measured in the same run: Python
# parsing the same lines (json.loads per line), the least any reader of them must do.
#   bench/run.sh [SIZES...]     (default: 1000000 10000000; needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
shoal=target/release/shoal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| items | run | seconds | items/s | children/s | peak RSS MB | python parse baseline s | baseline s / shoal s |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${@:-1000000 10000000}"; do
  for size in $n; do
    rm -rf "$work"/*
    python3 bench/gen_jsonl.py "$work" "$size"
    base=$( { /usr/bin/time -f "%e" python3 -c "import json,sys
for l in open(sys.argv[1]): json.loads(l)" "$work/bench/items.jsonl" ; } 2>&1 | tail -1)
    for def in dm-batched dm-unbatched; do
      out=$( { /usr/bin/time -f "%e %M" "$shoal" run "bench/$def.asl.json" --buckets "$work" --json >"$work/out.json"; } 2>&1 | tail -1)
      grep -q '"SUCCEEDED"' "$work/out.json" || { cat "$work/out.json"; exit 1; }
      secs=${out% *}; rss=${out#* }
      per=$([ "$def" = dm-batched ] && echo 100 || echo 1)
      python3 -c "
s=$secs; n=$size; b=$base
print(f'| {n:,} | $def | {s:.2f} | {n/s:,.0f} | {n/$per/s:,.0f} | {$rss/1024:.0f} | {b:.2f} | {b/s:.2f} |')"
      rm -rf "$work/results"/*
    done
  done
done
