#!/bin/sh
# Resume is bit-identical: 200 steps straight (metrics A) against 100 steps + checkpoint, then
# --resume to 200 (metrics B); the final records agree in every field but wall_s. Plain TB,
# then Teacher + PER buffer + local search (every component's state goes through the
# checkpoint), then Teacher-Student DB with a buffer, then the GAFN baseline (its RND
# networks); then periodic checkpoints and resumed JSON Lines.
. "$(dirname "$0")/lib.sh"
write_tiny

check_variant() {
  name=$1
  shift
  rm -f A.csv B.csv B.tchk
  expect 0 "$T" train tiny.yaml "$@" --metrics A.csv --quiet
  expect 0 "$T" train tiny.yaml "$@" --steps 100 --metrics B.csv --checkpoint B.tchk --quiet
  [ -s B.tchk ] || fail "$name: no checkpoint written"
  expect 0 "$T" train tiny.yaml --resume B.tchk --steps 200 --quiet
  a=$(csv_last_without_wall A.csv)
  b=$(csv_last_without_wall B.csv)
  [ "$a" = "$b" ] || fail "$name: resumed run differs
  straight: $a
  resumed:  $b"
  for f in loss.student logz.student modes l1 eval.l1; do
    [ "$(tail -n 1 A.csv | cut -d, -f"$(csv_col $f A.csv)")" = "$(tail -n 1 B.csv | cut -d, -f"$(csv_col $f B.csv)")" ] ||
      fail "$name: field $f differs"
  done
  [ "$(grep -c '^step,' B.csv)" -eq 1 ] || fail "$name: resumed CSV has a second header"
  csv_steps_increasing B.csv
  # The first invocation logged every 20 steps (100/5), the resumed one every 40 (200/5):
  # the resumed invocation kept the first one's records and trained only steps 101..200.
  steps=$(cut -d, -f"$(csv_col step B.csv)" B.csv | tr '\n' ' ')
  [ "$steps" = "step 0 20 40 60 80 100 120 160 200 " ] || fail "$name: B steps: $steps"
  echo "$name: identical"
}

check_variant tb
check_variant teacher_per_ls --set teacher.enabled=true --set buffer.enabled=true \
  --set buffer.priority=teacher_reward --set local_search.enabled=true
check_variant teacher_db_buffer --set student.loss=db --set teacher.enabled=true \
  --set buffer.enabled=true --set buffer.priority=loss --set mixer.epsilon=0.05
check_variant gafn --set gafn.enabled=true

# Periodic checkpoints; the stored configuration carries --steps, the metrics path and the
# checkpoint path, so a bare --resume continues the same run to the same total.
rm -f C.csv C.tchk
expect 0 "$T" train tiny.yaml --set teacher.enabled=true --steps 150 --checkpoint C.tchk \
  --checkpoint-every 30 --metrics C.csv --quiet
expect 0 "$T" train tiny.yaml --resume C.tchk --quiet
grep -q '^steps 150 ' out.txt || fail "bare --resume of a finished run: $(cat out.txt)"
csv_steps_increasing C.csv
[ "$(tail -n 1 C.csv | cut -d, -f"$(csv_col final C.csv)")" = 1 ] || fail "C.csv: last record not final"
# JSON Lines resumed from a mid-run checkpoint: the records after it are dropped and rewritten.
rm -f J.jsonl J.tchk
expect 0 "$T" train tiny.yaml --metrics J.jsonl --checkpoint J.tchk --steps 100 --log-every 10 --quiet
expect 0 "$T" train tiny.yaml --resume J.tchk --steps 200 --log-every 25 --quiet
[ "$(sed 's/.*"step":\([0-9]*\),.*/\1/' J.jsonl | tr '\n' ' ')" = \
  "0 10 20 30 40 50 60 70 80 90 100 125 150 175 200 " ] || fail "resumed JSONL steps: $(sed 's/.*"step":\([0-9]*\),.*/\1/' J.jsonl | tr '\n' ' ')"

