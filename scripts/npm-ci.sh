#!/usr/bin/env bash
# Installs a directory's npm packages exactly as its package-lock.json pins
# them (`npm ci`), only when the lockfile changed since the last install; a
# lock file keeps concurrent runs (ctest -j) from racing.
#   scripts/npm-ci.sh deploy/validate
# Used by scripts/setup.sh, deploy/validate/validate.sh and the dashboard test.
set -euo pipefail
dir=$(cd "${1:?usage: npm-ci.sh DIR (holding package.json and package-lock.json)}" && pwd)
[[ -f "$dir/package-lock.json" ]] || { echo "npm-ci.sh: no package-lock.json in $dir" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm-ci.sh: npm is not installed (Node.js >= 18 with npm is needed)" >&2; exit 1; }
(
  flock 9
  stamp="$dir/node_modules/.dnnd-lock-sha256"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
  fi
) 9>"$dir/.npm.lock"
