#!/usr/bin/env bash
# Install what the tests need into .venv and run the test suite.
# Real-data tests read GPTJAX_DATA_DIR (tinyshakespeare/, fsdd/) and skip without it.
# Arguments go to pytest (e.g. -m "not slow", -k sharding).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv  # absent, or left half-made by an interrupted run
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-test.txt
# interop tests compare against Hugging Face transformers (CPU torch); they skip if this is absent
.venv/bin/python -m pip install -q -r requirements-interop.txt || echo "warning: interop extras not installed; those tests will skip"
exec .venv/bin/python -m pytest "$@"
