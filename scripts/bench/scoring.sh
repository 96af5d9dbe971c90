#!/usr/bin/env bash
# Offline scoring of all 70,000 MNIST rows on N release nodes (N=1 by default), three times;
# PERF=1 profiles the first node during the third.
set -euo pipefail
MASS=${MASS:-${CARGO_TARGET_DIR:-$HOME/.cache/mass-target}/release/mass}
DATA=${DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
dir=/tmp/scoreb; rm -rf $dir; mkdir -p $dir
printf '[hardware]\nprobe_gpus = false\ngemm_size = 64\n' > "$dir/c.toml"
pids=()
for i in $(seq 0 $((${N:-1} - 1))); do
  boot=(); [ $i -gt 0 ] && boot=(--bootstrap /ip4/127.0.0.1/tcp/47600)
  RUST_LOG=${RUST_LOG:-info} $MASS node start --data-dir $dir/n$i --listen /ip4/127.0.0.1/tcp/4760$i --http 127.0.0.1:4768$i --no-mdns --config $dir/c.toml "${boot[@]}" > $dir/n$i.log 2>&1 & pids+=($!)
  sleep 1
done
pid=${pids[0]}
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
export MASS_NODE=http://127.0.0.1:47680
for _ in $(seq 100); do $MASS status >/dev/null 2>&1 && break; sleep 0.2; done
$MASS data put $DATA/mnist.csv.gz --name mnist --label label --test-rows $DATA/mnist.test_rows.txt --shard-rows 10000 >/dev/null
$MASS train --dataset mnist --name mnist --model softmax --epochs 3 > $dir/train.out 2>&1
[ "${N:-1}" -gt 1 ] && sleep 5  # the shards' copies settle
for run in 1 2 3; do
  if [ "$run" = 3 ] && [ -n "${PERF:-}" ]; then perf record -F 2999 -g -o $dir/perf.data -p $pid 2>/dev/null & perfpid=$!; fi
  start=$(date +%s.%N)
  $MASS models batch mnist --dataset mnist > $dir/batch$run.out 2>&1
  end=$(date +%s.%N)
  python3 -c "s=$end-$start; print(f'run $run: 70000 rows in {s:.2f} s, {70000/s:,.0f} rows/s')"
  grep -h "scoring job\|driving scoring" $dir/n*.log | sort | tail -2 | cut -c1-120
done
if [ -n "${PERF:-}" ]; then
  kill -INT $perfpid; wait $perfpid || true
  perf report -i $dir/perf.data --no-children --sort symbol -g none 2>/dev/null | grep -v "^#" | grep "%" | cut -c1-150 | head -40
fi
