#!/usr/bin/env bash
# The main job: builds dnnd if needed, then trains the Fashion-MNIST MLP
# (configs/worker-mlp.toml) showing per-epoch progress, loss, throughput and
# test accuracy; the checkpoint lands in runs/mlp/. Extra arguments go to dnnd
# (e.g. --set train.epochs=1).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/dnnd ]] || scripts/build.sh
exec build/dnnd --role=worker --config configs/worker-mlp.toml "$@"
