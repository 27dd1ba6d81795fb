#!/usr/bin/env bash
# Create .venv with everything qvla_ros needs; idempotent and quick when already done.
# Usage: scripts/setup.sh   (called by `make setup`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.qvla-setup-stamp
APT_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 cmake ninja-build"

quiet_pip() {  # pip's notices about unreadable local index folders are noise here
  "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}

missing=()
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing apt packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing apt packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

want=$(cat setup.py constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  start=$(date +%s)
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # torch first, from the pinned CPU wheel; the constraints file then keeps it in place.
  quiet_pip install -q "$(grep '^torch==' constraints.txt)"
  quiet_pip install -q -c constraints.txt -e '.[ros,sim,test,distributed]'
  echo "$want" > "$STAMP"
  echo "setup: python environment ready in $(( $(date +%s) - start )) s ($(du -sh $VENV | cut -f1))"
fi
# Compile the CPU kernels now (about a minute, once) rather than in the first node or test.
"$VENV/bin/python" -c "from qvla_ros.kernels import cpu_ext; cpu_ext.load(); \
print('setup: CPU kernels', cpu_ext.status())" | grep -v ' ok$' || true
"$VENV/bin/qvla-ros" build-interfaces
"$VENV/bin/qvla-ros" register-source-tree >/dev/null
