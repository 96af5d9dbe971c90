#!/usr/bin/env bash
# Single-row predict through a forwarding node: wrk at 1 connection, perf on both nodes.
# D=seconds per wrk run (8); PERF=1 records both nodes under perf; METRICS=1 prints their predict metrics.
set -euo pipefail
source "$(dirname "$0")/common.sh"
start_nodes /tmp/fwd 2 473 '[serving]\nreplicas = 1\nhot_after = 1000000000\n'
sleep 3
$MASS data put $DATA/digits.csv --name digits --label label >/dev/null
$MASS train --dataset digits --name digits --model linear > $dir/train.out 2>&1; tail -1 $dir/train.out
row=$(python3 -c "
import csv; r=csv.reader(open('$DATA/digits.csv')); h=next(r); x=next(r); i=h.index('label'); print([float(v) for j,v in enumerate(x) if j!=i])")
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = %s\n' "'{\"rows\": [$row]}'" > $dir/post.lua
for i in 0 1; do curl -s -H 'content-type: application/json' -d "{\"rows\": [$row]}" http://127.0.0.1:4738$i/v1/models/digits/predict | python3 -c "import json,sys; print($i, json.load(sys.stdin)['served_by'])"; done
for i in 0 1; do curl -s http://127.0.0.1:4738$i/v1/status | python3 -c "import json,sys; d=json.load(sys.stdin); print($i, d.get('peer_id'))"; done
for i in 0 1; do echo "== node $i"; wrk -t1 -c1 -d${D:-8}s --latency -s $dir/post.lua http://127.0.0.1:4738$i/v1/models/digits/predict | grep -E "50%|99%|Requests/sec"; done
holder=$(curl -s -H 'content-type: application/json' -d "{\"rows\": [$row]}" http://127.0.0.1:47380/v1/models/digits/predict | python3 -c "import json,sys; print(json.load(sys.stdin)['served_by'])")
if grep -q "local_peer_id=$holder" $dir/n0.log; then FWD=1; else FWD=0; fi
echo "forwarder: node $FWD"
if [ -n "${PERF:-}" ]; then
  perf record -F 1999 -g -o $dir/p0.data -p ${pids[0]} 2>/dev/null & a=$!
  perf record -F 1999 -g -o $dir/p1.data -p ${pids[1]} 2>/dev/null & b=$!
  wrk -t1 -c1 -d8s --latency -s $dir/post.lua http://127.0.0.1:4738$FWD/v1/models/digits/predict | grep -E "50%|99%|Requests/sec"
  kill -INT $a $b; wait $a $b || true
fi
if [ -n "${METRICS:-}" ]; then
  for i in 0 1; do echo "== metrics node $i"; curl -s http://127.0.0.1:4738$i/metrics | grep -E "_sum|_count" | grep -v "^#" | grep -E "predict|inference|batch|http_request_duration_seconds_(sum|count)\{method=\"POST\"" | head -20; done
fi
