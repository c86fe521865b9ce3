#!/usr/bin/env bash
# Every C++ file of src/, tests/ and bench/ is formatted as .clang-format says
# (Google style, 100 columns). Fix with:
#   git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "format.sh: clang-format is not installed (scripts/setup.sh --tests)" >&2; exit 1; }
mapfile -t files < <(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc' 'bench/*.h')
if ! clang-format --dry-run --Werror "${files[@]}" 2> /tmp/dnnd-format.$$; then
  grep -E "^[^ ].*: error:" /tmp/dnnd-format.$$ | cut -d: -f1 | sort | uniq -c | sort -rn | head -40
  echo "format.sh: $(grep -c ': error:' /tmp/dnnd-format.$$) places differ from .clang-format in the files above" >&2
  rm -f /tmp/dnnd-format.$$
  exit 1
fi
rm -f /tmp/dnnd-format.$$
echo "format.sh: ${#files[@]} files match .clang-format"
