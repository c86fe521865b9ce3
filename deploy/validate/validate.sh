#!/usr/bin/env bash
# Validates every deployment manifest of dnnd (no cluster needed):
#   - deploy/k8s/base/configs/ is an exact copy of configs/ (sync-configs.sh)
#   - yamllint (strict) on deploy/k8s and deploy/swarm
#   - every overlay in deploy/k8s/overlays/ renders with `kubectl kustomize`
#     and passes check.mjs (schema with unknown fields, dnnd's rules, the
#     mounted configs through `dnnd config check`, roles through `dnnd roles`)
#   - every stack in deploy/swarm/ passes `docker stack config -c` (compose
#     schema; no engine needed) and check.mjs
#
#   deploy/validate/validate.sh [--root DIR] [--only PARTS]
#     --root DIR     a tree holding configs/ and deploy/ (default: this checkout)
#     --only PARTS   comma-separated subset of sync,lint,k8s,swarm (default: all)
#   DNND_BINARY=path/to/dnnd (default build/dnnd)
#
# Needs kubectl (with kustomize), the docker client, node >= 18 with npm,
# yamllint. The npm packages are pinned by package-lock.json and installed
# here with `npm ci` when node_modules does not match the lockfile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
only=",sync,lint,k8s,swarm,"
while (($#)); do
  case "$1" in
    --root) root=$(cd "${2:?--root needs a directory}" && pwd); shift 2 ;;
    --only) only=",${2:?--only needs a list},"; shift 2 ;;
    *) echo "validate.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
dnnd=${DNND_BINARY:-$here/../../build/dnnd}
for part in ${only//,/ }; do
  [[ "$part" =~ ^(sync|lint|k8s|swarm)$ ]] || { echo "validate.sh: --only: unknown part '$part' (sync, lint, k8s, swarm)" >&2; exit 2; }
done
want() { [[ "$only" == *",$1,"* ]]; }

missing=()
for tool in kubectl docker node npm yamllint; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  echo "validate.sh: missing tools: ${missing[*]} (yamllint: scripts/setup.sh --tests installs it; kubectl, docker (client only) and node come with the machine)" >&2
  exit 1
fi
[[ -x "$dnnd" ]] || { echo "validate.sh: no dnnd binary at $dnnd (build it, or set DNND_BINARY)" >&2; exit 1; }

"$here/../../scripts/npm-ci.sh" "$here"  # npm ci when the lockfile changed

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() {  # check <description> <command...>: runs it, reports, counts
  local what=$1; shift
  if "$@" > "$tmp/out" 2>&1; then
    passed=$((passed + 1)); echo "ok    $what"
  else
    failed=$((failed + 1)); echo "FAIL  $what"; sed 's/^/      /' "$tmp/out"
  fi
}

if want sync; then
  check "deploy/k8s/base/configs matches configs/" "$root/deploy/k8s/sync-configs.sh" --check
fi
if want lint; then
  check "yamllint deploy/k8s deploy/swarm" yamllint -s -c "$here/yamllint.yaml" "$root/deploy/k8s" "$root/deploy/swarm"
fi

overlays=0
want k8s && for dir in "$root"/deploy/k8s/overlays/*/; do
  name=overlays/$(basename "$dir")
  overlays=$((overlays + 1))
  render() { kubectl kustomize "$1" > "$2"; }
  check "kubectl kustomize $name" render "$dir" "$tmp/$(basename "$dir").yaml"
  if [[ -s "$tmp/$(basename "$dir").yaml" ]]; then
    check "schema and dnnd rules: $name" node "$here/check.mjs" k8s --dnnd "$dnnd" \
      --file "$tmp/$(basename "$dir").yaml" --name "$name" --external-secret dnnd-token
  fi
done
stacks=0
want swarm && for file in "$root"/deploy/swarm/*.yml; do
  [[ -e "$file" ]] || continue
  name=swarm/$(basename "$file")
  stacks=$((stacks + 1))
  # The stack's ${VARS} take their defaults, as on a machine without them set.
  stack_config() { env -u DNND_REGISTRY docker stack config -c "$1" > "$2"; }
  check "docker stack config $name" stack_config "$file" "$tmp/$(basename "$file").out"
  if [[ -s "$tmp/$(basename "$file").out" ]]; then
    check "dnnd rules: $name" node "$here/check.mjs" swarm --dnnd "$dnnd" \
      --file "$tmp/$(basename "$file").out" --name "$name"
  fi
done
if { want k8s && ((overlays == 0)); } || { want swarm && ((stacks == 0)); }; then
  echo "FAIL  found $overlays overlays and $stacks stacks under $root/deploy: nothing to validate"
  failed=$((failed + 1))
fi
echo "validate: $passed passed, $failed failed"
((failed == 0))
