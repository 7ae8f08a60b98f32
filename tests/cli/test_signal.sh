#!/bin/sh
# SIGINT/SIGTERM: the run finishes its step, writes a checkpoint and a metrics record, and
# exits 130/143; resuming from that checkpoint matches an uninterrupted run.
. "$(dirname "$0")/lib.sh"
write_tiny

# Waits until file F has at least N lines (at most ~20 s).
wait_lines() {
  i=0
  while [ "$( (wc -l < "$1") 2> /dev/null || echo 0)" -lt "$2" ]; do
    i=$((i + 1))
    [ $i -lt 400 ] || fail "timed out waiting for $1"
    sleep 0.05
  done
}

for sig in INT TERM; do
  rm -f S.csv S.tchk R.csv
  "$T" train tiny.yaml --steps 100000000 --log-every 50 --metrics S.csv --checkpoint S.tchk \
    > out.txt 2> err.txt &
  pid=$!
  wait_lines S.csv 3       # header, step 0, step 50: training is under way
  kill -s $sig $pid
  set +e
  wait $pid
  rc=$?
  set -e
  want=130
  [ $sig = TERM ] && want=143
  [ $rc -eq $want ] || fail "SIG$sig: exit status $rc, expected $want: $(tail -n 2 err.txt)"
  [ -s S.tchk ] || fail "SIG$sig: no checkpoint"
  grep -q 'interrupted at step' err.txt || fail "SIG$sig: no message"
  n=$(tail -n 1 S.csv | cut -d, -f"$(csv_col step S.csv)")
  [ "$(tail -n 1 S.csv | cut -d, -f"$(csv_col final S.csv)")" = 0 ] || fail "SIG$sig: last record marked final"
  # Continue 30 more steps from the checkpoint and compare with a straight run.
  expect 0 "$T" train tiny.yaml --resume S.tchk --steps $((n + 30)) --eval 0 --quiet
  expect 0 "$T" train tiny.yaml --steps $((n + 30)) --eval 0 --metrics R.csv --quiet
  # The resumed invocation appended to the interrupted run's metrics (kept in the checkpoint).
  cut -d, -f"$(csv_col step S.csv)" S.csv | grep -q -x "$n" ||
    fail "SIG$sig: the resumed run did not append to the interrupted run's metrics"
  [ "$(sed -n 2p S.csv | cut -d, -f"$(csv_col step S.csv)")" = 0 ] ||
    fail "SIG$sig: the resumed run rewrote the interrupted run's metrics"
  csv_steps_increasing S.csv
  [ "$(csv_last_without_wall S.csv)" = "$(csv_last_without_wall R.csv)" ] ||
    fail "SIG$sig: resumed run differs from the straight run of $((n + 30)) steps"
  echo "SIG$sig at step $n: ok"
done
