#!/usr/bin/env bash
# Offline scoring of all 70,000 MNIST rows on N release nodes (N=1 by default), RUNS times (3);
# PERF=1 profiles the first node from the third run on.
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
runs=${RUNS:-3}
for run in $(seq $runs); do
  if [ "$run" = 3 ] && [ -n "${PERF:-}" ]; then perf record -F 2999 -g -o $dir/perf.data -p $pid 2>/dev/null & perfpid=$!; sleep 1; fi
  ticks() { for p in "${pids[@]}"; do awk '{print $14 + $15}' /proc/$p/stat; done | paste -sd+ | bc; }
  cpu0=$(ticks); start=$(date +%s.%N)
  $MASS models batch mnist --dataset mnist > $dir/batch$run.out 2>&1
  end=$(date +%s.%N); cpu1=$(ticks)
  # The job's own time, from its driver's log: the CLI adds its start and its polling.
  job=$(grep -h "driving scoring job\|scoring job completed" $dir/n*.log | sort | tail -2 | python3 -c "
import sys, datetime
t = [datetime.datetime.fromisoformat(l.split()[0].rstrip('Z')) for l in sys.stdin]
print((t[1] - t[0]).total_seconds())")
  python3 -c "s=$end-$start; j=$job; c=($cpu1-$cpu0)/$(getconf CLK_TCK); print(f'run $run: 70000 rows in {s:.2f} s by the CLI ({70000/s:,.0f} rows/s), job {j:.3f} s ({70000/j:,.0f} rows/s), nodes busy {c:.2f} CPU s')"
done
if [ -n "${PERF:-}" ]; then
  kill -INT $perfpid; wait $perfpid || true
  perf report -i $dir/perf.data --no-children --sort symbol -g none 2>/dev/null | grep -v "^#" | grep "%" | cut -c1-150 | head -40
fi
