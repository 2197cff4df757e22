#!/usr/bin/env bash
# Fleet mode against the local pool, on one machine, in one run: items/s of
#   - the Pass-only map (bench/dm-batched: JSONL items, 100 per child, ResultWriter), and
#   - the seed demo (its definition, the resize Lambda process, batches of 100),
# through the local pool and through NATS JetStream with 1, 2 and 4 `shoal worker`s.
# Each row is the median of REPS runs; runs of one workload alternate between setups.
#   bench/fleet.sh PHOTO_DIR [ITEMS] [REPS]   (default 200000 3; nats-server from
#   target/lambda-venv, as scripts/test.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/.."
photos="$(cd "$1" && pwd)"; n=${2:-200000}; reps=${3:-3}
shoal=$PWD/target/release/shoal
nats_server=${NATS_SERVER:-$PWD/target/lambda-venv/bin/nats-server}
cargo build --release -q -p shoal-cli -p shoal-resize --features shoal-cli/resize
work=$(mktemp -d -p "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$nats_server" -js -a 127.0.0.1 -p "$port" -sd "$work/js" >/dev/null 2>&1 & pids+=($!)
url=nats://127.0.0.1:$port
python3 bench/gen_jsonl.py "$work/b" "$n" >/dev/null
mkdir -p "$work/b/photos"; cp -r "$photos" "$work/b/photos/images"
photos_n=$(ls "$photos" | wc -l)
# Seed demo's config, with the path to the function made absolute.
sed "s#\"../../target/release/shoal-resize\"#\"$PWD/target/release/shoal-resize\"#" \
  examples/resize-photos/shoal.toml > "$work/shoal.toml"

# Starts K workers; prints their pids.
workers() {
  local k=$1 w=()
  for _ in $(seq "$k"); do
    "$shoal" worker --nats "$url" --buckets "$work/b" --config "$work/shoal.toml" --concurrency 8 \
      >/dev/null 2>&1 & w+=($!)
  done
  # Until all have announced themselves.
  until [ "$("$shoal" workers --json --nats "$url" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -ge "$k" ]; do sleep 0.1; done
  echo "${w[*]}"
}

# One timed run: setup (local or a worker count) and workload; prints seconds.
run_once() {
  local setup=$1 what=$2 nats=() w=""
  if [ "$setup" != local ]; then w=$(workers "$setup"); nats=(--nats "$url"); fi
  rm -rf "$work/b/results" "$work/b/thumbnails"; mkdir -p "$work/b/results" "$work/b/thumbnails"
  local args
  if [ "$what" = pass ]; then
    args=(bench/dm-batched.asl.json --input '{}')
  else
    args=(examples/resize-photos/state-machine.asl.json --input @examples/resize-photos/input.json)
  fi
  local t0 t1
  t0=$(date +%s.%N)
  "$shoal" run "${args[@]}" --ephemeral --json --buckets "$work/b" --config "$work/shoal.toml" "${nats[@]}" \
    >"$work/out.json" 2>"$work/err.txt"
  t1=$(date +%s.%N)
  grep -q '"SUCCEEDED"' "$work/out.json" || { cat "$work/out.json" "$work/err.txt" >&2; exit 1; }
  if [ "$what" = resize ]; then test "$(ls "$work/b/thumbnails/images" | wc -l)" = "$photos_n"; fi
  # shellcheck disable=SC2086
  [ -n "$w" ] && { kill $w; wait $w 2>/dev/null || true; }
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "| workload | items | setup | seconds (median of $reps) | items/s | vs local pool | time per batch of 100 |"
echo "|---|---|---|---|---|---|---|"
for what in pass resize; do
  items=$n; [ "$what" = resize ] && items=$photos_n
  declare -A times=()
  for r in $(seq "$reps"); do
    for setup in local 1 2 4; do
      times[$setup]="${times[$setup]:-} $(run_once "$setup" "$what")"
    done
  done
  base=$(python3 -c "import statistics; print(statistics.median([float(x) for x in '${times[local]}'.split()]))")
  for setup in local 1 2 4; do
    label="local pool"; [ "$setup" != local ] && label="NATS, $setup worker(s)"
    python3 -c "
import statistics
s = statistics.median([float(x) for x in '${times[$setup]}'.split()])
b = $base; items = $items
print(f'| {\"$what\"} | {items:,} | $label | {s:.2f} | {items/s:,.0f} | {s/b:.3f} | {s*1000/(items/100):.1f} ms |')"
  done
  unset times
done
