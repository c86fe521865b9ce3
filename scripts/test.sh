#!/usr/bin/env bash
# Builds (installing dependencies if needed) and runs the whole test suite.
# Long soak runs are opt-in (DNND_LONG_TESTS=1); the wire fuzzer runs for a
# minute (DNND_FUZZ_SECONDS), the decoder fuzzers half that each.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cd build
exclude=()
[[ "${DNND_LONG_TESTS:-0}" == 1 ]] || exclude=(-LE long)
ctest --output-on-failure -j2 --timeout 900 "${exclude[@]}"
cd ..
# The wire decoder faces the network: fuzz it on every run, for a bounded
# minute (DNND_FUZZ_SECONDS=0 skips; tests/fuzz/run.sh for longer runs).
secs=${DNND_FUZZ_SECONDS:-60}
if ((secs > 0)); then
  tests/fuzz/run.sh wire "$secs" 2>&1 | tail -n 25
  # The decoders users reach through the controller: dataset files and
  # safetensors, images to predict on, model specs (half a minute each).
  for t in data image config; do tests/fuzz/run.sh "$t" $(((secs + 1) / 2)) 2>&1 | tail -n 8; done
fi
