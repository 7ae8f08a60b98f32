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
# keys must stay as CONFIG has them for --resume to accept it), PLOT (1 =
# write OUT/NAME_sS.png at the end of each run, the default; 0 = no plots).
#
# Each run is `teacher train CFG --set seed=S --metrics OUT/NAME_sS.csv --checkpoint
# OUT/NAME_sS.tchk --plot OUT/NAME_sS.png --quiet` (log in OUT/NAME_sS.log; ManyWell plots
# its coordinates 0 and 2, as the reference's viz_many_well does). The script can be
# re-run: runs whose metrics file ends with a final record are skipped, and runs with a
# checkpoint but no final record continue with --resume. Ctrl-C stops every run cleanly
# (each writes its checkpoint). A full-length run is 10001 iterations (see
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
set_args=()
for kv in $SETS; do
  [[ $kv == *=* ]] || die "SETS: '$kv' is not KEY=VALUE"
  set_args+=(--set "$kv")
done

# ---- the configurations -----------------------------------------------------------------
shopt -s nullglob
configs=()
if [ $# -eq 0 ]; then
  configs=("$CONFIG_DIR"/diffusion_*.yaml)
else
  for a in "$@"; do
    found=()
    # The first form that names existing files wins: as given, in examples/configs, + .yaml.
    for pattern in "$a" "$CONFIG_DIR/$a" "$CONFIG_DIR/$a.yaml"; do
      # shellcheck disable=SC2206
      expanded=($pattern)
      for f in "${expanded[@]}"; do [ -f "$f" ] && found+=("$f"); done
      [ ${#found[@]} -eq 0 ] || break
    done
    [ ${#found[@]} -gt 0 ] || die "no configuration matches '$a'"
    for f in "${found[@]}"; do
      dup=0
      for c in "${configs[@]}"; do [ "$c" != "$f" ] || dup=1; done
      [ $dup -eq 1 ] || configs+=("$f")
    done
  done
fi
shopt -u nullglob
[ ${#configs[@]} -gt 0 ] || die "no configurations"
mkdir -p "$OUT" || die "cannot create $OUT"

# ---- one run ------------------------------------------------------------------------------
# A metrics file is complete when its last line is a record with final = 1 (last column).
complete() { [ -s "$1" ] && tail -n 1 "$1" | grep -q ',1$'; }

run_one() {
  local cfg=$1 seed=$2 name base rc
  trap '' INT   # Ctrl-C reaches the run itself (same process group); this shell waits for it
  name=$(basename "$cfg" .yaml)
  base="$OUT/${name}_s${seed}"
  local args=(train "$cfg" --metrics "$base.csv" --checkpoint "$base.tchk"
              --checkpoint-every "$CKPT_EVERY" --quiet)
  if [ "$PLOT" = 1 ]; then
    args+=(--plot "$base.png")
    case $name in *manywell*) args+=(--plot-dims "0,2") ;; esac
  fi
  if [ -s "$base.tchk" ]; then
    args+=(--resume "$base.tchk")           # the checkpoint holds the seed and config
    echo "resume $name seed $seed"
  else
    args+=(--set "seed=$seed" "${set_args[@]}")
    echo "start  $name seed $seed"
  fi
  # In the background so that a SIGTERM to this subshell can be passed on to the run.
  "$TEACHER" "${args[@]}" >> "$base.log" 2>&1 &
  local pid=$!
  trap 'kill -TERM $pid 2> /dev/null' TERM
  wait $pid
  rc=$?
  while kill -0 $pid 2> /dev/null; do wait $pid; rc=$?; done
  if [ $rc -eq 0 ]; then
    echo "done   $name seed $seed: $(tail -n 1 "$base.log")"
  elif [ $rc -eq 130 ] || [ $rc -eq 143 ]; then
    echo "stopped $name seed $seed (checkpoint kept; re-run to continue)"
  else
    echo "FAILED $name seed $seed (exit $rc): $(tail -n 1 "$base.log")" >&2
  fi
  return $rc
}

# ---- the study ----------------------------------------------------------------------------
stop=0
trap 'stop=1' INT                                  # the runs got SIGINT from the terminal too
trap 'stop=1; kill -TERM $(jobs -pr) 2> /dev/null' TERM
failed=0
t0=$SECONDS
for cfg in "${configs[@]}"; do
  for seed in $SEEDS; do
    [ $stop -eq 0 ] || break 2
    name=$(basename "$cfg" .yaml)
    if complete "$OUT/${name}_s${seed}.csv"; then
      echo "skip   $name seed $seed (complete)"
      continue
    fi
    while [ "$(jobs -pr | wc -l)" -ge "$JOBS" ] && [ $stop -eq 0 ]; do
      wait -n
      rc=$?
      [ $rc -eq 0 ] || [ $rc -ge 128 ] || failed=$((failed + 1))
    done
    [ $stop -eq 0 ] || break 2
    run_one "$cfg" "$seed" &
  done
done
while [ -n "$(jobs -pr)" ]; do
  wait -n
  rc=$?
  [ $rc -eq 0 ] || [ $rc -ge 128 ] || failed=$((failed + 1))
done
wait

names=()
for cfg in "${configs[@]}"; do names+=("$(basename "$cfg" .yaml)"); done
echo
echo "Diffusion study: ${#configs[@]} configurations x seeds {$SEEDS}, $((SECONDS - t0)) s, results in $OUT"
echo
/usr/bin/python3 scripts/diffusion_report.py --dir "$OUT" "${names[@]}"
if [ $stop -ne 0 ]; then
  echo "diffusion_study: interrupted; re-run the same command to continue" >&2
  exit 130
fi
[ $failed -eq 0 ] || { echo "diffusion_study: $failed run(s) failed (see $OUT/*.log)" >&2; exit 1; }
