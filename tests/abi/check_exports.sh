#!/bin/sh
# Fails if libteacher.so exports any symbol that does not start with tch_ (the version
# node TCH_0, an absolute symbol of type A, is the only exception).
# With a second argument, also checks the library's DT_SONAME (libteacher.so.<ABI>).
# usage: check_exports.sh path/to/libteacher.so [expected-soname]   (NM, READELF override tools)
set -u
lib=${1:?usage: check_exports.sh libteacher.so [expected-soname]}
want_soname=${2:-}
nm=${NM:-nm}
readelf=${READELF:-readelf}
if [ ! -f "$lib" ]; then
  echo "check_exports: no such library: $lib" >&2
  exit 1
fi
syms=$("$nm" -D --defined-only "$lib") || { echo "check_exports: $nm failed on $lib" >&2; exit 1; }
bad=$(printf '%s\n' "$syms" | awk '
  NF == 0 { next }
  { name = $NF; type = $(NF - 1); sub(/@.*/, "", name) }
  type == "A" && name ~ /^TCH_[0-9]+$/ { next }
  name !~ /^tch_/ { print "  " type " " name }')
n=$(printf '%s\n' "$syms" | awk '$NF ~ /^tch_/' | wc -l)
if [ -n "$bad" ]; then
  echo "check_exports: $lib exports symbols outside the tch_ namespace:" >&2
  printf '%s\n' "$bad" >&2
  exit 1
fi
if [ "$n" -eq 0 ]; then
  echo "check_exports: $lib exports no tch_ symbols at all" >&2
  exit 1
fi
if [ -n "$want_soname" ]; then
  soname=$("$readelf" -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  if [ "$soname" != "$want_soname" ]; then
    echo "check_exports: SONAME of $lib is '$soname', expected '$want_soname'" >&2
    exit 1
  fi
fi
echo "check_exports: $n exported symbols, all tch_*${want_soname:+; SONAME $want_soname}"
