#!/usr/bin/env bash
# DP SQL on Apache Ballista: the DP query against the same plain query, on a scheduler and two
# executors started here as separate processes on loopback, over generated Parquet partitions
# (not committed; generated once under $DATA and reused).
#
#   bash bench/dp_ballista.sh                # 10^8 rows, release build
#   ROWS=10000000 PROFILE=dev bash bench/dp_ballista.sh
#   BIN_DIR=target/debug bash bench/dp_ballista.sh --sql "…" --delta 1e-6   # built already
#
# Prints the plain query's time, the first DP query's (it proves the contribution bound with
# one scan, cached per file version), the DP query's afterwards, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${ROWS:-100000000}"
PROFILE="${PROFILE:-release}"
DATA="${DATA:-${TMPDIR:-/tmp}/veil-ballista-persons-$ROWS}"
PORT="${PORT:-50150}"

# BIN_DIR: use binaries already built there (veil-ballista and examples/cluster_bench).
if [ -n "${BIN_DIR:-}" ]; then
  dir="$BIN_DIR"
else
  flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  cargo build "${flag[@]}" -p veil-dp-ballista --bins --examples
  dir="${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = release ] && echo release || echo debug)"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$dir/veil-ballista" scheduler --bind "127.0.0.1:$PORT" >"$work/scheduler.log" 2>&1 &
pids+=($!)
disown
sleep 2
for i in 0 1; do
  mkdir -p "$work/e$i"
  "$dir/veil-ballista" executor --scheduler "127.0.0.1:$PORT" \
    --flight-port $((PORT + 1 + 2 * i)) --grpc-port $((PORT + 2 + 2 * i)) \
    --vcores 1 --work-dir "$work/e$i" >"$work/executor-$i.log" 2>&1 &
  pids+=($!)
  disown
done
sleep 3

echo "machine: $(nproc) cores, $(uname -m); profile: $PROFILE; 2 executors with 1 task slot each"
"$dir/examples/cluster_bench" --url "ballista://127.0.0.1:$PORT" --data "$DATA" --rows "$ROWS" "$@"
