#!/usr/bin/env bash
# Tests the validation itself: a copy of configs/ and deploy/ must pass
# validate.sh, and each copy with one mistake planted in it must fail it with
# the expected message. A checker that lets any of these through is broken.
#
#   deploy/validate/selftest.sh       (DNND_BINARY as for validate.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fresh() {  # a pristine copy of what validate.sh reads
  rm -rf "$tmp/tree"
  mkdir -p "$tmp/tree/deploy"
  cp -r "$src/configs" "$tmp/tree/configs"
  cp -r "$src/deploy/k8s" "$src/deploy/swarm" "$tmp/tree/deploy/"
}

# mutate FILE OLD NEW: replaces the first occurrence of OLD (which must exist).
mutate() {
  python3 - "$tmp/tree/$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if old not in text:
    sys.exit(f"selftest: '{old}' is not in {path}: the mutation does not apply")
open(path, "w").write(text.replace(old, new, 1))
EOF
}

passed=0 failed=0
# expect_failure DESCRIPTION PARTS EXPECTED-TEXT: validate.sh --only PARTS must
# fail and say EXPECTED-TEXT.
expect_failure() {
  local what=$1 parts=$2 expected=$3
  if "$here/validate.sh" --root "$tmp/tree" --only "$parts" > "$tmp/out" 2>&1; then
    failed=$((failed + 1)); echo "FAIL  $what: validation passed"; sed 's/^/      /' "$tmp/out"
  elif ! grep -qF -- "$expected" "$tmp/out"; then
    failed=$((failed + 1)); echo "FAIL  $what: validation failed without saying '$expected'"; sed 's/^/      /' "$tmp/out"
  else
    passed=$((passed + 1)); echo "ok    $what"
  fi
}

fresh
if "$here/validate.sh" --root "$tmp/tree" > "$tmp/out" 2>&1; then
  passed=$((passed + 1)); echo "ok    the unmodified copy validates"
else
  failed=$((failed + 1)); echo "FAIL  the unmodified copy does not validate"; sed 's/^/      /' "$tmp/out"
