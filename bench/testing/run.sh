#!/usr/bin/env bash
# 1,000 mocked cases of examples/testing's order workflow: `shoal test` against
# aws-local-stepfunctions (npm) running the same cases with local Task handlers, in
# one run, on this machine. Release build. Prints each tool's wall time, best of 5.
#   bench/testing/run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1000}
cargo build --release -q -p shoal-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp examples/testing/order.asl.json examples/testing/MockConfigFile.json "$work/"
# The example's six cases, repeated to N (each named apart).
target/lambda-venv/bin/python - "$n" "$work" <<'PY'
import sys, yaml
n, work = int(sys.argv[1]), sys.argv[2]
suite = yaml.safe_load(open("examples/testing/order.test.yaml"))
base = suite["cases"]
suite["cases"] = [dict(base[i % len(base)], name=f"{base[i % len(base)]['name']} #{i}") for i in range(n)]
yaml.safe_dump(suite, open(f"{work}/order.test.yaml", "w"))
PY
node_dir=target/bench-node
if [ ! -d "$node_dir/node_modules/aws-local-stepfunctions" ]; then
  npm install --silent --prefix "$node_dir" aws-local-stepfunctions@3.0.0
fi
cp bench/testing/peer.mjs "$node_dir/"
best() { sort -n | head -1; }
shoal_ms=$(for _ in 1 2 3 4 5; do
  s=$(date +%s%N); target/release/shoal test "$work/order.test.yaml" > "$work/out.txt"; e=$(date +%s%N)
  grep -q "^$n passed, 0 failed" "$work/out.txt" || { tail -3 "$work/out.txt" >&2; exit 1; }
  echo $(( (e - s) / 1000000 ))
done | best)
peer_ms=$(for _ in 1 2 3 4 5; do
  s=$(date +%s%N); node "$node_dir/peer.mjs" examples/testing/order.asl.json "$n" 2>/dev/null > "$work/peer.json"; e=$(date +%s%N)
  grep -q '"wrong":0' "$work/peer.json" || { cat "$work/peer.json" >&2; exit 1; }
  echo $(( (e - s) / 1000000 ))
done | best)
echo "cases: $n"
echo "shoal test:              ${shoal_ms} ms (process wall, best of 5)"
echo "aws-local-stepfunctions: ${peer_ms} ms (node process wall, best of 5; in-process $(sed 's/.*"ms":\([0-9.]*\).*/\1/' "$work/peer.json") ms)"
echo "ratio: $(python3 -c "print(f'{$peer_ms / max($shoal_ms, 1):.1f}x')")"
