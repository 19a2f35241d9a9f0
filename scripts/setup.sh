#!/usr/bin/env bash
# Create or update the virtual environment .venv with the tested, locked versions (constraints.txt).
# EXTRAS selects optional dependency groups (default: none beyond the core). With the deep extra, and as root on a
# Debian machine, it also installs libosmesa6: MuJoCo's software OpenGL, for `parl eval --video`.
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
case ",${EXTRAS:-}," in
  *,deep,*)
    if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get install -y -qq libosmesa6 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libosmesa6; }) \
          || echo "setup: could not install libosmesa6; parl eval --video needs it (or MUJOCO_GL=egl)" >&2
      else
        echo "setup: libosmesa6 is not installed (apt-get install libosmesa6); parl eval --video needs it" >&2
      fi
    fi
    ;;
esac
