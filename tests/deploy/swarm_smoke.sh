#!/usr/bin/env bash
# Real Docker Swarm smoke test: deploys the stacks of deploy/swarm/ one after
# the other on a one-node swarm of its own and waits for each job's accuracy.
#
#   tests/deploy/swarm_smoke.sh [--keep]      (ctest -L long: deploy.swarm_smoke)
#     --keep   leave the work directory (dockerd's log, the services' logs)
#   DNND_BINARY=path/to/dnnd (default build/dnnd)
#   DNND_SWARM_STACKS="data-parallel standalone layer-servers split-train-aggregate controller-pool"
#     (the default: every stack)
#   DNND_SWARM_TIMEOUT=300 (seconds for one stack's jobs to complete)
#
# Needs root and Debian's docker.io (dockerd 20.10, containerd, runc): the
# script starts a private dockerd with its own data-root, exec-root, pidfile
# and socket, so it touches neither a running Docker nor its images:
#   dockerd --storage-driver vfs --iptables=false --ip6tables=false --bridge=none
# Steps: build both images (deploy/build-image.sh --with-data), convert them
# from OCI archives to docker archives (dockerd 20.10 loads only those), load
# them, `swarm init` on 127.0.0.1, create the token secret; per stack: deploy
# it (with a small override: reservations that fit a 2-core machine, one epoch
# on part of the data), wait for its jobs to complete, read the final accuracy
# from `docker service logs`, remove it. Then leave the swarm,
# stop dockerd by its PID and remove what it left (docker_gwbridge, network
# namespaces and mounts under its roots). The cleanup runs on failure too.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
dnnd=${DNND_BINARY:-$src/build/dnnd}
keep=0
[[ "${1:-}" == "--keep" ]] && keep=1
t0=$(date +%s%N)
since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { printf '[%6ss] %s\n' "$(since "$t0")" "$*"; }
fail() { say "FAIL: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "needs root (it starts its own dockerd)"
for tool in dockerd containerd runc buildah; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install docker.io buildah)"
done
# Debian's client matches the engine; a newer client elsewhere in PATH works too.
docker=$(command -v /usr/bin/docker || command -v docker) || fail "no docker client"
[[ -x "$dnnd" ]] || fail "no dnnd binary at $dnnd (build it, or set DNND_BINARY)"

# Short paths: containerd's sockets live under the exec-root (108-byte limit).
work=$(mktemp -d /tmp/dnnd-swarm.XXXXXX)
sock=$work/docker.sock
export DOCKER_HOST=unix://$sock
d() { "$docker" "$@"; }
dockerd_pid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  say "cleanup: stack, swarm, dockerd, docker_gwbridge, mounts"
  if [[ -n "$dockerd_pid" ]] && kill -0 "$dockerd_pid" 2>/dev/null; then
    if ((rc != 0)); then
      for s in $(d service ls --format '{{.Name}}' 2>/dev/null); do
        echo "--- docker service ps $s"; d service ps --no-trunc "$s" 2>&1 | head -5
        echo "--- docker service logs $s (last 15 lines)"; d service logs --raw "$s" 2>&1 | tail -15
      done
    fi
    for s in $(d stack ls --format '{{.Name}}' 2>/dev/null); do d stack rm "$s" >/dev/null 2>&1; done
    # Tasks stop and their containers go before the network can be removed.
    for _ in $(seq 60); do
      [[ -z "$(d ps -aq 2>/dev/null)" ]] && break
      sleep 1
    done
    d swarm leave --force >/dev/null 2>&1
    kill -TERM "$dockerd_pid"
    for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$dockerd_pid" 2>/dev/null && { echo "dockerd did not stop in 30 s: SIGKILL"; kill -KILL "$dockerd_pid"; }
    wait "$dockerd_pid" 2>/dev/null
  fi
  # What dockerd leaves behind: the swarm's bridge in the host namespace, and
  # mounts (network namespaces, container roots) under its own directories.
  ip link show docker_gwbridge >/dev/null 2>&1 && ip link delete docker_gwbridge
  awk -v w="$work" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  # A clean run must leave nothing.
  if ip link show docker_gwbridge >/dev/null 2>&1; then echo "docker_gwbridge is still there"; rc=1; fi
  if [[ -n "$dockerd_pid" ]] && kill -0 "$dockerd_pid" 2>/dev/null; then echo "dockerd $dockerd_pid still runs"; rc=1; fi
  if grep -q " $work" /proc/self/mountinfo; then echo "mounts under $work are left"; rc=1; fi
  if ((rc != 0)); then
    echo "--- dockerd log (last 30 lines)"; tail -30 "$work/dockerd.log" 2>/dev/null
  fi
  if ((keep)); then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
  ((rc == 0)) && say "PASS (cleanup done)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "images (deploy/build-image.sh --with-data)"