fi
# Each mistake below is planted in one topology: validate only that one from
# here on (a fraction of the work per case).
fresh() {  # fresh [TOPOLOGY...]: a copy holding only these overlays and stacks (default data-parallel)
  local names=("${@}")
  ((${#names[@]})) || names=(data-parallel)
  rm -rf "$tmp/tree"
  mkdir -p "$tmp/tree/deploy/k8s/overlays" "$tmp/tree/deploy/swarm"
  cp -r "$src/configs" "$tmp/tree/configs"
  cp -r "$src/deploy/k8s/base" "$src/deploy/k8s/sync-configs.sh" "$tmp/tree/deploy/k8s/"
  for n in "${names[@]}"; do
    if [[ -d "$src/deploy/k8s/overlays/$n" ]]; then cp -r "$src/deploy/k8s/overlays/$n" "$tmp/tree/deploy/k8s/overlays/"; fi
    if [[ -f "$src/deploy/swarm/$n.yml" ]]; then cp "$src/deploy/swarm/$n.yml" "$tmp/tree/deploy/swarm/"; fi
  done
}

dp=deploy/k8s/overlays/data-parallel
ps=$dp/parameter-servers.yaml
wk=$dp/workers.yaml
stack=deploy/swarm/data-parallel.yml

fresh; mutate $wk "          readinessProbe:" "          readinesProbe:"
expect_failure "k8s: misspelt field (readinesProbe)" k8s "spec.template.spec.containers[0].readinesProbe: unknown field (did you mean readinessProbe?)"

fresh; mutate $ps "containerPort: 7000" "containerport: 7000"
expect_failure "k8s: misspelt nested field (containerport)" k8s "unknown field (did you mean containerPort?)"

fresh; mutate $ps "  podManagementPolicy: Parallel" "  podManagementPolicy: Parallel
  minReadySecond: 5"
expect_failure "k8s: unknown field in a spec (minReadySecond)" k8s "spec.minReadySecond: unknown field (did you mean minReadySeconds?)"

fresh; mutate $ps "  replicas: 2" "  replicas: two"
expect_failure "k8s: wrong type (replicas: two)" k8s "data/spec/replicas must be integer"

fresh; mutate $ps "apiVersion: policy/v1" "apiVersion: policy/v1beta1"
expect_failure "k8s: removed API version (policy/v1beta1)" k8s "unknown kind PodDisruptionBudget in policy/v1beta1"

# The config names the role; the manifests pass only --config.
fresh; mutate configs/worker-ps.toml 'role = "worker"' 'role = "wroker"'
mutate deploy/k8s/base/configs/worker-ps.toml 'role = "worker"' 'role = "wroker"'
expect_failure "k8s: unknown role in the config" k8s "node.role: 'wroker' is not allowed; did you mean 'worker'?"

fresh; mutate configs/worker-ps.toml 'role = "worker"' '# no role'
mutate deploy/k8s/base/configs/worker-ps.toml 'role = "worker"' '# no role'
expect_failure "k8s: a config that names no role" k8s "/etc/dnnd/worker-ps.toml names no role"

fresh; mutate $wk "            - --config=/etc/dnnd/worker-ps.toml" "            - --role=worker
            - --config=/etc/dnnd/worker-ps.toml"
expect_failure "k8s: --role in a manifest" k8s "--role=worker on the command line: the config names the role"

# (check.mjs also refuses roles `dnnd roles` lists as not built; every role is
# built now, so no such mistake can be planted.)

fresh; mutate $wk "DNND_WORKER__COUNT" "DNND_WORKER__CONT"
expect_failure "k8s: misspelt config key in the env" k8s "unknown key worker.cont"

fresh; mutate configs/worker-ps.toml "batch_size = 64" "batch_size = 0"
mutate deploy/k8s/base/configs/worker-ps.toml "batch_size = 64" "batch_size = 0"
expect_failure "k8s: mounted config fails dnnd config check" k8s "  /etc/dnnd/worker-ps.toml:30:14: train.batch_size: 0 is below the minimum"

fresh; mutate configs/worker-ps.toml "batch_size = 64" "batch_size = 32"
expect_failure "sync: configs/ changed, the kustomize copy not" sync "run deploy/k8s/sync-configs.sh"

fresh; mutate $ps "  replicas: 2" "  replicas: 3"
expect_failure "k8s: 3 servers, the configs say 2" k8s "ps.servers is 2, replicas 3"

fresh; mutate $wk '"dnnd-ps-1.dnnd-ps:7000"' '"dnnd-ps-1.dnnd-ps:7001"'
expect_failure "k8s: worker names a server port nobody listens on" k8s "the servers listen on port 7000"

fresh; mutate $wk "  parallelism: 2" "  parallelism: 1"
expect_failure "k8s: sync job with fewer workers at once than completions" k8s "parallelism 1 != completions 2"

fresh; mutate $ps "  publishNotReadyAddresses: true" "  publishNotReadyAddresses: false"
expect_failure "k8s: headless Service hides servers that are not ready" k8s "publishNotReadyAddresses must be true"

fresh; mutate $wk "allowPrivilegeEscalation: false" "allowPrivilegeEscalation: true"
expect_failure "k8s: privilege escalation allowed" k8s "allowPrivilegeEscalation must be false"

fresh; mutate $wk "              path: /readyz" "              path: /healthz"
expect_failure "k8s: readiness probe on the wrong path" k8s "readinessProbe path /healthz, expected /readyz"

fresh; mutate $wk "      restartPolicy: Never" "      restartPolicy: Always"
expect_failure "k8s: Job pods that restart forever" k8s "restartPolicy"

fresh; mutate $wk "        fsGroup: 65532
" ""
expect_failure "k8s: token file only root's group can read" k8s "the token file (mode 0440) is unreadable for uid 65532"

fresh; mutate $stack '      uid: "65532"
' ""
expect_failure "swarm: token secret owned by root, mode 0400" swarm "secret dnnd-token (mode 0400, uid 0) is unreadable for user 65532"

fresh; mutate $wk "              value: /run/secrets/dnnd/token" "              value: /etc/dnnd/token"
expect_failure "k8s: token file outside the Secret" k8s "transport.token_file /etc/dnnd/token is not in a mounted Secret"

fresh; mutate $dp/kustomization.yaml "  - workers.yaml" "  - worker.yaml"
expect_failure "k8s: kustomize cannot render" k8s "FAIL  kubectl kustomize overlays/data-parallel"

fresh; mutate $stack "    restart_policy:" "    restart_polcy:"
expect_failure "swarm: misspelt key (restart_polcy)" swarm "Additional property restart_polcy is not allowed"

fresh; mutate $stack "      condition: on-failure" "      condition: any"
expect_failure "swarm: workers restarted after they finish" swarm "workers need restart_policy condition on-failure"

fresh; mutate $stack '["ps-0:7000", "ps-1:7000"]' '["ps-1:7000", "ps-0:7000"]'
expect_failure "swarm: servers listed out of order" swarm "the list must be in server order"

fresh; mutate $stack '["--config=/etc/dnnd/worker-ps.toml"]' '["--role=parameter-server", "--config=/etc/dnnd/worker-ps.toml"]'
expect_failure "swarm: --role in a stack" swarm "--role=parameter-server on the command line: the config names the role"

fresh; mutate $stack '"http://127.0.0.1:9400/healthz"' '"http://127.0.0.1:9401/healthz"'
expect_failure "swarm: healthcheck probes the wrong port" swarm "expected http://127.0.0.1:9400/healthz"

fresh; mutate $ps "  serviceName: dnnd-ps" "  serviceName: dnnd-ps
  serviceName: dnnd-ps"
expect_failure "lint: duplicate key" lint "duplication of key"

# Layer servers: each placement reaches one single-replica layer server on its port.
ls=deploy/k8s/overlays/layer-servers
fresh layer-servers; mutate $ls/worker.yaml '"dnnd-layers-1:7101"' '"dnnd-layers-1:9400"'
expect_failure "k8s: placement names a layer server's http port" k8s "worker.placement[1] server dnnd-layers-1:9400 reaches port 9400"

fresh layer-servers; mutate $ls/group-1/kustomization.yaml "includeSelectors: true" "includeSelectors: false"
expect_failure "k8s: a layer group's Service selects both groups" k8s "selects 2 dnnd workloads"

fresh layer-servers; mutate $ls/layer-group/layer-server.yaml "  replicas: 1" "  replicas: 2"
expect_failure "k8s: two replicas of a layer server" k8s "a layer server's sessions live in one process"

fresh layer-servers; mutate deploy/swarm/layer-servers.yml 'server = "layers-1:7101"' 'server = "layers-1:7102"'
expect_failure "swarm: placement names a port the layer server does not listen on" swarm "worker.placement[1] server layers-1:7102 reaches port 7102"

# Split -> train -> aggregate: every stage waits for what the previous one writes.
sta=deploy/k8s/overlays/split-train-aggregate
fresh split-train-aggregate; mutate $sta/workers.yaml "--json-key=shards" "--json-key=format"
expect_failure "k8s: workers wait for the manifest without its shards key" k8s "does not wait for the splitter's manifest dnnd-pipeline-runs:shards/manifest.json"

fresh split-train-aggregate; mutate $sta/aggregator.yaml "            - --file=/var/lib/dnnd/runs/shard-2/model.safetensors
" ""
expect_failure "k8s: the aggregator does not wait for one worker" k8s "does not wait for dnnd-pipeline-runs:shard-2/model.safetensors"

fresh split-train-aggregate; mutate $sta/workers.yaml "  completions: 3" "  completions: 2"
expect_failure "k8s: fewer workers than shards" k8s "shard dnnd-pipeline-runs:shards/shard-002.npz is trained by no worker"

fresh split-train-aggregate; mutate $sta/workers.yaml 'shard-00$(SHARD).npz' 'shard-00$(SHARDS).npz'
expect_failure "k8s: \$(VAR) that is not in the env" k8s '$(SHARDS) is not an env variable of the container'

fresh split-train-aggregate; mutate $sta/aggregator.yaml "allowPrivilegeEscalation: false" "allowPrivilegeEscalation: true"
expect_failure "k8s: init container allows privilege escalation" k8s "init container wait-for-workers: securityContext.allowPrivilegeEscalation must be false"

stack=deploy/swarm/split-train-aggregate.yml
fresh split-train-aggregate; mutate $stack "--file=runs/shard-2/model.safetensors, " ""
expect_failure "swarm: the aggregator does not wait for one worker" swarm "does not wait for runs:runs/shard-2/model.safetensors"

fresh split-train-aggregate; mutate $stack "--set=data.train_file=runs/shards/shard-002.npz" "--set=data.train_file=runs/shards/shard-001.npz"
expect_failure "swarm: two workers on one shard" swarm "shard runs:runs/shards/shard-002.npz is trained by no worker"

# Controller + pool: the pool reaches the controller's API, wire and server ports.
cp=deploy/k8s/overlays/controller-pool
fresh controller-pool; mutate $cp/controller.yaml "    - name: ps-3
      port: 7104
      targetPort: ps-3
" ""
expect_failure "k8s: the controller's Service leaves out a parameter-server port" k8s "Service/dnnd-controller has no port 7104"

fresh controller-pool; mutate $cp/pool.yaml "value: dnnd-controller:8080" "value: dnnd-controller:7100"
expect_failure "k8s: pool workers name the controller's wire port as its API" k8s "the controller's API (http.listen) is on 8080"

fresh controller-pool; mutate $cp/pool.yaml "              mountPath: /tmp" "              mountPath: /scratch"
expect_failure "k8s: pool workers without a writable temp directory" k8s "a pool worker's temp directory /tmp (TMPDIR) is not on a writable volume"

fresh controller-pool; mutate $cp/controller.yaml "    type: Recreate" "    type: RollingUpdate"
expect_failure "k8s: a rolling update would run two controllers on one store" k8s "strategy must be Recreate"

fresh controller-pool controller-pool-autoscaled
mutate deploy/k8s/overlays/controller-pool-autoscaled/autoscaler.yaml "    name: dnnd-pool" "    name: dnnd-controller"
expect_failure "k8s: the autoscaler scales the controller" k8s "only a controller's pool can change size"

stack=deploy/swarm/controller-pool.yml
fresh controller-pool; mutate $stack "        condition: any
        delay: 5s
      resources:
        limits:
          cpus: \"2\"
          memory: 1G" "        condition: on-failure
        delay: 5s
      resources:
        limits:
          cpus: \"2\"
          memory: 1G"
expect_failure "swarm: pool workers that stay down once they exit" swarm "pool workers need restart_policy condition any"

fresh controller-pool; mutate $stack "DNND_CONTROLLER__DATA_DIR: /var/lib/dnnd/controller" "DNND_CONTROLLER__DATA_DIR: /tmp/controller"
expect_failure "swarm: the controller's store outside its volume" swarm "controller.data_dir /tmp/controller is not on a persistent volume"

echo "selftest: $passed passed, $failed failed"
((failed == 0))
