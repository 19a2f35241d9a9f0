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
# Byte-compile at install time: with PYTHONDONTWRITEBYTECODE set, nothing is cached later and every process
# would recompile torch's Python modules (~6 s each).
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e "$spec"