DNND_BUILDAH_ROOT="$work/buildah" "$src/deploy/build-image.sh" --binary "$dnnd" --out "$work/image" --with-data \
  > "$work/build.log" 2>&1 || { cat "$work/build.log"; fail "the image build failed"; }
version=$("$dnnd" version | awk '{print $2}')
# dockerd 20.10 reads docker archives only (OCI archives need 25+): buildah
# converts, in storage of its own.
bh=(buildah --root "$work/buildah/storage" --runroot "$work/buildah/run" --storage-driver vfs)
for image in dnnd dnnd-fashion-mnist; do
  "${bh[@]}" push --quiet "localhost/$image:$version" \
    "docker-archive:$work/image/$image.docker.tar:localhost/$image:$version" >/dev/null
done
rm -rf "$work/buildah"

say "dockerd (vfs, no iptables, no bridge) on $sock"
dockerd --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
  --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
  -H "unix://$sock" > "$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 60); do
  d version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || fail "dockerd exited"
  sleep 0.5
done
d version >/dev/null 2>&1 || fail "dockerd did not answer in 30 s"
say "dockerd $(d version --format '{{.Server.Version}}') up (pid $dockerd_pid)"

for image in dnnd dnnd-fashion-mnist; do
  d load -q -i "$work/image/$image.docker.tar" >/dev/null
done
d image inspect "localhost/dnnd:$version" "localhost/dnnd-fashion-mnist:$version" >/dev/null || fail "images not loaded"
say "images loaded"

d swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
# The secret is the cluster's wire key. `dnnd ctl` containers get the API's
# bearer token instead, derived from it (dnnd api-token), through an env file
# that only root can read (never on a command line, where ps would show it).
(umask 077; head -c 32 /dev/urandom | base64 > "$work/wire-key")
d secret create dnnd-token "$work/wire-key" >/dev/null
(umask 077; printf 'DNND_TOKEN=%s\n' "$("$dnnd" api-token --set transport.token_file="$work/wire-key")" > "$work/ctl.env")
grep -q '^DNND_TOKEN=[0-9a-f]\{64\}$' "$work/ctl.env" || fail "dnnd api-token gave no token"
say "swarm initialised, secret dnnd-token created"

# A 2-core machine cannot reserve what the stacks ask of a real cluster, and a
# smoke test needs one short epoch on part of the data, not five long ones.
small='{resources: {reservations: {cpus: "0.1", memory: 64M}, limits: {cpus: "1", memory: 1G}}}'
short='{DNND_TRAIN__EPOCHS: "1", DNND_DATA__LIMIT_TRAIN: "12000", DNND_NODE__THREADS: "1"}'

# Accuracy in a service's logs: the worker's JSON "done" record, or the last
# "test accuracy X%" line (the aggregator's result, the standalone's epochs).
accuracy_in() {
  python3 - "$1" <<'EOF'
import json, re, sys
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"test accuracy ([0-9.]+)%", line)
    if m:
        print(float(m.group(1)) / 100)
        continue
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if isinstance(rec, dict) and rec.get("msg") == "done" and "test_accuracy" in rec:
        print(rec["test_accuracy"])
