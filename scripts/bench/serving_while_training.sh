#!/usr/bin/env bash
# Single-row JSON MNIST predictions (wrk, C connections, DUR seconds) on one
# release node while a bagging job of 4 wide networks holds every general
# compute slot; the node keeps SERVING_SLOTS slots for predictions (default 1).
set -euo pipefail
source "$(dirname "$0")/common.sh"
start_nodes /tmp/busyserve 1 475 "[compute]\nserving_slots = ${SERVING_SLOTS:-1}\n"
mnist_softmax
row=$(python3 -c "
import csv,gzip; r=csv.reader(gzip.open('$DATA/mnist.csv.gz','rt')); h=next(r); x=next(r); i=h.index('label'); print('[' + ','.join(v for j,v in enumerate(x) if j!=i) + ']')")
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' "'{\"rows\": [$row]}'" > $dir/post.lua
"$MASS" train --dataset mnist --name long --model mlp:256 --ensemble bagging:4 --epochs 300 --patience 0 > $dir/long.out 2>&1 &
train=$!
trap 'kill $train "${pids[@]}" 2>/dev/null; wait' EXIT
running() { curl -s $MASS_NODE/metrics | grep 'mass_compute_tasks{kind="training",state="running"}' | awk '{print $2}'; }
for _ in $(seq 300); do [ "$(running)" = "$(nproc)" ] && break; sleep 0.1; done
echo "training tasks running: $(running)"
echo "serving_slots=${SERVING_SLOTS:-1} $(wrk -t1 -c${C:-1} -d${DUR:-6}s --latency -s $dir/post.lua $MASS_NODE/v1/models/mnist/predict | grep -E '50%|90%|99%|Requests/sec|Non-2xx' | awk '/Non-2xx/ {print "non-2xx:", $NF; next} {print $1, $2}' | paste -sd' ')"
echo "training tasks running: $(running)"
