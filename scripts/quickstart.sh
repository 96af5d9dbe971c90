#!/usr/bin/env bash
# The main job: builds Mass and runs the quickstart on a local mesh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "Building mass (the first build compiles RocksDB and takes several minutes)..." >&2
cargo build --quiet -p mass-node --bin mass -p mass-examples --example quickstart
target_dir="${CARGO_TARGET_DIR:-target}"
MASS_BIN="$target_dir/debug/mass" exec "$target_dir/debug/examples/quickstart" "$@"
