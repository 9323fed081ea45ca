#!/usr/bin/env bash
# Set up, then run the embedded demo: SoftHSM2 tokens stand in for tax media, so no hardware
# token is needed. Safe to run again: the demo's tokens are rebuilt in .demo/ each time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec python -m demo "$@"
