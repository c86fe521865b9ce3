#!/usr/bin/env bash
# The main job: builds dnnd if needed, then runs a local data-parallel
# cluster (configs/standalone.toml: 2 parameter servers and 2 workers in one
# process, talking over loopback TCP) training the Fashion-MNIST MLP, showing
# per-epoch progress, loss, throughput and test accuracy; the final model
# lands in runs/standalone/. Extra arguments go to dnnd (e.g. --set
# train.epochs=1).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/dnnd ]] || scripts/build.sh
exec build/dnnd --role=standalone --config configs/standalone.toml "$@"
