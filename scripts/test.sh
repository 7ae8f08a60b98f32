#!/usr/bin/env bash
# The whole default test suite from a fresh clone: install dependencies, build, test.
#   scripts/test.sh            build in build-test/ and run the fast suite, then the same
#                              suite under AddressSanitizer + UBSan, then valgrind on the
#                              unit and fault suites and the short api tests
#   scripts/test.sh --quick    only the first pass
# The slow (statistical/reproduction) suite is separate: meson test -C build-test --suite slow
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

quick=0
[ "${1:-}" = "--quick" ] && quick=1

build() {  # dir, extra meson args...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null
  fi
  ninja -C "$dir" >/dev/null
}

echo "== build and fast suite"
build build-test -Ddebug=true
meson test -C build-test --suite fast --print-errorlogs --num-processes 2

[ $quick -eq 1 ] && exit 0

echo "== fast suite under AddressSanitizer + UndefinedBehaviorSanitizer"
build build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --suite fast --print-errorlogs --num-processes 2 --timeout-multiplier 4

echo "== unit and fault suites, and the short api tests, under valgrind"
VG='valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --quiet'
CK_FORK=no meson test -C build-test --suite unit --suite fault --print-errorlogs --num-processes 2 \
  --timeout-multiplier 20 --wrapper "$VG"
CK_FORK=no meson test -C build-test test_args test_lifecycle example_custom_env --print-errorlogs \
  --num-processes 2 --timeout-multiplier 20 --wrapper "$VG"

echo "== Python binding: pytest against build-test's library (also meson test 'python')"
py_rc=0
TEACHER_LIBRARY=$PWD/build-test/lib/libteacher.so.0 PYTHONDONTWRITEBYTECODE=1 \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider bindings/python/tests || py_rc=$?
if [ $py_rc -ne 0 ]; then
  # pytest exit status 5 means it collected no tests: a failure here, not a pass.
  [ $py_rc -eq 5 ] && echo "python: pytest collected no tests" >&2
  exit $py_rc
fi
