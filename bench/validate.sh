#!/usr/bin/env bash
# `shoal validate FILE` wall time per run (process start, read, parse, validate), on the
# seed demo's definition (2 KiB), on the hello example, and on a generated 1 MiB one
# (bench/gen_big_definition.py). Next to each: the floor of starting a process (`true`)
# and jq reading the same file (`jq empty`). Median and p95 of RUNS runs each.
#   bench/validate.sh [RUNS]   (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
cargo build --release -q -p shoal-cli
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python3 bench/gen_big_definition.py > "$work/big.json"
python3 - "$runs" "$PWD/target/release/shoal" examples/resize-photos/state-machine.asl.json \
  examples/hello/definition.json "$work/big.json" <<'PY'
import os, shutil, statistics, subprocess, sys, time
runs, shoal, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

def timed(cmd):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts.append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit(f"{cmd} exited with {r.returncode}")
    ts.sort()
    return f"{statistics.median(ts) * 1e3:.2f} | {ts[max(0, int(len(ts) * 0.95) - 1)] * 1e3:.2f}"

print(f"runs: {runs} each")
print("| definition | bytes | `shoal validate` median ms | p95 ms | `jq empty` median ms | p95 ms |")
print("|---|---|---|---|---|---|")
jq = shutil.which("jq")
for f in files:
    name = os.path.basename(f) if "big" not in f else "generated (gen_big_definition.py)"
    j = timed([jq, "empty", f]) if jq else "- | -"
    print(f"| {name} | {os.path.getsize(f):,} | {timed([shoal, 'validate', f])} | {j} |")
print(f"process floor (`true`): median | p95 ms = {timed(['true'])}")
PY
