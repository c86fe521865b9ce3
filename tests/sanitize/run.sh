#!/usr/bin/env bash
# The unit and role tests under a sanitizer, within a time budget:
#   tests/sanitize/run.sh address [minutes]   ASan + UBSan (build-asan/)
#   tests/sanitize/run.sh thread  [minutes]   TSan (build-tsan/)
# Builds dnnd and the test binaries with -DDNND_SANITIZE (CMakeLists.txt),
# then runs the core, transport and tensor suites and the short role tests
# of the doors (tokens, API paths, layer and parameter servers) against the
# sanitized dnnd. A sanitizer report fails the test that triggered it
# (halt_on_error). The role tests that bound a process's RSS are left out:
# under a sanitizer RSS is its shadow memory, not ours (the normal build
# holds those bounds); so are the minutes-long training jobs. scripts/test.sh
# runs this on every CI run; the budget (default 35 minutes, build included)
# stops a run that would outgrow CI, and says so: that is a failure too.
set -euo pipefail
cd "$(dirname "$0")/../.."
kind=${1:-address}
minutes=${2:-35}
case "$kind" in
  address) dir=build-asan ;;
  thread) dir=build-tsan ;;
  *) echo "run.sh: unknown sanitizer '$kind' (address or thread)" >&2; exit 2 ;;
esac
deadline=$(( $(date +%s) + minutes * 60 ))
left() { echo $(( deadline - $(date +%s) )); }
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DDNND_SANITIZE="$kind" -DDNND_BUILD_BENCH=OFF \
  ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} > "$dir.log" 2>&1 \
  || { cat "$dir.log"; exit 1; }
targets=(dnnd dnnd_core_tests dnnd_transport_tests dnnd_tensor_tests dnnd_roles_tests)
if ! timeout "$(left)" cmake --build "$dir" -j"${DNND_JOBS:-2}" --target "${targets[@]}" >> "$dir.log" 2>&1; then
  grep -E "error|Error" -A3 "$dir.log" | head -40
  echo "run.sh: $kind build failed or passed its $minutes-minute budget; log in $dir.log" >&2
  exit 1
fi
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=0:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0
# Role tests: the doors and the servers' concurrency, seconds each (set
# DNND_SANITIZE_ROLES to a ctest -R regex to run others, '' for none).
roles_default='^(Secrets|ControllerAuth|ApiDoors|LayerServer|PsPartition|PsCheckpoint|PsWeightsCodec)\.|^PsMembership\.(InventedWorkers|NonFinite)|^WireDoors\.ConnectionsOverTheCap'
roles=${DNND_SANITIZE_ROLES-$roles_default}
cd "$dir"
status=0
timeout "$(left)" ctest --output-on-failure -j2 --timeout 600 -L '^(core|transport|tensor)$' || status=$?
if ((status == 0)) && [[ -n "$roles" ]]; then
  timeout "$(left)" ctest --output-on-failure -j2 --timeout 600 -L '^roles$' -R "$roles" || status=$?
fi
if ((status == 124)); then
  echo "run.sh: $kind tests passed their $minutes-minute budget" >&2
fi
exit "$status"