EOF
}

# run_stack NAME OVERRIDE-SERVICES "SERVICES THAT MUST COMPLETE" ACCURACY-SERVICE "SERVICES STILL RUNNING"
# Deploys deploy/swarm/NAME.yml as stack NAME with the override, waits for the
# services to complete (a Failed or Rejected task fails the test), checks the
# accuracy in the logs (>= 0.70 after one epoch on 12000 samples), removes it.
run_stack() {
  local name=$1 services_yaml=$2 complete=$3 acc_service=$4 running=$5
  local t_start; t_start=$(date +%s%N)
  printf 'version: "3.8"\nservices:%s\n' "$services_yaml" > "$work/$name.override.yml"
  (cd "$src" && d stack deploy --resolve-image never -c "deploy/swarm/$name.yml" -c "$work/$name.override.yml" "$name") \
    > "$work/$name.deploy.log" 2>&1 || { cat "$work/$name.deploy.log"; fail "docker stack deploy $name failed"; }
  say "$name: deployed $(d stack services "$name" --format '{{.Name}}' | sort | tr '\n' ' ')"
  state() { d service ps "${name}_$1" --format '{{.CurrentState}}' 2>/dev/null | head -1; }
  local deadline=$(( $(date +%s) + ${DNND_SWARM_TIMEOUT:-300} ))
  while :; do
    local done_all=1 states="" s st
    for s in $complete; do
      st=$(state "$s")
      states+="$s '$st' "
      [[ "$st" == Failed* || "$st" == Rejected* ]] && fail "$name: $s: $st"
      [[ "$st" == Complete* ]] || done_all=0
    done
    ((done_all)) && break
    (( $(date +%s) < deadline )) || fail "$name: not complete in ${DNND_SWARM_TIMEOUT:-300} s: $states"
    sleep 2
  done
  say "$name: complete: $complete"
  d service logs --raw "${name}_$acc_service" > "$work/$name.$acc_service.log" 2>&1
  local acc; acc=$(accuracy_in "$work/$name.$acc_service.log" | tail -1)
  [[ -n "$acc" ]] || { tail -20 "$work/$name.$acc_service.log"; fail "$name: no final test accuracy in $acc_service's logs"; }
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.70 else 1)" "$acc" \
    || fail "$name: accuracy $acc is below 0.70 after one epoch on 12000 samples"
  for s in $running; do
    [[ "$(state "$s")" == Running* ]] || fail "$name: $s is not running: $(state "$s")"
  done
  d stack rm "$name" >/dev/null
  say "$name: $acc_service's final test accuracy $acc (docker service logs); stack up for $(since "$t_start") s"
}

