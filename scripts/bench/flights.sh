#!/usr/bin/env bash
# Every compressed variant of an MLP and of a GBDT on flights, on a 3-node
# release mesh: `mass models show` lists size, accuracy and latency side by side.
set -euo pipefail
MASS=${MASS:-${CARGO_TARGET_DIR:-$HOME/.cache/mass-target}/release/mass}
DATA=${DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
dir=$(mktemp -d /tmp/flights-XXXX); pids=()
printf '[hardware]\nprobe_gpus = false\ngemm_size = 64\n' > "$dir/c.toml"
for i in 0 1 2; do
  boot=(); [ $i -gt 0 ] && boot=(--bootstrap /ip4/127.0.0.1/tcp/47200)
  "$MASS" node start --data-dir "$dir/n$i" --listen /ip4/127.0.0.1/tcp/4720$i --http 127.0.0.1:4728$i --no-mdns --config "$dir/c.toml" "${boot[@]}" > "$dir/n$i.log" 2>&1 & pids+=($!)
  sleep 1
done
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$dir"' EXIT
export MASS_NODE=http://127.0.0.1:47280
for _ in $(seq 100); do "$MASS" status >/dev/null 2>&1 && break; sleep 0.2; done
sleep 3
# Without the tail number: one-hot encoding its ~4,000 values makes an MLP
# job of about 41 GiB on one trainer, which the mesh refuses (trees read it
# as an ordinal code and would not need this). `dest` is declared
# categorical for nodes built before inference took repeated words as categories.
zcat "$DATA/flights.csv.gz" | cut -d, -f1-8,10- | gzip -1 > "$dir/flights.csv.gz"
"$MASS" data put "$dir/flights.csv.gz" --name flights --type dest=categorical --label label --test-rows "$DATA/flights.test_rows.txt" >/dev/null
time "$MASS" train --dataset flights --name fl-mlp --model mlp:64 --epochs 10
"$MASS" models compress fl-mlp --quantize int8
"$MASS" models compress fl-mlp --version 1 --prune 0.8 --fine-tune-epochs 2
time "$MASS" train --dataset flights --name fl-gbdt --model gbdt --trees 300 --leaves 31
time "$MASS" models compress fl-gbdt --distill mlp:64
time "$MASS" train --dataset flights --name fl-bag --model mlp:64 --ensemble bagging:8 --epochs 10
time "$MASS" models compress fl-bag --distill mlp:64
for m in fl-mlp fl-gbdt fl-bag; do echo "== $m"; "$MASS" models show "$m"; done
