#!/usr/bin/env bash
# Offline scoring of all 70,000 MNIST rows on N release nodes (N=1 by default), RUNS times (3);
# PERF=1 profiles the first node from the third run on (PERF_CALLS='--call-graph dwarf,16384'
# PERF_HZ=499 for whole call chains).
set -euo pipefail
source "$(dirname "$0")/common.sh"
start_nodes /tmp/scoreb "${N:-1}" 476
mnist_softmax
[ "${N:-1}" -gt 1 ] && sleep 5  # the shards' copies settle
# CPU ticks the nodes have used so far.
ticks() { for p in "${pids[@]}"; do awk '{print $14 + $15}' /proc/$p/stat; done | paste -sd+ | bc; }
runs=${RUNS:-3}
for run in $(seq $runs); do
  if [ "$run" = 3 ] && [ -n "${PERF:-}" ]; then perf record -F ${PERF_HZ:-2999} ${PERF_CALLS:--g} -o $dir/perf.data -p $pid 2>/dev/null & perfpid=$!; sleep 1; fi
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