# The controller and its pool: a one-off container on the stack's attachable
# network runs `dnnd ctl` (the image has no shell, so one container per call):
# a dataset, a model and a 2-worker job, which only the pool can run
# (controller.local_workers = 0); its accuracy from `ctl job get`.
run_pool_stack() {
  local name=controller-pool t_start; t_start=$(date +%s%N)
  printf 'version: "3.8"\nservices:\n  controller: {deploy: %s}\n  pool: {deploy: %s}\n' "$small" "$small" \
    > "$work/$name.override.yml"
  (cd "$src" && d stack deploy --resolve-image never -c "deploy/swarm/$name.yml" -c "$work/$name.override.yml" "$name") \
    > "$work/$name.deploy.log" 2>&1 || { cat "$work/$name.deploy.log"; fail "docker stack deploy $name failed"; }
  say "$name: deployed $(d stack services "$name" --format '{{.Name}}' | sort | tr '\n' ' ')"
  ctl() {
    d run --rm --network "${name}_dnnd" --env-file "$work/ctl.env" -v "$src/configs:/cfg:ro" "localhost/dnnd-fashion-mnist:$version" \
      ctl --controller controller:8080 "$@"
  }
  local deadline=$(( $(date +%s) + 120 ))
  until ctl dataset list > /dev/null 2>&1; do
    (( $(date +%s) < deadline )) || fail "$name: the controller's API did not answer in 120 s"
    sleep 2
  done
  local fm=/usr/share/datasets/fashion-mnist
  ctl dataset upload fm --format idx --train-images $fm/train-images-idx3-ubyte.gz \
    --train-labels $fm/train-labels-idx1-ubyte.gz --test-images $fm/t10k-images-idx3-ubyte.gz \
    --test-labels $fm/t10k-labels-idx1-ubyte.gz > "$work/$name.ctl.log" 2>&1 || { cat "$work/$name.ctl.log"; fail "$name: dataset upload"; }
  ctl model create mlp --spec /cfg/models/mlp.toml >> "$work/$name.ctl.log" 2>&1 || { cat "$work/$name.ctl.log"; fail "$name: model create"; }
  local id; id=$(ctl job create --model mlp --dataset fm --epochs 1 --workers 2 --limit-train 12000 2>>"$work/$name.ctl.log") \
    || { cat "$work/$name.ctl.log"; fail "$name: job create"; }
  say "$name: dataset, model and job $id created through dnnd ctl"
  deadline=$(( $(date +%s) + ${DNND_SWARM_TIMEOUT:-300} ))
  local state="" acc=""
  while :; do
    ctl -o json job get "$id" > "$work/$name.job.json" 2>/dev/null || true
    read -r state acc < <(python3 - "$work/$name.job.json" <<'EOF' || true
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except (ValueError, OSError):
    print("unknown -"); sys.exit()
acc = [e["test_accuracy"] for e in j.get("history", []) if "test_accuracy" in e]
print(j.get("state", "unknown"), acc[-1] if acc else "-")
EOF
)
    [[ "$state" == succeeded ]] && break
    [[ "$state" == failed || "$state" == cancelled ]] && { cat "$work/$name.job.json"; ctl job logs "$id"; fail "$name: job $id $state"; }
    (( $(date +%s) < deadline )) || { ctl job logs "$id"; fail "$name: job $id is '$state' after ${DNND_SWARM_TIMEOUT:-300} s"; }
    sleep 3
  done
  [[ "$acc" != - ]] || fail "$name: job $id succeeded without a test accuracy"
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.70 else 1)" "$acc" \
    || fail "$name: accuracy $acc is below 0.70 after one epoch on 12000 samples"
  d service logs --raw "${name}_pool" > "$work/$name.pool.log" 2>&1
  d stack rm "$name" >/dev/null
  say "$name: job $id succeeded on the pool, test accuracy $acc (dnnd ctl job get); stack up for $(since "$t_start") s"
}

stacks=${DNND_SWARM_STACKS:-data-parallel standalone layer-servers split-train-aggregate controller-pool}
for stack in $stacks; do
  case "$stack" in
    data-parallel) run_stack data-parallel "
  ps-0: {deploy: $small}
  ps-1: {deploy: $small}
  worker-0: {deploy: $small, environment: $short}
  worker-1: {deploy: $small, environment: $short}" "worker-0 worker-1" worker-0 "ps-0 ps-1" ;;
    standalone) run_stack standalone "
  standalone: {deploy: $small, environment: $short}" "standalone" standalone "" ;;
    layer-servers) run_stack layer-servers "
  layers-0: {deploy: $small}
  layers-1: {deploy: $small}
  worker: {deploy: $small, environment: $short}" "worker" worker "layers-0 layers-1" ;;
    split-train-aggregate) run_stack split-train-aggregate "
  splitter: {deploy: $small, environment: $short}
  worker-0: {deploy: $small, environment: $short}
  worker-1: {deploy: $small, environment: $short}
  worker-2: {deploy: $small, environment: $short}
  aggregator: {deploy: $small}" "splitter worker-0 worker-1 worker-2 aggregator" aggregator "" ;;
    controller-pool) run_pool_stack ;;
    *) fail "DNND_SWARM_STACKS: unknown stack '$stack'" ;;
  esac
done
say "all stacks done; cleanup follows"
exit 0
