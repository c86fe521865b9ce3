#!/bin/sh
# Checks the lock contracts: compiles every source that uses
# core/thread_annotations.h (directly or through its own header) with Clang's
# thread-safety analysis, warnings as errors. GCC, which builds dnnd, ignores
# the annotations; this is where GUARDED_BY / REQUIRES / EXCLUDES are enforced.
#
#   tests/lint/thread_safety.sh [source dir]     (ctest: thread_safety_lint)
#
# Exit 0: all clean; 1: a violation (clang's messages on stderr); 77: no
# clang++ on this machine (ctest reports the test as skipped).
set -eu
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
clang=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$clang" ]; then
  echo "thread_safety: clang++ not found; skipped" >&2
  exit 77
fi
cd "$root/src"
# The .cc files that include the annotations, and the .cc of each header
# that does (foo.h -> foo.cc: where its class's locks are used).
direct=$(grep -rl --include='*.h' --include='*.cc' '"core/thread_annotations.h"' . | sed 's|^\./||')
files=""
for f in $direct; do
  case "$f" in
    *.cc) files="$files $f" ;;
    *.h) [ -f "${f%.h}.cc" ] && files="$files ${f%.h}.cc" ;;
  esac
done
files=$(printf '%s\n' $files | sort -u)
[ -n "$files" ] || { echo "thread_safety: no annotated sources found" >&2; exit 1; }
eigen=$(pkg-config --cflags-only-I eigen3 2>/dev/null || echo -I/usr/include/eigen3)
printf '%s\n' $files | xargs -P 2 -I{} sh -c "
  '$clang' -std=c++20 -fsyntax-only -Wthread-safety -Werror=thread-safety \
    -DBOOST_ASIO_NO_DEPRECATED -DEIGEN_FAST_MATH=0 -I. $eigen {} ||
  { echo 'thread_safety: {} breaks a lock contract' >&2; exit 1; }" || exit 1
echo "thread_safety: $(printf '%s\n' $files | wc -l) files clean"
