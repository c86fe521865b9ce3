#!/usr/bin/env bash
# Opt-in fuzzing of config loading, model specs and file decoders with
# libFuzzer + AddressSanitizer + UBSan (clang from Debian: clang,
# libclang-rt-14-dev). Builds into build-fuzz/ and runs for $1 seconds
# (default 60). Crashing inputs land in build-fuzz/ as crash-*; add each to
# tests/core/config_test.cc (or the decoder's test) and fix the guard.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=build-fuzz
mkdir -p "$out/obj"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -DTOML_HEADER_ONLY=1
       -DTOML_EXCEPTIONS=1 -DEIGEN_DONT_PARALLELIZE -DDNND_VERSION='"fuzz"' -Isrc
       -isystem /usr/include/eigen3 -isystem /usr/include/openblas-pthread)
objs=()
for src in $(find src -name '*.cc' ! -name main.cc); do
  obj="$out/obj/$(echo "$src" | tr / _).o"
  [[ "$obj" -nt "$src" ]] || clang++ "${flags[@]}" -c "$src" -o "$obj"
  objs+=("$obj")
done
clang++ "${flags[@]}" -fsanitize=fuzzer tests/fuzz/config_fuzz.cc "${objs[@]}" -o "$out/config_fuzz" \
  /usr/lib/x86_64-linux-gnu/libopenblas.a -lgfortran -lboost_json -lminizip -lz -lpthread
mkdir -p "$out/corpus"
cp -n tests/fuzz/corpus/config/* configs/*.toml configs/models/*.toml "$out/corpus/" 2>/dev/null || true
"$out/config_fuzz" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=4096 \
  -artifact_prefix="$out/" "$out/corpus"
