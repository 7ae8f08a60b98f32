#!/bin/sh
# teacher train on a tiny config: CSV and JSONL metrics files (header, fields, step 0 and
# final records, monotone steps), plain progress lines when stderr is not a terminal, and
# the summary line.
. "$(dirname "$0")/lib.sh"
write_tiny

expect 0 "$T" train tiny.yaml --metrics m.csv
grep -q '^steps 200 | reward calls 3200 | modes [0-9]*/4 | train L1 .* | eval L1 .* | eval modes [0-9]* | .* it/s' out.txt ||
  fail "summary line: $(cat out.txt)"
[ "$(wc -l < out.txt)" -eq 1 ] || fail "stdout should hold only the summary line"
# Not a terminal: plain lines every log interval (200/5 = 40 steps), no carriage returns.
for s in 0 40 80 120 160 200; do
  grep -q "^step $s/200 " err.txt || fail "no progress line for step $s: $(cat err.txt)"
done
if tr -d '\n' < err.txt | grep -q "$(printf '\r')"; then fail "non-TTY progress contains \\r"; fi

header=$(head -n 1 m.csv)
for f in step loss.student logz.student l1 modes modes.total reward_calls grad_steps \
         eval.l1 eval.modes wall_s final; do
  echo ",$header," | grep -q ",$f," || fail "CSV header lacks '$f': $header"
done
[ "$(grep -c '^step,' m.csv)" -eq 1 ] || fail "CSV has more than one header"
nf=$(echo "$header" | tr ',' '\n' | wc -l)
awk -F, -v n="$nf" 'NF != n { exit 1 }' m.csv || fail "CSV rows with a wrong number of fields"
[ "$(wc -l < m.csv)" -eq 7 ] || fail "CSV should have a header and records at 0,40,...,200"
csv_steps_increasing m.csv
[ "$(sed -n 2p m.csv | cut -d, -f"$(csv_col step m.csv)")" = 0 ] || fail "first record is not step 0"
last=$(tail -n 1 m.csv)
[ "$(echo "$last" | cut -d, -f"$(csv_col final m.csv)")" = 1 ] || fail "last record is not final"
[ "$(echo "$last" | cut -d, -f"$(csv_col step m.csv)")" = 200 ] || fail "last record is not step 200"
case $(echo "$last" | cut -d, -f"$(csv_col eval.l1 m.csv)") in nan|'') fail "no eval.l1 in the final record";; esac
case $(sed -n 2p m.csv | cut -d, -f"$(csv_col loss.student m.csv)") in nan) ;; *) fail "step-0 loss should be nan";; esac

# JSON Lines: one object per line, NaN as null, the same fields.
expect 0 "$T" train tiny.yaml --metrics m.jsonl --quiet
[ ! -s err.txt ] || fail "--quiet printed on stderr: $(cat err.txt)"
[ "$(wc -l < m.jsonl)" -eq 6 ] || fail "JSONL should have 6 records"
grep -v -q '^{.*}$' m.jsonl && fail "JSONL line is not an object"
grep -q -i 'nan' m.jsonl && fail "JSONL contains nan"
head -n 1 m.jsonl | grep -q '"step":0,.*"loss.student":null' || fail "JSONL step-0 record: $(head -n 1 m.jsonl)"
for f in step loss.student logz.student l1 modes modes.total reward_calls eval.l1 eval.modes wall_s final; do
  tail -n 1 m.jsonl | grep -q "\"$f\":" || fail "JSONL lacks '$f'"
done
tail -n 1 m.jsonl | grep -q '"final":1}$' || fail "JSONL last record is not final"
sed 's/.*"step":\([0-9]*\),.*/\1/' m.jsonl | tr '\n' ' ' | grep -q '^0 40 80 120 160 200 $' ||
  fail "JSONL steps: $(sed 's/.*"step":\([0-9]*\),.*/\1/' m.jsonl | tr '\n' ' ')"
# The CSV and JSONL runs trained identically.
[ "$(tail -n 1 m.csv | cut -d, -f"$(csv_col loss.student m.csv)")" = \
  "$(tail -n 1 m.jsonl | sed 's/.*"loss.student":\([^,]*\),.*/\1/')" ] || fail "CSV and JSONL runs differ"

# --log-every and --eval 0; the config keys they override.
expect 0 "$T" train tiny.yaml --metrics e.csv --log-every 50 --eval 0 --quiet
[ "$(cut -d, -f1 e.csv | tr '\n' ' ')" = "step 0 50 100 150 200 " ] || fail "--log-every 50: $(cut -d, -f1 e.csv | tr '\n' ' ')"
case $(tail -n 1 e.csv | cut -d, -f"$(csv_col eval.l1 e.csv)") in nan) ;; *) fail "--eval 0 still evaluated";; esac
grep -q 'eval L1' out.txt && fail "--eval 0: summary mentions eval"
expect 0 "$T" train tiny.yaml --set train.metrics_path=k.jsonl --set train.log_every=0 --quiet
[ "$(wc -l < k.jsonl)" -eq 2 ] || fail "train.log_every 0: expected records at start and end only"
echo ok
