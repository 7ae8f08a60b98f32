#!/usr/bin/env bash
# The Reinforced SMC study (issue 5; spec reinforced-smc.md §7, §9.1, §10, §12): GMM40-2D,
# Funnel-10D and ManyWell-32D x {TB on-policy, TB + IW buffer, TB/SubTB + SMC + IW buffer,
# Teacher + SMC + IW buffer} x seeds, JOBS runs at a time, then the tables of
# docs/results/smc.md.
#
#   scripts/smc_study.sh [CONFIG ...]
#
# CONFIG: a YAML path, a name in examples/configs ("smc_gmm40_teacher_smc"), or a glob, quoted
# or not ('smc_manywell_*'); default: examples/configs/smc_*_{tb,tb_buffer,smc_buffer,
# teacher_smc}.yaml (12 configurations).
# Environment: PROTOCOL (full, the default: the reference's sizes, N 2000 and 20000
# iterations, about 12 CPU-hours per run; reduced: N 500 and 1500 iterations, 10-24
# CPU-minutes per run; short: N 500 and 600 iterations, 5-10 CPU-minutes per run, the one
# that was run; see docs/results/smc.md), SEEDS (default "0 1 2"), JOBS (parallel
# runs, default 2), TEACHER (default build/tools/teacher), OUT (default results/smc, or
# results/smc_reduced or results/smc_short with PROTOCOL=reduced or short), CKPT_EVERY (checkpoint interval, default 250
# iterations), SETS (space-separated KEY=VALUE overrides for new runs, added after the
# protocol's own; a resumed run keeps its checkpoint's), RUN_ARGS (`teacher train` options
# for every run, new or resumed; default: the protocol's evaluation interval,
# "--eval-every 200" (full: every iters/100, as the paper), "--eval-every 75" (reduced) or
# "--eval-every 60" (short);
# "--until N" stops every run at iteration N, resumable), PLOT (1 = OUT/NAME_sS.png at the
# end of each run, the default; 0 = no plots).
#
# Both protocols set diffusion.eval_ll_trajectories=0: the mean log-likelihood bound costs
# ten backward trajectories per target sample at every evaluation and is not one of the
# paper's metrics. Each run is `teacher train CFG --set seed=S [--set KEY=VALUE ...]
# --metrics OUT/NAME_sS.csv --checkpoint OUT/NAME_sS.tchk --quiet` (log in OUT/NAME_sS.log).
# Re-running skips finished runs and resumes interrupted ones bit-identically; Ctrl-C (or
# `kill -TERM` of the script) stops every run cleanly after its checkpoint.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

PROTOCOL=${PROTOCOL:-full}
TEACHER=${TEACHER:-build/tools/teacher}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
CKPT_EVERY=${CKPT_EVERY:-250}
SETS=${SETS:-}
PLOT=${PLOT:-1}
CONFIG_DIR=examples/configs

die() { echo "smc_study: $*" >&2; exit 2; }
# The protocols (docs/results/smc.md): what each changes in the shipped configurations.
case $PROTOCOL in
  full)
    OUT=${OUT:-results/smc}
    protocol_sets="diffusion.eval_ll_trajectories=0"
    RUN_ARGS=${RUN_ARGS:-"--eval-every 200"} ;;
  reduced)
    OUT=${OUT:-results/smc_reduced}
    protocol_sets="train.batch_size=500 train.steps=1500 diffusion.eval_ll_trajectories=0"
    RUN_ARGS=${RUN_ARGS:-"--eval-every 75"} ;;
  short)
    OUT=${OUT:-results/smc_short}
    protocol_sets="train.batch_size=500 train.steps=600 diffusion.eval_ll_trajectories=0"
    RUN_ARGS=${RUN_ARGS:-"--eval-every 60"} ;;
  *) die "PROTOCOL must be full, reduced or short, got '$PROTOCOL'" ;;
esac
export RUN_ARGS
[ -x "$TEACHER" ] || die "$TEACHER not found: build first (meson setup build && ninja -C build) or set TEACHER"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer, got '$JOBS'"
[[ $CKPT_EVERY =~ ^[0-9]+$ ]] || die "CKPT_EVERY must be a non-negative integer, got '$CKPT_EVERY'"
for s in $SEEDS; do [[ $s =~ ^[0-9]+$ ]] || die "SEEDS: '$s' is not a seed"; done
new_run_args=()
for kv in $protocol_sets $SETS; do
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
if [ $# -eq 0 ]; then
  set -- 'smc_*_tb' 'smc_*_tb_buffer' 'smc_*_smc_buffer' 'smc_*_teacher_smc'
fi
study_configs 'smc_*.yaml' "$@"
study_run "Reinforced SMC study ($PROTOCOL protocol)" /usr/bin/python3 scripts/smc_report.py --dir "$OUT"
