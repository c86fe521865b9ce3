#!/usr/bin/env bash
# Copies configs/*.toml and configs/models/*.toml into deploy/k8s/base/configs/,
# where the base's configMapGenerator reads them: kustomize refuses files
# outside a kustomization's directory tree (its load restrictor), and
# `kubectl apply -k` has no flag to lift that. The copies are generated, never
# edited by hand; deploy/validate/validate.sh fails when they differ from
# configs/ and names this script.
#   deploy/k8s/sync-configs.sh          # write the copies
#   deploy/k8s/sync-configs.sh --check  # exit 1 and list the differences
set -euo pipefail
cd "$(dirname "$0")/../.."
src=configs dst=deploy/k8s/base/configs
mode=${1:-write}
case "$mode" in write|--check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac

list() { (cd "$1" && find . -maxdepth 2 -type f -name '*.toml' \( -path './*.toml' -o -path './models/*.toml' \) | sort); }

if [[ "$mode" == --check ]]; then
  [[ -d "$dst" ]] || { echo "$dst is missing: run deploy/k8s/sync-configs.sh" >&2; exit 1; }
  bad=0
  if ! diff <(list "$src") <(list "$dst") >/dev/null; then
    echo "the files in $dst differ from $src:" >&2
    diff <(list "$src") <(list "$dst") | sed -n 's/^</  only in configs:/p; s/^>/  only in the copy:/p' >&2
    bad=1
  fi
  while read -r f; do
    [[ -f "$dst/$f" ]] || continue
    cmp -s "$src/$f" "$dst/$f" || { echo "$dst/${f#./} differs from $src/${f#./}" >&2; bad=1; }
  done < <(list "$src")
  ((bad == 0)) || { echo "run deploy/k8s/sync-configs.sh and commit the result" >&2; exit 1; }
  exit 0
fi
rm -rf "$dst"
mkdir -p "$dst/models"
while read -r f; do cp "$src/$f" "$dst/$f"; done < <(list "$src")
echo "copied $(list "$dst" | wc -l) config files to $dst"
