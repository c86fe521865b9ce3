#!/usr/bin/env bash
# The main job: builds dnnd if needed, then runs a local data-parallel
# cluster (configs/standalone.toml: 2 parameter servers and 2 workers in one
# process, talking over loopback TCP) training the Fashion-MNIST MLP, showing
# per-epoch progress, loss, throughput and test accuracy; the job and its
# model stay in runs/standalone/controller, and the controller keeps serving
# the dashboard and API (http://127.0.0.1:8080/) until Ctrl-C. Run again, it
# resumes that job (or just serves it, if it succeeded). Extra arguments go to
# dnnd (e.g. --set train.epochs=1, --set standalone.exit_when_done=true).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/dnnd ]] || scripts/build.sh
exec build/dnnd --config configs/standalone.toml "$@"
