#!/usr/bin/env bash
# Create/update .venv with every optional group, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=deep,bench,dev bash scripts/setup.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MUJOCO_GL="${MUJOCO_GL:-disabled}"
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" "$@"
