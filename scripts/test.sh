#!/usr/bin/env bash
# Install what the tests need into .venv and run the test suite.
# The end-to-end tests make their own small data; only the checks of figures on the real
# corpora read GPTJAX_DATA_DIR (tinyshakespeare/, fsdd/) and skip, saying so, without it.
# Arguments go to pytest (e.g. -m "not slow" for the quick suite, -k sharding).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
.venv/bin/python -m pip install -q -r requirements-test.txt
# the parity tests compare against Hugging Face transformers and CPU torch: part of the test install
if ! .venv/bin/python -m pip install -q -r requirements-interop.txt; then
  echo "error: could not install requirements-interop.txt (transformers, CPU torch), which the test suite" \
       "needs for the Hugging Face and PyTorch parity tests; on Linux without a GPU try" \
       "--extra-index-url https://download.pytorch.org/whl/cpu" >&2
  exit 1
fi
# lm-evaluation-harness: the adapter's tests run it offline on a local task
if ! .venv/bin/python -m pip install -q -r requirements-lm-eval.txt; then
  echo "error: could not install requirements-lm-eval.txt (lm-evaluation-harness), which the test suite" \
       "needs for the adapter's tests" >&2
  exit 1
fi
exec .venv/bin/python -m pytest "$@"
