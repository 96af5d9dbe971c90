#!/usr/bin/env bash
# Bagging of 8 softmax regressions over MNIST (10 shards), 40 epochs:
# wall time on 1 node pinned to core 0 vs 2 nodes pinned to cores 0 and 1
# (JOBS=n runs n jobs on the same nodes and times each; EXTRA_CONFIG adds
# lines to the nodes' config).
set -euo pipefail
MASS=${MASS:-${CARGO_TARGET_DIR:-$HOME/.cache/mass-target}/release/mass}
DATA=${DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
# The nodes of the run under way, stopped however the script ends.
dir=""; pids=()
stop() { [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true; wait || true; [ -n "$dir" ] && rm -rf "$dir"; pids=(); dir=""; }
trap stop EXIT
run() { # $1 = nodes
  dir=$(mktemp -d /tmp/bag-XXXX)
  printf '[hardware]\nprobe_gpus = false\ngemm_size = 64\n%b' "${EXTRA_CONFIG:-}" > "$dir/c.toml"
  taskset -c 0 "$MASS" node start --data-dir "$dir/n0" --listen /ip4/127.0.0.1/tcp/47100 --http 127.0.0.1:47180 --no-mdns --config "$dir/c.toml" > "$dir/n0.log" 2>&1 & pids+=($!)
  if [ "$1" = 2 ]; then
    sleep 1
    taskset -c 1 "$MASS" node start --data-dir "$dir/n1" --listen /ip4/127.0.0.1/tcp/47101 --http 127.0.0.1:47181 --no-mdns --config "$dir/c.toml" --bootstrap /ip4/127.0.0.1/tcp/47100 > "$dir/n1.log" 2>&1 & pids+=($!)
  fi
  export MASS_NODE=http://127.0.0.1:47180
  for _ in $(seq 100); do "$MASS" status >/dev/null 2>&1 && break; sleep 0.2; done
  sleep 3
  "$MASS" data put "$DATA/mnist.csv.gz" --name mnist --label label --test-rows "$DATA/mnist.test_rows.txt" --shard-rows 7000 >/dev/null
  sleep "${SETTLE:-4}"  # the shards' copies to the second node finish before the job (SETTLE=s)
  local t0; t0=$(date +%s.%N)
  "$MASS" train --dataset mnist --name bag --model softmax --ensemble bagging:8 --epochs 40 > "$dir/train.out" 2>&1
  local t1; t1=$(date +%s.%N)
  echo "nodes=$1 wall=$(echo "$t1 - $t0" | bc) s $(grep -i accuracy "$dir/train.out" | tail -1)"
  # Later jobs on the same nodes (JOBS=n): the first pays for memory the nodes never touched.
  for job in $(seq 2 "${JOBS:-1}"); do
    local s0 s1; s0=$(date +%s.%N)
    "$MASS" train --dataset mnist --name "bag$job" --model softmax --ensemble bagging:8 --epochs 40 > "$dir/train$job.out" 2>&1
    s1=$(date +%s.%N)
    echo "nodes=$1 job=$job wall=$(echo "$s1 - $s0" | bc) s $(grep -i accuracy "$dir/train$job.out" | tail -1)"
  done
  # Where the time outside the job went: the CLI's start and end, the job's submission, drive and end.
  [ -n "${TIMELINE:-}" ] && { echo "  cli start $(date -u -d @$t0 +%T.%N)  cli end $(date -u -d @$t1 +%T.%N)"; grep -h "job submitted\|driving job\|job completed" "$dir"/n*.log | cut -c12-27,50-80 | sort | sed 's/^/  /'; }
  # Where the driver's time went, step by step (KEEP_LOGS=dir keeps the logs).
  grep -h "step done" "$dir"/n*.log | sed 's/.*step="\?\([^"]*\)"\? ms=\([0-9]*\).*/  \1: \2 ms/' || true
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$dir"/n*.log "$KEEP_LOGS/" 2>/dev/null && mv "$KEEP_LOGS"/n0.log "$KEEP_LOGS/n0-$1.log" && { [ ! -f "$KEEP_LOGS/n1.log" ] || mv "$KEEP_LOGS/n1.log" "$KEEP_LOGS/n1-$1.log"; }
  stop
}
for n in ${RUN_NODES:-1 2 1 2}; do run "$n"; done
