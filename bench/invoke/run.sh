#!/usr/bin/env bash
# 100,000 function invocations through a Distributed Map: the lambda_runtime test
# function as a process pool, then the identity builtin, in one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p shoal-cli -p shoal-testfn
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/buckets/results"
python3 -c "import json; json.dump(list(range(100000)), open('$work/items.json', 'w'))"
for v in proc builtin; do
  /usr/bin/time -f "$v: %e s, peak RSS %M KB" target/release/shoal run "bench/invoke/$v.asl.json" \
    --input "@$work/items.json" --buckets "$work/buckets" --config bench/invoke/shoal.toml --json >/dev/null
done
