#!/usr/bin/env bash
# Installs dnnd's dependencies from Debian 12's archive. Run as root.
#   scripts/setup.sh           what building and running dnnd needs (scripts/run.sh)
#   scripts/setup.sh --tests   that plus every test and benchmark dependency
#                              (scripts/test.sh, CI)
# Idempotent: packages already present are skipped, and the package index is
# refreshed only when something is missing.
set -euo pipefail

tests=0
case "${1:-}" in
  --tests) tests=1 ;;
  "") ;;
  *) echo "usage: setup.sh [--tests]" >&2; exit 2 ;;
esac

# Building the dnnd binary (CMake with DNND_BUILD_TESTS/DNND_BUILD_BENCH off,
# as scripts/build.sh configures it without --tests) and running the main job.
packages=(
  build-essential cmake file
  # Boost 1.81: Asio and Beast are header-only; JSON has a static archive.
  libboost1.81-dev libboost-json1.81-dev
  libeigen3-dev
  # libopenblas-dev pulls the pthread variant's static archive; gfortran
  # provides libgfortran.a/libquadmath.a that libopenblas.a needs.
  libopenblas-dev libopenblas0-pthread gfortran
  libzstd-dev zlib1g-dev libminizip-dev libsqlite3-dev libstb-dev
  # Image decoding for predictions (libpng.a, libjpeg.a).
  libpng-dev libjpeg62-turbo-dev
  libtomlplusplus-dev
  # OpenSSL's libcrypto.a: HMAC-SHA256 of the wire handshake.
  libssl-dev
  # ONNX import: onnx.proto compiled by protoc, linked with libprotobuf-lite.a.
  libonnx-dev protobuf-compiler libprotobuf-dev
  # The data the run command trains on.
  dataset-fashion-mnist
)
if ((tests)); then
  packages+=(
    # The GoogleTest suites and the Google Benchmark programs (CMake's
    # DNND_BUILD_TESTS and DNND_BUILD_BENCH need them).
    libgtest-dev libgmock-dev libbenchmark-dev
    # The PyTorch interop test and the reference runs of the benchmarks.
    python3-numpy python3-torch python3-torchvision
    # ONNX models exported by PyTorch in the import tests.
    python3-onnx
    # Benchmark runner: peak RSS via GNU time; wrk drives bench/http_load.py.
    time wrk
    # Wire benchmark baselines: protobuf (installed above), and DockerNN's
    # blosc + Flask path.
    python3-blosc python3-flask python3-requests
    # The fuzz targets CI runs (libFuzzer + ASan/UBSan).
    clang libclang-rt-14-dev
    # tests/lint/format.sh: formatting against .clang-format.
    clang-format
    # Container image (deploy/build-image.sh, which stamps the git revision)
    # and its test (podman with runc); manifest validation (deploy/validate/:
    # yamllint here; kubectl, the docker client and node/npm come with the
    # machine).
    git buildah podman runc yamllint
    # Hosts as network namespaces (tests/deploy/netns_*.py): ip netns, tc tbf
    # for link rates, iptables' nat REDIRECT into the round-trip proxy.
    iproute2 iptables
    # The dashboard's test drives headless Chromium (tests/dashboard/); its npm
    # packages (puppeteer-core, pinned by the lockfile) are installed below.
    chromium
  )
  # The opt-in long tests (DNND_LONG_TESTS=1 scripts/test.sh): the real
  # Docker Swarm smoke test (tests/deploy/swarm_smoke.sh) runs its own dockerd.
  [[ "${DNND_LONG_TESTS:-0}" == 1 ]] && packages+=(docker.io)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: missing packages (${missing[*]}); run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# npm packages of the tests, as their lockfiles pin them (node and npm come
# with the machine; the tests themselves fail clearly without them).
if ((tests)) && command -v npm >/dev/null; then
  here=$(cd "$(dirname "$0")" && pwd)
  for dir in deploy/validate tests/dashboard; do "$here/npm-ci.sh" "$here/../$dir"; done
fi
