#!/usr/bin/env bash
# 1,000-row MNIST batches as .npy bodies on one release node (wrk, 1 connection): rows/s, and a perf profile.
# DTYPE=u1 (default: a byte per pixel) or f4; ANSWER=json (default) or npy (Accept: application/x-npy);
# C=connections (1); PERF=1 records the node under perf.
set -euo pipefail
source "$(dirname "$0")/common.sh"
start_nodes /tmp/npyb 1 475
mnist_softmax
python3 - "$DATA/mnist.csv.gz" "$dir/batch.npy" "${DTYPE:-u1}" <<'PY'
import csv, gzip, struct, sys
src, out, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
r = csv.reader(gzip.open(src, 'rt')); h = next(r); li = h.index('label')
rows = [[int(v) for j, v in enumerate(x) if j != li] for _, x in zip(range(1000), r)]
header = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % ('|u1' if dtype == 'u1' else '<f4', len(rows), len(rows[0]))
header += ' ' * ((64 - (10 + len(header) + 1) % 64) % 64) + '\n'
body = b''.join(bytes(x) if dtype == 'u1' else struct.pack('<%df' % len(x), *x) for x in rows)
open(out, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(header)) + header.encode() + body)
PY
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/x-npy"\n%blocal f = io.open("%s", "rb")\nwrk.body = f:read("*all")\nf:close()\n' "$([ "${ANSWER:-json}" = npy ] && echo 'wrk.headers["Accept"] = "application/x-npy"\n')" "$dir/batch.npy" > $dir/post.lua
curl -s -H 'content-type: application/x-npy' --data-binary @$dir/batch.npy $MASS_NODE/v1/models/mnist/predict | head -c 150 || true; echo
run() { wrk -t1 -c${C:-1} -d${D:-8}s --latency -s $dir/post.lua $MASS_NODE/v1/models/mnist/predict | grep -E "50%|99%|Requests/sec" | tee $dir/wrk.txt
  awk '/Requests\/sec/ {printf "rows/s: %.0f\n", $2 * 1000}' $dir/wrk.txt; }
run
if [ -n "${PERF:-}" ]; then
  perf record -F 2999 -g -o $dir/perf.data -p $pid 2>$dir/perf.err & perfpid=$!
  run
  kill -INT $perfpid; wait $perfpid || true
  perf report -i $dir/perf.data --no-children --sort symbol -g none 2>/dev/null | grep -v "^#" | grep "%" | cut -c1-150 | head -45
fi
