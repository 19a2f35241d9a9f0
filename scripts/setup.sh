#!/usr/bin/env bash
# Create or update the virtual environment .venv with the tested, locked versions (constraints.txt).
# EXTRAS selects optional dependency groups (default: none beyond the core).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
.venv/bin/python -m pip install -q --no-compile --disable-pip-version-check -c constraints.txt -e "$spec"