# --until stops a run part-way (record + checkpoint, exit 0, not final) and --eval-every
# evaluates during training on its own RNG stream: U (stopped at 70 and 130, then resumed
# to the end) equals E (straight), and both train exactly as P (no periodic evaluation).
rm -f E.csv U.csv U.tchk P.csv
expect 0 "$T" train tiny.yaml --set teacher.enabled=true --steps 200 --log-every 20 \
  --eval-every 50 --eval 500 --metrics E.csv --quiet
expect 0 "$T" train tiny.yaml --set teacher.enabled=true --steps 200 --log-every 20 --eval 500 \
  --metrics P.csv --quiet
expect 0 "$T" train tiny.yaml --set teacher.enabled=true --steps 200 --log-every 20 \
  --eval-every 50 --eval 500 --metrics U.csv --checkpoint U.tchk --until 70 --quiet
[ "$(tail -n 1 U.csv | cut -d, -f"$(csv_col step U.csv)")" = 70 ] || fail "--until 70: last record $(tail -n 1 U.csv)"
[ "$(tail -n 1 U.csv | cut -d, -f"$(csv_col final U.csv)")" = 0 ] || fail "--until 70: record marked final"
expect 0 "$T" train tiny.yaml --resume U.tchk --until 130 --quiet
expect 0 "$T" train tiny.yaml --resume U.tchk --quiet
[ "$(cut -d, -f"$(csv_col step U.csv)" U.csv | tr '\n' ' ')" = \
  "step 0 20 40 50 60 70 80 100 120 130 140 150 160 180 200 " ] || fail "U steps: $(cut -d, -f1 U.csv | tr '\n' ' ')"
# E's records without the --until stops and wall_s; U has the extra records at 70 and 130.
strip() { cut -d, -f"$(csv_col wall_s "$1")" --complement "$1" | grep -v -E '^(70|130),'; }
[ "$(strip E.csv)" = "$(strip U.csv)" ] || fail "--until/--resume differs from the straight run"
for st in 50 100 150; do
  v=$(grep "^$st," E.csv | cut -d, -f"$(csv_col eval.l1 E.csv)")
  case $v in nan|'') fail "no evaluation in the record of step $st: $v" ;; esac
done
v=$(grep "^60," E.csv | cut -d, -f"$(csv_col eval.l1 E.csv)")
[ "$v" = nan ] || fail "record of step 60 carries a stale evaluation: $v"
# E = P plus the evaluation-only records of steps 50 and 150.
for f in loss.student logz.student loss.teacher modes l1 reward_calls; do
  [ "$(grep -v -E '^(50|150),' E.csv | cut -d, -f"$(csv_col $f E.csv)")" = \
    "$(cut -d, -f"$(csv_col $f P.csv)" P.csv)" ] || fail "--eval-every changed the training ($f)"
done
[ "$(csv_last_without_wall E.csv)" = "$(csv_last_without_wall P.csv)" ] || fail "final records differ with --eval-every"
expect 2 "$T" train tiny.yaml --steps 50 --until 20 --quiet
grep -q -- '--until 20 needs a checkpoint path' err.txt || fail "--until without --checkpoint: $(cat err.txt)"
# The discovery schedule (its seen set, FIFOs and adv scores go through the checkpoint's DISC
# section): tfbind8 Teacher + PRT, a small SSR network, 120 steps straight against 60 + resume.
D="$SRC/examples/configs/discovery_tfbind8_teacher.yaml"
DS="--set train.steps=120 --set train.eval_every=60 --set train.eval_samples=256 --set nn.hidden_dim=16"
# shellcheck disable=SC2086
expect 0 "$T" train "$D" $DS --metrics DA.csv --quiet
# shellcheck disable=SC2086
expect 0 "$T" train "$D" $DS --metrics DB.csv --checkpoint DB.tchk --until 60 --quiet
expect 0 "$T" train "$D" --resume DB.tchk --metrics DB.csv --checkpoint DB.tchk --quiet
[ "$(csv_last_without_wall DA.csv)" = "$(csv_last_without_wall DB.csv)" ] || fail "discovery: resumed run differs
  straight: $(csv_last_without_wall DA.csv)
  resumed:  $(csv_last_without_wall DB.csv)"
echo ok
