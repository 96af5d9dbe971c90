#!/usr/bin/env bash
# The whole test suite: unit, property, simulation and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Benches are timed tables, not tests: `cargo bench` runs them.
cargo test --workspace --lib --bins --tests --examples "$@"
cargo test --workspace --doc
