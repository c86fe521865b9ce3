#!/usr/bin/env bash
# The container image end to end, with podman (runc, cgroupfs, host network,
# addresses on 127.0.0.0/8 only), everything in a temporary directory:
#   1. deploy/build-image.sh --with-data builds both images from DNND_BINARY;
#      the layers hold only dnnd and its few files; labels, user, entrypoint.
#   2. `dnnd version` and the default command run in the image.
#   3. A short local training run (1 epoch on 12,800 samples) with the data
#      mounted read-only, a read-only root and a writable volume: accuracy
#      printed, checkpoint written by uid 65532.
#   4. The same config in the dnnd-fashion-mnist image, without the mount.
#   5. Data-parallel across containers: a parameter server and two workers,
#      the token in a mounted file; worker 0 finds the server through
#      /etc/hosts, worker 1 through DNS (a fake DNS server on loopback and a
#      Kubernetes-style resolv.conf: search list, ndots:5, the name
#      dnnd-ps-0.dnnd-ps); `dnnd probe` in the image judges /healthz and /readyz;
#      SIGTERM makes the server checkpoint and exit 0.
#   6. An unresolvable name is a clear error, after a real DNS query.
# Needs root, buildah, podman, runc (scripts/setup.sh installs them) and
# Debian's dataset-fashion-mnist.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
dnnd=${DNND_BINARY:-$src/build/dnnd}
data=/usr/share/datasets/fashion-mnist

fail() { echo "FAIL: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root (podman with runc and cgroupfs)"
for tool in buildah podman runc /usr/bin/python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/setup.sh installs it)"
done
[[ -x "$dnnd" ]] || fail "no dnnd binary at $dnnd"
[[ -f $data/train-images-idx3-ubyte.gz ]] || fail "$data is missing (apt-get install dataset-fashion-mnist)"

tmp=$(mktemp -d /tmp/dnnd-image-test.XXXXXX)
prefix="dnnd-image-test-$$"
P=(podman --root "$tmp/podman/root" --runroot "$tmp/podman/run" --storage-driver vfs
   --runtime runc --cgroup-manager cgroupfs --events-backend file --tmpdir "$tmp/podman/tmp")
