#!/usr/bin/env bash
# Profile single-row JSON MNIST predictions on one release node (wrk, 1 connection).
set -euo pipefail
source "$(dirname "$0")/common.sh"
start_nodes /tmp/prof1 1 474
mnist_softmax
row=$(python3 -c "
import csv,gzip; r=csv.reader(gzip.open('$DATA/mnist.csv.gz','rt')); h=next(r); x=next(r); i=h.index('label'); print('[' + ','.join(v for j,v in enumerate(x) if j!=i) + ']')")
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' "'{\"rows\": [$row]}'" > $dir/post.lua
curl -s -H 'content-type: application/json' -d "{\"rows\": [$row]}" $MASS_NODE/v1/models/mnist/predict | head -c 200; echo
wrk -t1 -c1 -d5s --latency -s $dir/post.lua $MASS_NODE/v1/models/mnist/predict | grep -E "50%|99%|Requests/sec"
perf record -F 2999 -g -o $dir/perf.data -p $pid 2>/dev/null & perfpid=$!
wrk -t1 -c1 -d5s --latency -s $dir/post.lua $MASS_NODE/v1/models/mnist/predict | grep -E "50%|99%|Requests/sec"
kill -INT $perfpid; wait $perfpid || true
perf report -i $dir/perf.data --no-children --sort symbol -g none 2>/dev/null | grep -v "^#" | grep "%" | cut -c1-150 | head -45
