#!/usr/bin/env bash
# The same lambda_runtime function (functions/testfn, echo) invoked over Lambda's Invoke
# API, behind `shoal serve` and behind `cargo lambda watch` (pip install cargo-lambda),
# alternated in one run: N invocations over C keep-alive connections each, for C in
# 1 4 16. Both serve 4 function processes at most (bench/invoke/shoal.toml).
#   bench/invoke/compare.sh [N]     (default 20000; cargo-lambda on PATH)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20000}
cargo build --release -q -p shoal-cli -p shoal-testfn --example invoke_load
free() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
work=$(mktemp -d); pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; pkill -f "$PWD/target/release/shoal-testfn" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sp=$(free); cp=$(free)
(cd bench/invoke && exec ../../target/release/shoal serve --listen "127.0.0.1:$sp" --state-dir "$work/state" --config shoal.toml) \
  >"$work/serve.log" 2>&1 & pids+=($!)
(cd functions/testfn && exec cargo lambda watch --release -A 127.0.0.1 -P "$cp" --concurrency 4) >"$work/cl.log" 2>&1 & pids+=($!)
shoal_url=http://127.0.0.1:$sp/2015-03-31/functions/testfn/invocations
cl_url=http://127.0.0.1:$cp/2015-03-31/functions/shoal-testfn/invocations
# Warm both (cargo lambda builds and starts the function on the first call).
until curl -sf -m 120 -X POST "$cl_url" -d '{}' >/dev/null; do sleep 0.5; done
until curl -sf -m 10 -X POST "$shoal_url" -d '{}' >/dev/null; do sleep 0.2; done
echo "| connections | shoal serve invocations/s | cargo lambda watch invocations/s | shoal / cargo-lambda |"
echo "|---|---|---|---|"
for c in 1 4 16; do
  a=$(target/release/examples/invoke_load "$shoal_url" "$n" "$c" | python3 -c "import json,sys; print(json.load(sys.stdin)['per_second'])")
  b=$(target/release/examples/invoke_load "$cl_url" "$n" "$c" | python3 -c "import json,sys; print(json.load(sys.stdin)['per_second'])")
  python3 -c "print(f'| $c | {$a:,.0f} | {$b:,.0f} | {$a/$b:.2f} |')"
done
