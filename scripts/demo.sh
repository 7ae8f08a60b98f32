#!/usr/bin/env bash
# Quick start: install dependencies, build, and train a sampler on the built-in deceptive
# grid, printing progress, L1 and modes found. Extra arguments go to the trainer
# (e.g. --ndim 4 --horizon 16 --steps 6000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
exec build/examples/train_grid "$@"
