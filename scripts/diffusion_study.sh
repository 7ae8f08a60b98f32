#!/usr/bin/env bash
# The diffusion study (issue 4; spec §3.5, §3.10): 25GMM and ManyWell x {TB on-policy, TB +
# PER, TB + PER + MALA local search, Teacher} x seeds, JOBS runs at a time, then the tables
# of docs/results/diffusion.md.
#
#   scripts/diffusion_study.sh [CONFIG ...]
#
# CONFIG: a YAML path, a name in examples/configs ("diffusion_gmm25_teacher"), or a glob,
# quoted or not ('diffusion_manywell_*'); default: every examples/configs/diffusion_*.yaml.
# Environment: SEEDS (default "0 1 2"), JOBS (parallel runs, default 2), TEACHER (default
# build/tools/teacher), OUT (default results/diffusion), CKPT_EVERY (checkpoint interval,
# default 250 iterations), SETS (space-separated KEY=VALUE overrides for new runs, e.g.
# "train.steps=200" for a shortened study; a resumed run keeps its checkpoint's, and env.*
# keys must stay as CONFIG has them for --resume to accept it), RUN_ARGS (`teacher train`
# options added to every run, new or resumed: "--until 2000 --eval-every 500" takes the runs
# to iteration 2000, evaluating every 500; without --until they later run to the end), PLOT (1 =
# write OUT/NAME_sS.png at the end of each run, the default; 0 = no plots).
#
# Each run is `teacher train CFG --set seed=S --metrics OUT/NAME_sS.csv --checkpoint
# OUT/NAME_sS.tchk --plot OUT/NAME_sS.png --quiet` (log in OUT/NAME_sS.log; ManyWell plots
# its coordinates 0 and 2, as the reference's viz_many_well does). The script can be
# re-run: runs whose metrics file ends with a final record are skipped, and runs with a
# checkpoint but no final record continue with --resume. Ctrl-C, or `kill -TERM` of the
# script, stops every run cleanly (each writes its checkpoint; a script started in the
# background by a non-interactive shell ignores SIGINT). A full-length run is 10001 iterations (see
# docs/results/diffusion.md for the time it takes).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

TEACHER=${TEACHER:-build/tools/teacher}
OUT=${OUT:-results/diffusion}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
CKPT_EVERY=${CKPT_EVERY:-250}
SETS=${SETS:-}
PLOT=${PLOT:-1}
CONFIG_DIR=examples/configs

die() { echo "diffusion_study: $*" >&2; exit 2; }
[ -x "$TEACHER" ] || die "$TEACHER not found: build first (meson setup build && ninja -C build) or set TEACHER"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer, got '$JOBS'"
[[ $CKPT_EVERY =~ ^[0-9]+$ ]] || die "CKPT_EVERY must be a non-negative integer, got '$CKPT_EVERY'"
for s in $SEEDS; do [[ $s =~ ^[0-9]+$ ]] || die "SEEDS: '$s' is not a seed"; done
new_run_args=()
for kv in $SETS; do
  [[ $kv == *=* ]] || die "SETS: '$kv' is not KEY=VALUE"
  new_run_args+=(--set "$kv")
done

# Plots of each run (ManyWell: coordinates 0 and 2, as the reference's viz_many_well).
run_extra_args() {
  [ "$PLOT" = 1 ] || return 0
  run_extra+=(--plot "$2.png")
  case $1 in *manywell*) run_extra+=(--plot-dims "0,2") ;; esac
}
# shellcheck source=scripts/study_lib.sh
. scripts/study_lib.sh
study_configs 'diffusion_*.yaml' "$@"
study_run "Diffusion study" /usr/bin/python3 scripts/diffusion_report.py --dir "$OUT"
