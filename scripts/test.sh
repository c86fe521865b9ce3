#!/usr/bin/env bash
# Builds (installing dependencies if needed) and runs the whole test suite.
# Long soak and fuzz runs are opt-in: DNND_LONG_TESTS=1 includes them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cd build
exclude=()
[[ "${DNND_LONG_TESTS:-0}" == 1 ]] || exclude=(-LE long)
ctest --output-on-failure -j2 --timeout 900 "${exclude[@]}"
