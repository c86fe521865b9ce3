#!/usr/bin/env bash
# Installs dependencies if missing (as root) and builds dnnd, its tests and
# benchmarks into build/ (Release, portable x86-64-v2 baseline).
#   DNND_NATIVE=1 scripts/build.sh    # tune for this machine's CPU instead
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
native=OFF
[[ "${DNND_NATIVE:-0}" == 1 ]] && native=ON
if ! cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDNND_NATIVE="$native" > build.log 2>&1; then
  cat build.log
  exit 1
fi
# Full compiler output goes to build.log; the terminal gets errors only.
if ! cmake --build build -j"${DNND_JOBS:-2}" >> build.log 2>&1; then
  grep -E "error|Error" -A3 build.log | head -60
  echo "build failed; full log in build.log" >&2
  exit 1
fi
echo "built build/dnnd ($(file -b build/dnnd | cut -d, -f1-4))"
