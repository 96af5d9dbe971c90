# What the bench scripts share; sourced, not run.
# MASS: the release binary; DATA: ../shared/datasets.
MASS=${MASS:-${CARGO_TARGET_DIR:-$HOME/.cache/mass-target}/release/mass}
DATA=${DATA:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared/datasets}

# start_nodes DIR N BASE [CONFIG LINES]: a fresh DIR, N nodes listening on
# tcp/BASE0i and http BASE8i (the later ones bootstrapped from the first),
# stopped when the script exits; pids holds them, pid the first, and
# MASS_NODE names the first, which is up when this returns.
start_nodes() {
  dir=$1; rm -rf "$dir"; mkdir -p "$dir"
  printf '[hardware]\nprobe_gpus = false\ngemm_size = 64\n%b' "${4:-}" > "$dir/c.toml"
  pids=()
  for i in $(seq 0 $(($2 - 1))); do
    boot=(); [ "$i" -gt 0 ] && { sleep 1; boot=(--bootstrap "/ip4/127.0.0.1/tcp/${3}00"); }
    RUST_LOG=${RUST_LOG:-info} "$MASS" node start --data-dir "$dir/n$i" --listen "/ip4/127.0.0.1/tcp/${3}0$i" \
      --http "127.0.0.1:${3}8$i" --no-mdns --config "$dir/c.toml" "${boot[@]}" > "$dir/n$i.log" 2>&1 & pids+=($!)
  done
  pid=${pids[0]}
  trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
  export MASS_NODE=http://127.0.0.1:${3}80
  for _ in $(seq 100); do "$MASS" status >/dev/null 2>&1 && break; sleep 0.2; done
}

# mnist_softmax: MNIST ingested in 10,000-row shards and a softmax model
# named mnist trained on it (3 epochs).
mnist_softmax() {
  "$MASS" data put "$DATA/mnist.csv.gz" --name mnist --label label --test-rows "$DATA/mnist.test_rows.txt" --shard-rows 10000 >/dev/null
  "$MASS" train --dataset mnist --name mnist --model softmax --epochs 3 > "$dir/train.out" 2>&1
}
