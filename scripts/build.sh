#!/usr/bin/env bash
# Installs dependencies if missing (as root) and builds into build/ (Release,
# portable x86-64-v2 baseline).
#   scripts/build.sh                  dnnd itself: what scripts/run.sh needs
#   scripts/build.sh --tests          dnnd, its tests and benchmarks (scripts/test.sh)
#   DNND_NATIVE=1 scripts/build.sh    tune for this machine's CPU instead
# Without --tests a fresh build/ is configured with the tests and benchmarks
# off (their packages are not installed then); an existing build/ keeps what
# it was configured with.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=0
case "${1:-}" in
  --tests) tests=1 ;;
  "") ;;
  *) echo "usage: build.sh [--tests]" >&2; exit 2 ;;
esac
if ((tests)); then
  scripts/setup.sh --tests
  options=(-DDNND_BUILD_TESTS=ON -DDNND_BUILD_BENCH=ON)
else
  scripts/setup.sh
  options=()
  [[ -f build/CMakeCache.txt ]] || options=(-DDNND_BUILD_TESTS=OFF -DDNND_BUILD_BENCH=OFF)
fi
native=OFF
[[ "${DNND_NATIVE:-0}" == 1 ]] && native=ON
if ! cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDNND_NATIVE="$native" "${options[@]}" \
    > build.log 2>&1; then
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