# runc may lower limits but not raise them here: explicit ones below the machine's.
RUN=(run --network host --pull never --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
dns_pid=""
cleanup() {
  local rc=$?
  [[ -n "$dns_pid" ]] && kill "$dns_pid" 2>/dev/null && wait "$dns_pid" 2>/dev/null
  # Only this test's containers, in this test's own storage.
  "${P[@]}" ps -a --format '{{.Names}}' 2>/dev/null | grep "^$prefix-" | xargs -r "${P[@]}" rm -f -t 5 >/dev/null 2>&1 || true
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
mkdir -p "$tmp/podman/tmp"

step() { echo "--- $*"; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# 1. Build -------------------------------------------------------------------
step "build the images"
version=$("$dnnd" version | awk '{print $2}')
DNND_BUILDAH_ROOT="$tmp/buildah" "$src/deploy/build-image.sh" --binary "$dnnd" --out "$tmp/image" --with-data \
  | tee "$tmp/build.log"
grep -Eq "^dnnd:$version: 1 layer\(s\), compressed [0-9.]+ MB, uncompressed [0-9.]+ MB" "$tmp/build.log" \
  || fail "build-image.sh did not report the image's sizes"
grep -Eq "^dnnd-fashion-mnist:$version: 2 layer\(s\)" "$tmp/build.log" || fail "the data image is not one layer on top of dnnd's"
archive="$tmp/image/dnnd-$version.oci.tar"
data_archive="$tmp/image/dnnd-fashion-mnist-$version.oci.tar"

step "inspect the archives"
/usr/bin/python3 - "$archive" "$data_archive" "$version" <<'EOF'
import gzip, io, json, sys, tarfile
base, with_data, version = sys.argv[1:]

def image(path):
    with tarfile.open(path) as tar:
        blob = lambda d: tar.extractfile("blobs/" + d.replace(":", "/")).read()
        manifest = json.loads(blob(json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layers = []
        for l in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(l["digest"])))) as lt:
                layers.append({m.name.rstrip("/"): m for m in lt.getmembers()})
        return config, layers, [l["digest"] for l in manifest["layers"]]

def check(cond, msg):
    if not cond:
        sys.exit("FAIL: " + msg)

config, layers, digests = image(base)
files = layers[0]
expected = {"etc", "etc/passwd", "etc/group", "etc/nsswitch.conf", "usr", "usr/local", "usr/local/bin",
            "usr/local/bin/dnnd", "var", "var/lib", "var/lib/dnnd"}
check(set(files) == expected, f"unexpected files in the image: {sorted(set(files) ^ expected)}")
d = files["usr/local/bin/dnnd"]
check(d.mode & 0o7000 == 0 and d.mode & 0o111, f"dnnd mode {oct(d.mode)}")
check(not any(m.mode & 0o6000 for m in files.values()), "a setuid/setgid file")
check((files["var/lib/dnnd"].uid, files["var/lib/dnnd"].gid) == (65532, 65532), "/var/lib/dnnd is not owned by 65532")
check(files["var/lib"].uid == 0, "/var/lib is not owned by root")
c = config["config"]
check(c.get("User") == "65532:65532", f"User {c.get('User')}")
check(c.get("Entrypoint") == ["/usr/local/bin/dnnd"], f"Entrypoint {c.get('Entrypoint')}")
check(c.get("WorkingDir") == "/var/lib/dnnd", f"WorkingDir {c.get('WorkingDir')}")
labels = c.get("Labels", {})
check(labels.get("org.opencontainers.image.version") == version, f"version label {labels.get('org.opencontainers.image.version')}")
for k in ("title", "description", "revision", "created", "base.name"):
    check(labels.get("org.opencontainers.image." + k), f"label org.opencontainers.image.{k} is missing")
dconfig, dlayers, ddigests = image(with_data)
check(ddigests[0] == digests[0], "the data image does not share the dnnd layer")
check(set(dlayers[1]) >= {"usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                          "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"}, "data layer without the data set")
check(dconfig["config"].get("User") == "65532:65532", "the data image lost the user")
print("archives: only dnnd and its files; user 65532; labels; the data image shares the dnnd layer")
EOF

"${P[@]}" load -q -i "$archive" >/dev/null
"${P[@]}" load -q -i "$data_archive" >/dev/null
img=localhost/dnnd:$version
data_img=localhost/dnnd-fashion-mnist:$version

# 2. version -------------------------------------------------------------------
step "dnnd version in the image"
out=$("${P[@]}" "${RUN[@]}" --rm "$img" version)
echo "$out"
[[ "$out" == "dnnd $version "* ]] || fail "version printed '$out'"
"${P[@]}" "${RUN[@]}" --rm "$img" > "$tmp/help.txt" || fail "the default command (--help) failed"
grep -q "dnnd --config <file.toml> \[--role=<role>\]" "$tmp/help.txt" || fail "the default command does not print the usage"
"${P[@]}" "${RUN[@]}" --rm "$img" roles | grep -Eq "^parameter-server +built" || fail "dnnd roles in the image"

# 3. Local training, data mounted ------------------------------------------------
step "short local training run (data mounted read-only, read-only root)"
mkdir -p "$tmp/mlp"
chown 65532:65532 "$tmp/mlp"
short=(--set train.epochs=1 --set data.limit_train=12800 --set data.limit_test=2000 --set train.progress=log)
"${P[@]}" "${RUN[@]}" --rm --read-only --name "$prefix-local" \
  -v "$src/configs:/etc/dnnd:ro" -v "$data:$data:ro" -v "$tmp/mlp:/var/lib/dnnd/run" \
  "$img" --config /etc/dnnd/worker-mlp.toml "${short[@]}" --set train.checkpoint_dir=run \
  > "$tmp/local.log" 2>&1 || { cat "$tmp/local.log"; fail "local training in the image failed"; }
grep "final test accuracy" "$tmp/local.log"
acc=$(sed -n 's/^final test accuracy \([0-9.]*\)%.*/\1/p' "$tmp/local.log")
[[ -n "$acc" ]] && /usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= 75 else 1)" \
  || fail "accuracy after one short epoch is '$acc' (expected >= 75 %)"
[[ -f "$tmp/mlp/model.safetensors" ]] || fail "no checkpoint written"
[[ $(stat -c %u "$tmp/mlp/model.safetensors") == 65532 ]] || fail "the checkpoint is not owned by uid 65532"

# 4. The data image --------------------------------------------------------------
step "the dnnd-fashion-mnist image trains without a data mount"
"${P[@]}" "${RUN[@]}" --rm --read-only -v "$src/configs:/etc/dnnd:ro" "$data_img" \
  --config /etc/dnnd/worker-mlp.toml --set train.max_steps=20 --set train.checkpoint_dir= \
  --set train.progress=log > "$tmp/data.log" 2>&1 || { cat "$tmp/data.log"; fail "training in the data image failed"; }
grep -q "train_samples=60000" "$tmp/data.log" || { cat "$tmp/data.log"; fail "the data image did not load the training set"; }
echo "loaded 60000 training samples from the image"

# 5. Data-parallel across containers, by name -------------------------------------
step "data-parallel: one server, two workers; names through /etc/hosts and DNS"
dns_ip="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
/usr/bin/python3 "$src/tests/deploy/fake_dns.py" --listen "$dns_ip" --port 53 --seconds 600 \
  dnnd-ps-0.dnnd-ps.default.svc.cluster.local=127.0.0.1 > "$tmp/dns.out" 2> "$tmp/dns.log" &
dns_pid=$!
for _ in $(seq 100); do grep -q ready "$tmp/dns.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$tmp/dns.out" || { cat "$tmp/dns.log"; fail "the fake DNS server did not start on $dns_ip:53"; }
cat > "$tmp/resolv.conf" <<EOF
nameserver $dns_ip
search default.svc.cluster.local svc.cluster.local cluster.local
options ndots:5 timeout:2 attempts:2
EOF
mkdir -p "$tmp/secret" "$tmp/ps"
head -c 32 /dev/urandom | base64 > "$tmp/secret/token"
chown -R 65532:65532 "$tmp/secret" "$tmp/ps"
chmod 0400 "$tmp/secret/token"
ps_port=$(free_port)
http_port=$(free_port)
common=(-v "$src/configs:/etc/dnnd:ro" -v "$tmp/secret:/run/secrets/dnnd:ro"
        -e DNND_TRANSPORT__TOKEN_FILE=/run/secrets/dnnd/token)
"${P[@]}" "${RUN[@]}" -d --read-only --name "$prefix-ps" "${common[@]}" -v "$tmp/ps:/var/lib/dnnd" \
  -e DNND_PS__SERVERS=1 -e DNND_PS__WORKERS=2 -e DNND_PS__CHECKPOINT_DIR=/var/lib/dnnd/checkpoints \
  "$img" --config /etc/dnnd/parameter-server.toml \
  --set ps.listen=127.0.0.1:$ps_port --set http.listen=127.0.0.1:$http_port > /dev/null
probe() { "${P[@]}" "${RUN[@]}" --rm "$img" probe "http://127.0.0.1:$http_port$1"; }
healthy=0
for _ in $(seq 50); do probe /healthz > /dev/null 2>&1 && { healthy=1; break; }; sleep 0.2; done
((healthy)) || { "${P[@]}" logs "$prefix-ps"; fail "the server never became healthy"; }
probe /healthz
if probe /readyz > "$tmp/readyz.txt" 2>&1; then fail "the server is ready before any worker initialised it"; fi
grep -q "^503 .*waiting for a worker" "$tmp/readyz.txt" || { cat "$tmp/readyz.txt"; fail "unexpected /readyz answer"; }
cat "$tmp/readyz.txt"

wshort=(--set train.epochs=1 --set data.limit_train=12800 --set data.limit_test=2000 --set train.progress=log
        --set worker.count=2 --set train.checkpoint_dir=)
"${P[@]}" "${RUN[@]}" -d --read-only --name "$prefix-w0" "${common[@]}" -v "$data:$data:ro" \
  --add-host "dnnd-ps-0.hosts.test:127.0.0.1" \
  "$img" --config /etc/dnnd/worker-ps.toml "${wshort[@]}" --set worker.index=0 \
  --set "worker.parameter_servers=[\"dnnd-ps-0.hosts.test:$ps_port\"]" > /dev/null
"${P[@]}" "${RUN[@]}" -d --read-only --name "$prefix-w1" "${common[@]}" -v "$data:$data:ro" \
  -v "$tmp/resolv.conf:/etc/resolv.conf:ro" \
  "$img" --config /etc/dnnd/worker-ps.toml "${wshort[@]}" --set worker.index=1 \
  --set "worker.parameter_servers=[\"dnnd-ps-0.dnnd-ps:$ps_port\"]" > /dev/null
for w in w0 w1; do
  code=$(timeout 300 "${P[@]}" wait "$prefix-$w") || code=timeout
  "${P[@]}" logs "$prefix-$w" > "$tmp/$w.log" 2>&1
  [[ "$code" == 0 ]] || { tail -20 "$tmp/$w.log"; "${P[@]}" logs "$prefix-ps" | tail -20; fail "worker $w exited with $code"; }
done
grep "final test accuracy" "$tmp/w0.log"
acc=$(sed -n 's/^final test accuracy \([0-9.]*\)%.*/\1/p' "$tmp/w0.log")
[[ -n "$acc" ]] && /usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= 70 else 1)" \
  || fail "data-parallel accuracy after one short epoch is '$acc' (expected >= 70 %)"
grep -q "query dnnd-ps-0.dnnd-ps.default.svc.cluster.local type 1 rcode 0" "$tmp/dns.log" \
  || { cat "$tmp/dns.log"; fail "worker 1 did not find the server through DNS"; }
echo "worker 1 resolved dnnd-ps-0.dnnd-ps through the search list: $(grep -c rcode "$tmp/dns.log") DNS queries"
probe /readyz || fail "the server is not ready after training"
"${P[@]}" "${RUN[@]}" --rm "$img" probe "http://127.0.0.1:$http_port/metrics" > "$tmp/metrics.txt" || fail "/metrics"
grep -q "dnnd_ps_pushes_total" "$tmp/metrics.txt" || fail "no dnnd_ps_pushes_total in /metrics"
"${P[@]}" stop -t 30 "$prefix-ps" > /dev/null
code=$("${P[@]}" inspect --format '{{.State.ExitCode}}' "$prefix-ps")
[[ "$code" == 0 ]] || { "${P[@]}" logs "$prefix-ps" | tail; fail "the server exited with $code after SIGTERM"; }
ls "$tmp/ps/checkpoints"/*.safetensors > /dev/null 2>&1 || fail "the server wrote no checkpoint"
echo "server stopped by SIGTERM with exit code 0; checkpoint: $(ls "$tmp/ps/checkpoints")"

# 6. A name that does not resolve ---------------------------------------------------
step "an unknown name is a clear error"
if "${P[@]}" "${RUN[@]}" --rm -v "$tmp/resolv.conf:/etc/resolv.conf:ro" -v "$src/configs:/etc/dnnd:ro" "$img" \
     --config /etc/dnnd/worker-xor.toml --set http.listen=nosuch.dnnd.test:0 \
     --set train.checkpoint_dir= > "$tmp/nosuch.log" 2>&1; then
  fail "an unresolvable http.listen was accepted"
fi
grep -q "cannot resolve listen address 'nosuch.dnnd.test:0'" "$tmp/nosuch.log" || { cat "$tmp/nosuch.log"; fail "unclear error"; }
grep -q "query nosuch.dnnd.test" "$tmp/dns.log" || fail "the lookup did not reach DNS"
cat "$tmp/nosuch.log"
echo "image test: all checks passed"
