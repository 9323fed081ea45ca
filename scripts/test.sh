#!/usr/bin/env bash
# Set up, then check everything: ruff, mypy and the whole test suite on real SoftHSM2 tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
