#!/usr/bin/env bash
# The grid study (spec §7): every configuration x seeds, JOBS runs at a time, then a Markdown
# table of the results.
#
#   scripts/grid_study.sh [CONFIG ...]
#
# CONFIG: a YAML path, a name in examples/configs ("grid_d2_h64_teacher"), or a glob, quoted
# or not ('grid_d4_*_tb*'); default: every examples/configs/grid_d*.yaml.
# Environment: SEEDS (default "0 1 2"), JOBS (parallel runs, default 2), TEACHER (default
# build/tools/teacher), OUT (default results/grid), CKPT_EVERY (checkpoint interval, default
# 1000 steps).
#
# Each run is `teacher train CFG --set seed=S --metrics OUT/NAME_sS.csv --checkpoint
# OUT/NAME_sS.tchk --quiet` (log in OUT/NAME_sS.log). The script can be re-run: runs whose
# metrics file ends with a final record are skipped, and runs with a checkpoint but no final
# record continue with --resume. Ctrl-C, or `kill -TERM` (or -INT) of the script, stops every
# run cleanly (each writes its checkpoint). A script started in the background by a
# non-interactive shell ignores SIGINT (bash cannot trap it there): stop that one with SIGTERM.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

TEACHER=${TEACHER:-build/tools/teacher}
OUT=${OUT:-results/grid}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
CKPT_EVERY=${CKPT_EVERY:-1000}
CONFIG_DIR=examples/configs

die() { echo "grid_study: $*" >&2; exit 2; }
[ -x "$TEACHER" ] || die "$TEACHER not found: build first (meson setup build && ninja -C build) or set TEACHER"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer, got '$JOBS'"
for s in $SEEDS; do [[ $s =~ ^[0-9]+$ ]] || die "SEEDS: '$s' is not a seed"; done

new_run_args=()
# shellcheck source=scripts/study_lib.sh
. scripts/study_lib.sh
study_configs 'grid_d*.yaml' "$@"
study_run "Grid study" /usr/bin/python3 scripts/summarize_grid.py --dir "$OUT"
