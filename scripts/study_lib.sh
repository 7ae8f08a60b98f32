# shellcheck shell=bash
# Shared by grid_study.sh and diffusion_study.sh (sourced; not run on its own): the
# configuration arguments, one resumable run, and the JOBS-wide scheduler with Ctrl-C
# handling. The caller sets TEACHER, OUT, SEEDS, JOBS, CKPT_EVERY, CONFIG_DIR and die(), and
# may define run_extra_args NAME BASE (appends a run's extra arguments to the array run_extra)
# and the array new_run_args (extra arguments of runs that start from scratch). RUN_ARGS (from
# the environment, split on spaces) adds `teacher train` options to every run, new or resumed:
# e.g. RUN_ARGS="--until 2000 --eval-every 500" takes every run to step 2000 and evaluates it
# on the way; the same command without --until later finishes them.

# study_configs DEFAULT_GLOB [CONFIG ...]: fills the array configs (and creates OUT).
study_configs() {
  local default_glob=$1
  shift
  shopt -s nullglob
  configs=()
  if [ $# -eq 0 ]; then
    # shellcheck disable=SC2206
    configs=($CONFIG_DIR/$default_glob)
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
}

# ---- one run ------------------------------------------------------------------------------
# A metrics file is complete when its last line is a record with final = 1 (last column).
complete() { [ -s "$1" ] && tail -n 1 "$1" | grep -q ',1$'; }

run_one() {
  local cfg=$1 seed=$2 name base rc
  trap '' INT   # the scheduler turns SIGINT into one SIGTERM per run (study_run)
  name=$(basename "$cfg" .yaml)
  base="$OUT/${name}_s${seed}"
  local args=(train "$cfg" --metrics "$base.csv" --checkpoint "$base.tchk"
              --checkpoint-every "$CKPT_EVERY" --quiet)
  run_extra=()
  if declare -F run_extra_args > /dev/null; then run_extra_args "$name" "$base"; fi
  args+=("${run_extra[@]}")
  # shellcheck disable=SC2206
  args+=(${RUN_ARGS:-})
  if [ -s "$base.tchk" ]; then
    args+=(--resume "$base.tchk")           # the checkpoint holds the seed and config
    echo "resume $name seed $seed"
  else
    args+=(--set "seed=$seed" "${new_run_args[@]}")
    echo "start  $name seed $seed"
  fi
  # In the background so that a SIGTERM to this subshell can be passed on to the run; in its
  # own session so that a Ctrl-C on the terminal does not reach it directly: every stop
  # request, from the terminal or from another process, arrives as exactly one SIGTERM (a
  # second signal would kill the run before it writes its checkpoint).
  setsid "$TEACHER" "${args[@]}" >> "$base.log" 2>&1 &
  local pid=$!
  # Forward the first SIGTERM only: `pkill -f` reaches this subshell and the scheduler, which
  # forwards one too, and a second signal would kill the run before its checkpoint.
  trap 'trap "" TERM; kill -TERM $pid 2> /dev/null' TERM
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

# study_run LABEL REPORT_CMD...: runs every (config, seed) not yet complete, JOBS at a time,
# then REPORT_CMD with the configuration names appended; exits 130 if interrupted, 1 if a
# run failed.
study_run() {
  local label=$1 cfg seed name rc
  shift
  stop=0
  # SIGINT (Ctrl-C, or kill -INT from elsewhere) and SIGTERM: no new runs, and one SIGTERM to
  # each running one (run_one passes it on), which writes its checkpoint and exits.
  trap 'stop=1; kill -TERM $(jobs -pr) 2> /dev/null' INT TERM
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

  local names=()
  for cfg in "${configs[@]}"; do names+=("$(basename "$cfg" .yaml)"); done
  echo
  echo "$label: ${#configs[@]} configurations x seeds {$SEEDS}, $((SECONDS - t0)) s, results in $OUT"
  echo
  "$@" "${names[@]}"
  local prog
  prog=$(basename "$0" .sh)
  if [ $stop -ne 0 ]; then
    echo "$prog: interrupted; re-run the same command to continue" >&2
    exit 130
  fi
  [ $failed -eq 0 ] || { echo "$prog: $failed run(s) failed (see $OUT/*.log)" >&2; exit 1; }
}
