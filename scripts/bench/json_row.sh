#!/usr/bin/env bash
# Profile single-row JSON MNIST predictions on one release node (wrk, 1 connection).
set -euo pipefail
MASS=${MASS:-${CARGO_TARGET_DIR:-$HOME/.cache/mass-target}/release/mass}
DATA=${DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
dir=/tmp/prof1; rm -rf $dir; mkdir -p $dir
printf '[hardware]\nprobe_gpus = false\ngemm_size = 64\n' > "$dir/c.toml"
$MASS node start --data-dir $dir/n0 --listen /ip4/127.0.0.1/tcp/47400 --http 127.0.0.1:47480 --no-mdns --config $dir/c.toml > $dir/n0.log 2>&1 &
pid=$!
trap "kill $pid 2>/dev/null; wait" EXIT
export MASS_NODE=http://127.0.0.1:47480
for _ in $(seq 100); do $MASS status >/dev/null 2>&1 && break; sleep 0.2; done
$MASS data put $DATA/mnist.csv.gz --name mnist --label label --test-rows $DATA/mnist.test_rows.txt --shard-rows 10000 >/dev/null
$MASS train --dataset mnist --name mnist --model softmax --epochs 3 > $dir/train.out 2>&1
row=$(python3 -c "
import csv,gzip; r=csv.reader(gzip.open('$DATA/mnist.csv.gz','rt')); h=next(r); x=next(r); i=h.index('label'); print('[' + ','.join(v for j,v in enumerate(x) if j!=i) + ']')")
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' "'{\"rows\": [$row]}'" > $dir/post.lua
curl -s -H 'content-type: application/json' -d "{\"rows\": [$row]}" $MASS_NODE/v1/models/mnist/predict | head -c 200; echo
wrk -t1 -c1 -d5s --latency -s $dir/post.lua $MASS_NODE/v1/models/mnist/predict | grep -E "50%|99%|Requests/sec"
perf record -F 2999 -g -o $dir/perf.data -p $pid 2>/dev/null & perfpid=$!
wrk -t1 -c1 -d5s --latency -s $dir/post.lua $MASS_NODE/v1/models/mnist/predict | grep -E "50%|99%|Requests/sec"
kill -INT $perfpid; wait $perfpid || true
perf report -i $dir/perf.data --no-children --sort symbol -g none 2>/dev/null | grep -v "^#" | grep "%" | cut -c1-150 | head -45
