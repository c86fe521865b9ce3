#!/usr/bin/env bash
# Builds dnnd, its tests and benchmarks (installing every test and benchmark
# dependency if needed: scripts/setup.sh --tests) and runs the whole suite.
# Long soak runs are opt-in (DNND_LONG_TESTS=1). After the default suite:
# the unit and role tests under ASan+UBSan and TSan (label `sanitize`,
# DNND_SANITIZE=0 skips), then every fuzz target (DNND_FUZZ_SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh --tests
# Every relative link in the Markdown files resolves (file and #heading).
scripts/check-doc-links.py
cd build
exclude=(-LE sanitize)
[[ "${DNND_LONG_TESTS:-0}" == 1 ]] || exclude=(-LE 'long|sanitize')
ctest --output-on-failure -j2 --timeout 900 "${exclude[@]}"
if [[ "${DNND_SANITIZE:-1}" == 1 ]]; then
  ctest --output-on-failure -L sanitize
fi
cd ..
# Every decoder that faces a peer or a user is fuzzed on every run, for a
# bounded time (DNND_FUZZ_SECONDS=0 skips; tests/fuzz/run.sh for longer runs):
# the wire and HTTP parsers for the full time, the decoders users reach
# through the controller (dataset files and safetensors, images to predict
# on, model specs and configs) for half of it each.
# A passing run prints its last lines; a failing one prints its report from
# the sanitizer's first line (the stack and the input, as base64), which the
# last lines alone cut off.
fuzz() {
  local log="build-fuzz/$1.log"
  mkdir -p build-fuzz
  if tests/fuzz/run.sh "$1" "$2" >"$log" 2>&1; then
    tail -n 8 "$log"
  else
    echo "fuzz target $1 failed:" >&2
    sed -n '/^==[0-9]*==\|ERROR: \|error: \|^run.sh: /,$p' "$log" | head -n 120 >&2
    return 1
  fi
}
secs=${DNND_FUZZ_SECONDS:-60}
if ((secs > 0)); then
  for t in wire http; do fuzz "$t" "$secs"; done
  for t in data image config; do fuzz "$t" $(((secs + 1) / 2)); done
fi
