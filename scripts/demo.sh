#!/usr/bin/env bash
# Quick start: install dependencies, build, and train a sampler on the built-in deceptive
# grid with the `teacher` command-line program, printing progress, L1 and modes found.
# Extra arguments go to `teacher train`, e.g.
#   scripts/demo.sh --set teacher.enabled=true
#   scripts/demo.sh --set env.hypergrid.ndim=4 --set env.hypergrid.horizon=16
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec build/tools/teacher train examples/configs/default.yaml "$@"
