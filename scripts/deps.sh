#!/usr/bin/env bash
# Installs (with apt) what building and testing libteacher needs on Debian 12, if missing.
# Sourced or run by scripts/demo.sh and scripts/test.sh; safe to run repeatedly.
set -euo pipefail

PKGS=(gcc g++ meson ninja-build pkgconf
      libblis-dev libblis-pthread-dev libyaml-dev check
      valgrind python3 python3-cffi python3-numpy python3-pytest
      doxygen python3-matplotlib librdkit-dev libboost-dev
      libopenmm-dev)   # examples/aldp (the alanine-dipeptide target; built only when found)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
