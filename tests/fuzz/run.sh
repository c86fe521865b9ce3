#!/usr/bin/env bash
# Fuzzing with libFuzzer + AddressSanitizer + UBSan (clang from Debian:
# clang, libclang-rt-14-dev). Builds into build-fuzz/ and runs one target for
# $2 seconds (default 60):
#   tests/fuzz/run.sh config [secs]   config loading, model specs, file decoders
#   tests/fuzz/run.sh wire [secs]     wire frames and the HELLO handshake
#   tests/fuzz/run.sh http [secs]     HTTP requests as the server parses them, path normalisation, router + token guard
#   tests/fuzz/run.sh data [secs]     dataset decoders (IDX, NPY, NPZ, CSV, gzip) and safetensors, under limits
#   tests/fuzz/run.sh image [secs]    image decoding for predictions (PNG, JPEG), under limits
# scripts/test.sh runs the wire target for a minute on every CI run; longer
# runs are opt-in. Crashing inputs land in build-fuzz/ as crash-*; add each to
# the area's unit tests and fix the decoder.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:-config}
secs=${2:-60}
case "$target" in config|wire|http|data|image) ;; *) echo "run.sh: unknown target '$target' (config, wire, http, data or image)" >&2; exit 2;; esac
out=build-fuzz
mkdir -p "$out/obj"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -DTOML_HEADER_ONLY=1
       -DTOML_EXCEPTIONS=1 -DEIGEN_DONT_PARALLELIZE -DDNND_VERSION='"fuzz"' -Isrc -I"$out/generated"
       -isystem /usr/include/eigen3 -isystem /usr/include/openblas-pthread)
objs=()
compile() {  # objects are reused while newer than their source
  [[ "$2" -nt "$1" ]] || clang++ "${flags[@]}" -c "$1" -o "$2"
}
# The ONNX schema's C++ (CMakeLists.txt generates it the same way).
mkdir -p "$out/generated"
[[ "$out/generated/onnx/onnx.pb.cc" -nt /usr/include/onnx/onnx.proto ]] ||
  protoc --proto_path=/usr/include --cpp_out="$out/generated" /usr/include/onnx/onnx.proto
pids=()
for src in $(find src -name '*.cc' ! -name main.cc); do
  obj="$out/obj/$(echo "$src" | tr / _).o"
  objs+=("$obj")
  compile "$src" "$obj" &
  pids+=($!)
  while (($(jobs -rp | wc -l) >= $(nproc))); do wait -n || true; done
done
# Files the library embeds (src/core/embedded_files.h), generated as the CMake build does.
cmake -DDIR=src/roles/controller/dashboard -DNAME=DashboardAssets -DOUTPUT="$out/DashboardAssets.cc" -P cmake/embed_files.cmake
objs+=("$out/obj/DashboardAssets.o" "$out/obj/onnx.pb.o")
compile "$out/generated/onnx/onnx.pb.cc" "$out/obj/onnx.pb.o" &
pids+=($!)
compile "$out/DashboardAssets.cc" "$out/obj/DashboardAssets.o" &
pids+=($!)
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
((failed == 0)) || { echo "run.sh: compilation failed" >&2; exit 1; }
clang++ "${flags[@]}" -fsanitize=fuzzer "tests/fuzz/${target}_fuzz.cc" "${objs[@]}" -o "$out/${target}_fuzz" \
  /usr/lib/x86_64-linux-gnu/libopenblas.a -lgfortran -lboost_json -lminizip -lz -lzstd -lcrypto -lsqlite3 -l:libpng16.a -l:libjpeg.a -lstb -l:libprotobuf-lite.a -lpthread
mkdir -p "$out/corpus-$target"
cp -n tests/fuzz/corpus/"$target"/* "$out/corpus-$target/" 2>/dev/null || true
if [[ $target == config ]]; then
  cp -n configs/*.toml configs/models/*.toml "$out/corpus-$target/" 2>/dev/null || true
fi
# The wire target takes frames up to 1 MiB: a frame's cost can grow with its
# size (65,535 fields once took seconds), which 8 KiB inputs never show.
max_len=8192
[[ $target == wire ]] && max_len=1048576
# UBSan reports (an overflow, a bad shift) stop the run like ASan's do: by
# default UBSan prints and goes on, and a run that only printed one passed.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
"$out/${target}_fuzz" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus-$target"
