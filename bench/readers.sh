#!/usr/bin/env bash
# The ItemReader alone, at size: a JSON array, a local-bucket listing and a Parquet
# file drained by crates/mapio/examples/read_items.rs; time to the first items, total
# time and peak RSS. Baselines in the same run: the same example built from BASE (the
# reader before streaming; default: the merge base with main), and pyarrow reading the
# Parquet file row by row.
# Usage: bench/readers.sh [json-items] [objects] [parquet-rows]   (defaults 3000000 200000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N_JSON=${1:-3000000}
N_OBJ=${2:-200000}
N_PQ=${3:-1000000}
BASE=${BASE:-$(git merge-base HEAD main)}
TARGET=$(realpath "${CARGO_TARGET_DIR:-target}")
# CARGO="flock LOCK cargo" on a shared machine.
CARGO=${CARGO:-cargo}
PY=${SHOAL_TEST_PYTHON:-target/lambda-venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; git worktree remove --force "$WORK-base" 2>/dev/null || true' EXIT
mkdir -p "$WORK/buckets/b"

$CARGO build --release -q -p shoal-mapio --features parquet --example read_items
cp "$TARGET/release/examples/read_items" "$WORK/new"
# The baseline: BASE's mapio with this example (it uses only `items::read`).
git worktree add -q --detach "$WORK-base" "$BASE"
cp crates/mapio/examples/read_items.rs "$WORK-base/crates/mapio/examples/" 2>/dev/null \
  || { mkdir -p "$WORK-base/crates/mapio/examples" && cp crates/mapio/examples/read_items.rs "$WORK-base/crates/mapio/examples/"; }
# Same target folder: the third-party crates are built once.
(cd "$WORK-base" && CARGO_TARGET_DIR="$TARGET" $CARGO build --release -q -p shoal-mapio --example read_items)
cp "$TARGET/release/examples/read_items" "$WORK/base"

python3 - "$WORK/buckets/b" "$N_JSON" "$N_OBJ" <<'PY'
import os, sys
root, n_json, n_obj = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(os.path.join(root, "items.json"), "w") as f:
    f.write("[")
    for i in range(n_json):
        f.write(('' if i == 0 else ',') + '{"id":%d,"name":"item-%d","score":%d}' % (i, i, i % 100))
    f.write("]")
# Folders of 1,000 objects, names that sort differently as paths and as keys.
for i in range(n_obj):
    d = os.path.join(root, "objs", "d%d" % (i // 1000), "x" if i % 2 else "x-")
    if i % 1000 < 2:
        os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "o%d" % i), "w").close()
PY
if "$PY" -c "import pyarrow" 2>/dev/null; then
  "$PY" - "$WORK/buckets/b/rows.parquet" "$N_PQ" <<'PY'
import sys, pyarrow as pa, pyarrow.parquet as pq
n = int(sys.argv[2])
pq.write_table(pa.table({"id": pa.array(range(n), pa.int64()),
                         "name": pa.array([f"item-{i}" for i in range(n)]),
                         "score": pa.array([i % 100 * 0.5 for i in range(n)])}),
               sys.argv[1], row_group_size=100_000)
PY
fi
ls -l "$WORK/buckets/b/items.json" | awk '{printf "items.json: %.0f MB\n", $5/1e6}'

run() { # label, binary, args...
  local label=$1; shift
  local out
  out=$(/usr/bin/time -f "rss_kb=%M" "$@" 2>&1) || { echo "$label: failed: $out"; return; }
  echo "$label: $(echo "$out" | tr '\n' ' ')"
}
run "json new " "$WORK/new" "$WORK/buckets" b json items.json
run "json base" "$WORK/base" "$WORK/buckets" b json items.json
run "list new " "$WORK/new" "$WORK/buckets" b list objs/
run "list base" "$WORK/base" "$WORK/buckets" b list objs/
if [ -f "$WORK/buckets/b/rows.parquet" ]; then
  run "parquet new" "$WORK/new" "$WORK/buckets" b parquet rows.parquet
  run "parquet pyarrow" "$PY" -c '
import sys, time, pyarrow.parquet as pq
t = time.time(); n = 0
for b in pq.ParquetFile(sys.argv[1]).iter_batches(batch_size=1024):
    n += len(b.to_pylist())
print("items=%d total_s=%.2f items_per_s=%.0f" % (n, time.time() - t, n / (time.time() - t)))
' "$WORK/buckets/b/rows.parquet"
fi
