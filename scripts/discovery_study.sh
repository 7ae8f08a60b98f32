#!/usr/bin/env bash
# The discovery study (issue 7; spec §4.6-§4.8): QM9 and sEH fragment strings x {on-policy
# TB, TB + PRT replay, Teacher} x seeds, JOBS runs at a time, then the tables and plots of
# docs/results/discovery.md.
#
#   scripts/discovery_study.sh [CONFIG ...]
#
# CONFIG: a YAML path, a name in examples/configs ("discovery_qm9str_teacher"), or a glob,
# quoted or not ('discovery_sehstr_*'); default: every examples/configs/discovery_*.yaml.
# Environment: SEEDS (default "0 1 2"), JOBS (parallel runs, default 2), TEACHER (default
# build/tools/teacher), OUT (default results/discovery), CKPT_EVERY (checkpoint interval,
# default 0: only at the end), SETS (space-separated KEY=VALUE overrides for new runs, e.g.
# "train.steps=200" for a shortened study), RUN_ARGS (`teacher train` options added to every
# run, e.g. "--until 400"), REPORT (1 = rewrite docs/results/discovery.md and its plots at
# the end, the default; 0 = print the tables only).
#
# Each run is `teacher train CFG --set seed=S --metrics OUT/NAME_sS.csv --checkpoint
# OUT/NAME_sS.tchk --quiet` (log in OUT/NAME_sS.log). Runs whose metrics file ends with a
# final record are skipped; runs with a checkpoint but no final record continue with --resume
# (the checkpoint's DISC section holds the discovery state, so a resumed run is bit-identical
# to a straight one).
# Ctrl-C, or `kill -TERM` of the script, stops every run (a script started in the
# background by a non-interactive shell ignores SIGINT: stop it with SIGTERM).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

TEACHER=${TEACHER:-build/tools/teacher}
OUT=${OUT:-results/discovery}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
CKPT_EVERY=${CKPT_EVERY:-0}
SETS=${SETS:-}
REPORT=${REPORT:-1}
CONFIG_DIR=examples/configs

die() { echo "discovery_study: $*" >&2; exit 2; }
[ -x "$TEACHER" ] || die "$TEACHER not found: build first (meson setup build && ninja -C build) or set TEACHER"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer, got '$JOBS'"
[[ $CKPT_EVERY =~ ^[0-9]+$ ]] || die "CKPT_EVERY must be a non-negative integer, got '$CKPT_EVERY'"
for s in $SEEDS; do [[ $s =~ ^[0-9]+$ ]] || die "SEEDS: '$s' is not a seed"; done
new_run_args=()
for kv in $SETS; do
  [[ $kv == *=* ]] || die "SETS: '$kv' is not KEY=VALUE"
  new_run_args+=(--set "$kv")
done

# shellcheck source=scripts/study_lib.sh
. scripts/study_lib.sh
study_configs 'discovery_*.yaml' "$@"

report=(/usr/bin/python3 scripts/discovery_report.py --dir "$OUT")
[ "$REPORT" != 1 ] || report+=(--update docs/results/discovery.md --plots docs/results)
study_run "Discovery study" "${report[@]}"
