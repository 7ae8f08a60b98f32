#!/bin/sh
# Every public header must compile on its own, first in the TU, as C99, C11 (gcc -pedantic)
# and C++11 (g++ -pedantic), with -Wall -Wextra -Werror.
# usage: check_headers.sh <src>/include <build>/include [gcc] [g++]
set -u
src_inc=${1:?usage: check_headers.sh SRC_INCLUDE BUILD_INCLUDE [CC] [CXX]}
bld_inc=${2:?usage: check_headers.sh SRC_INCLUDE BUILD_INCLUDE [CC] [CXX]}
cc=${3:-gcc}
cxx=${4:-g++}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tch_headers.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT PIPE TERM

headers="teacher.h"
for h in "$src_inc"/teacher/*.h; do
  headers="$headers teacher/$(basename "$h")"
done
[ -f "$bld_inc/teacher/version.h" ] || { echo "missing generated $bld_inc/teacher/version.h" >&2; exit 1; }
headers="$headers teacher/version.h"

fail=0
count=0
for h in $headers; do
  base=$(echo "$h" | tr '/.' '__')
  printf '#include <%s>\nint tch_header_check_%s;\n' "$h" "$base" > "$tmp/$base.c"
  cp "$tmp/$base.c" "$tmp/$base.cpp"
  extra=""
  # experimental.h is only usable with TCH_EXPERIMENTAL defined (static linking only).
  [ "$h" = "teacher/experimental.h" ] && extra="-DTCH_EXPERIMENTAL"
  for mode in "$cc -std=c99 $tmp/$base.c" "$cc -std=c11 $tmp/$base.c" \
              "$cxx -std=c++11 $tmp/$base.cpp"; do
    count=$((count + 1))
    # shellcheck disable=SC2086
    if ! out=$($mode -pedantic -Wall -Wextra -Werror $extra -I"$src_inc" -I"$bld_inc" \
               -c -o "$tmp/$base.o" 2>&1); then
      echo "FAIL: $h with: $(echo "$mode" | cut -d' ' -f1-2)" >&2
      printf '%s\n' "$out" >&2
      fail=$((fail + 1))
    fi
  done
done
if [ "$fail" -ne 0 ]; then
  echo "check_headers: $fail of $count compilations failed" >&2
  exit 1
fi
echo "check_headers: $count compilations passed ($headers)"
