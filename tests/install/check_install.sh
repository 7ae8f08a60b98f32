#!/bin/sh
# Stages `meson install` into a temporary DESTDIR, then builds an out-of-tree program
# (examples/custom_env.c) with nothing but `pkg-config --cflags --libs teacher` from the
# staged prefix, and runs it against the staged shared library. Also checks that every
# public header was installed and that the staged headers compile on their own.
# usage: check_install.sh BUILD_DIR SOURCE_DIR [CC] [PKG_CONFIG]
set -u
build=${1:?usage: check_install.sh BUILD_DIR SOURCE_DIR [CC] [PKG_CONFIG]}
src=${2:?usage: check_install.sh BUILD_DIR SOURCE_DIR [CC] [PKG_CONFIG]}
cc=${3:-cc}
pkgconf=${4:-pkg-config}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tch_install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT PIPE TERM
stage=$tmp/stage

fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. Stage the installation.
if ! out=$(DESTDIR=$stage meson install -C "$build" --no-rebuild --quiet 2>&1); then
  printf '%s\n' "$out" >&2
  fail "meson install into DESTDIR=$stage failed"
fi

# 2. Locate teacher.pc and the libdir/includedir it declares.
pc=$(find "$stage" -name teacher.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "no pkgconfig/teacher.pc was installed (staged files: $(cd "$stage" && find . -type f | tr '\n' ' '))"
pcdir=$(dirname "$pc")
echo "staged $pc"
pc() { PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH} PKG_CONFIG_SYSROOT_DIR=$stage "$pkgconf" "$@"; }
pc --exists teacher || fail "pkg-config cannot read $pc: $(pc --print-errors --exists teacher 2>&1)"
cflags=$(pc --cflags teacher) || fail "pkg-config --cflags teacher failed"
libs=$(pc --libs teacher) || fail "pkg-config --libs teacher failed"
echo "pkg-config --cflags --libs teacher: $cflags $libs"
libdir=$stage$(pc --variable=libdir teacher | sed "s|^$stage||")
incdir=$stage$(pc --variable=includedir teacher | sed "s|^$stage||")
[ -d "$libdir" ] || fail "libdir $libdir from teacher.pc does not exist in the staged tree"
[ -f "$incdir/teacher.h" ] || fail "includedir from teacher.pc ($incdir) has no teacher.h"
printf '%s' "$libs" | grep -q -- '-lteacher' || fail "pkg-config --libs teacher lacks -lteacher: $libs"
pc --modversion teacher >/dev/null || fail "teacher.pc has no version"

# 3. Every public header of the source tree (and the generated version.h) is installed.
for h in "$src"/include/teacher/*.h; do
  [ -f "$incdir/teacher/$(basename "$h")" ] || fail "include/teacher/$(basename "$h") is not installed (install_headers in include/teacher/meson.build)"
done
[ -f "$incdir/teacher/version.h" ] || fail "the generated teacher/version.h is not installed"

# 4. Build the example out of tree with only the pkg-config flags, and run it.
app=$tmp/custom_env
# shellcheck disable=SC2086
if ! out=$("$cc" -std=c11 -Wall -Wextra -Werror -o "$app" "$src/examples/custom_env.c" $cflags $libs -lm 2>&1); then
  printf '%s\n' "$out" >&2
  fail "compiling examples/custom_env.c against the staged prefix with '$cflags $libs' failed"
fi
if ! out=$(LD_LIBRARY_PATH=$libdir "$app" --steps 50 --samples 1000 2>&1); then
  printf '%s\n' "$out" >&2
  fail "the out-of-tree build of custom_env failed to run against $libdir"
fi
printf '%s\n' "$out" | tail -n 3
# ... and it really used the staged library, not one from the build tree or the system.
loaded=$(LD_LIBRARY_PATH=$libdir LD_TRACE_LOADED_OBJECTS=1 "$app" 2>/dev/null | grep libteacher)
case "$loaded" in
  *"$libdir"/libteacher*) echo "loaded: $(echo "$loaded" | sed 's/^[[:space:]]*//')" ;;
  *) fail "custom_env did not load libteacher from $libdir: $loaded" ;;
esac

# 5. Static linking through pkg-config --static (libteacher.a + Libs.private). A sysroot
#    would also be prepended to the absolute paths of system archives in Libs.private, so
#    here the staged prefix is substituted for ${prefix} instead.
if [ -f "$libdir/libteacher.a" ]; then
  prefix=$(PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH} "$pkgconf" --variable=prefix teacher)
  slibs=$(PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH} "$pkgconf" \
          --define-variable=prefix="$stage$prefix" --static --libs teacher) ||
    fail "pkg-config --static --libs teacher failed"
  # shellcheck disable=SC2086
  if ! out=$("$cc" -std=c11 -o "$app.static" "$src/examples/custom_env.c" $cflags \
             -Wl,-Bstatic -lteacher -Wl,-Bdynamic $(printf '%s' "$slibs" | sed 's/-lteacher//') -lm 2>&1); then
    printf '%s\n' "$out" | grep -v '^/usr/bin/ld: .*: in function' | head -n 20 >&2
    fail "static link with 'pkg-config --static --libs teacher' ($slibs) failed: Libs.private of teacher.pc is incomplete"
  fi
  "$app.static" --steps 20 --samples 200 >/dev/null 2>&1 || fail "statically linked custom_env failed to run"
  echo "static link OK: $slibs"
fi
echo "check_install: OK"
