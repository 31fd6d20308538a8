#!/usr/bin/env bash
# The main job, from a fresh clone: install into .venv, prepare tiny Shakespeare,
# train experiments/shakespeare_char_cpu.py on the CPU, and print samples.
# Extra arguments go to scripts/train.py (e.g. --set train.steps=500).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python scripts/prepare_data.py --dataset tinyshakespeare
exec .venv/bin/python scripts/train.py experiments/shakespeare_char_cpu.py \
  --workdir "${WORKDIR:-runs/shakespeare_char_cpu}" "$@"
