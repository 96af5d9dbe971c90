#!/usr/bin/env bash
# The whole test suite: unit, property, simulation and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# With lavapipe installed there is always a Vulkan adapter: a GPU test that
# finds none is a broken driver setup, and fails instead of skipping.
if compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null; then
    export MASS_REQUIRE_GPU_TESTS="${MASS_REQUIRE_GPU_TESTS:-1}"
fi
# The export e2e test checks files in numpy and onnxruntime, the
# python_client one runs the Python client's pytest file against a live
# mesh, the dashboard test drives chromium with selenium: they use a venv
# made by scripts/python-env.sh (pip needs the network) or MASS_PYTHON, and
# fail, saying why, when neither is possible.
# Benches are timed tables, not tests: `cargo bench` runs them.
cargo test --workspace --lib --bins --tests --examples "$@"
cargo test --workspace --doc
