#!/usr/bin/env bash
# Prints the path of a Python that has what tests/python needs (numpy,
# safetensors, onnxruntime for the export check; pytest and pandas for the
# Python client's tests; selenium to drive Debian's chromium for the
# dashboard test: small wheels, no PyTorch), making a venv for it if needed.
# Rerunnable; reuses the venv once it works.
#   MASS_PYTHON=/path/to/python   use that interpreter instead (checked, not changed)
#   MASS_PYTHON_ENV=DIR           where the venv lives (default: target/python-env of the repo)
# Fails with a message, never quietly, when the packages cannot be had
# (no network for pip, no python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(numpy safetensors onnxruntime pytest pandas selenium)
has_packages() { "$1" -c 'import numpy, safetensors, onnxruntime, pytest, pandas, selenium' 2>/dev/null; }

if [ -n "${MASS_PYTHON:-}" ]; then
    has_packages "$MASS_PYTHON" || {
        echo "python-env: MASS_PYTHON=$MASS_PYTHON lacks one of: ${PACKAGES[*]}" >&2
        exit 1
    }
    echo "$MASS_PYTHON"
    exit 0
fi

ENV_DIR="$(realpath -m "${MASS_PYTHON_ENV:-target/python-env}")"
PY="$ENV_DIR/bin/python"
# Tests ask at the same time (the export check, the Python client's): one
# makes the venv while the others wait for it, instead of racing in pip.
mkdir -p "$(dirname "$ENV_DIR")"
if command -v flock >/dev/null; then
    exec 9>"$ENV_DIR.lock"
    flock 9
fi
if [ -x "$PY" ] && has_packages "$PY"; then
    echo "$PY"
    exit 0
fi
command -v python3 >/dev/null || { echo "python-env: python3 is not installed" >&2; exit 1; }
echo "python-env: making a venv in $ENV_DIR with ${PACKAGES[*]}..." >&2
python3 -m venv "$ENV_DIR" >&2 || {
    echo "python-env: python3 -m venv failed (install python3-venv)" >&2
    exit 1
}
"$PY" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2 || {
    echo "python-env: pip could not install ${PACKAGES[*]} (no network?); set MASS_PYTHON to a python that has them" >&2
    exit 1
}
has_packages "$PY" || { echo "python-env: the venv in $ENV_DIR still lacks ${PACKAGES[*]}" >&2; exit 1; }
echo "$PY"
