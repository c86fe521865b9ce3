#!/usr/bin/env bash
# Installs dependencies if missing (as root) and builds dnnd, its tests and
# benchmarks into build/ (Release, portable x86-64-v2 baseline).
#   DNND_NATIVE=1 scripts/build.sh    # tune for this machine's CPU instead
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
native=OFF
[[ "${DNND_NATIVE:-0}" == 1 ]] && native=ON
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDNND_NATIVE="$native" > build.log 2>&1 ||
  { cat build.log; exit 1; }
cmake --build build -j"${DNND_JOBS:-2}" 2>&1 | tee -a build.log | grep -E "error|warning: unused" || true
test -x build/dnnd || { echo "build failed; see build.log" >&2; exit 1; }
