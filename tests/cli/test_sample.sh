#!/bin/sh
# teacher sample: N lines of a trained policy's samples, CSV or JSONL, reproducible by seed.
. "$(dirname "$0")/lib.sh"
write_tiny
expect 0 "$T" train tiny.yaml --eval 0 --save-policy p.tchp --checkpoint p.tchk --quiet
[ -s p.tchp ] || fail "--save-policy wrote nothing"
expect 0 "$T" sample p.tchp tiny.yaml -n 25
[ "$(wc -l < out.txt)" -eq 25 ] || fail "sample -n 25 printed $(wc -l < out.txt) lines"
grep -v -q -E '^[0-7],[0-7],-?[0-9.e+-]+$' out.txt && fail "bad CSV sample line: $(grep -v -E '^[0-7],[0-7],' out.txt | head -n 1)"
cp out.txt s1.txt
expect 0 "$T" sample p.tchp tiny.yaml -n 25
cmp -s out.txt s1.txt || fail "same seed, different samples"
expect 0 "$T" sample p.tchp tiny.yaml -n 25 --seed 7
cmp -s out.txt s1.txt && fail "--seed has no effect"
expect 0 "$T" sample p.tchp tiny.yaml -n 3 --format jsonl
[ "$(wc -l < out.txt)" -eq 3 ] || fail "jsonl: expected 3 lines"
grep -v -q -E '^\{"x":\[[0-7],[0-7]\],"log_pf":-?[0-9.e+-]+\}$' out.txt && fail "bad JSONL sample line: $(head -n 1 out.txt)"
expect 0 "$T" sample p.tchp tiny.yaml -n 4 --header
[ "$(head -n 1 out.txt)" = "x0,x1,log_pf" ] || fail "--header: $(head -n 1 out.txt)"
[ "$(wc -l < out.txt)" -eq 5 ] || fail "--header: expected a header and 4 samples"
# --checkpoint samples the trainer's Student: the same objects as its saved policy.
expect 0 "$T" sample --checkpoint p.tchk tiny.yaml -n 25
cmp -s out.txt s1.txt || fail "sample --checkpoint differs from the saved policy's samples"
# A policy and an env of other shapes: a library error.
sed 's/horizon: 8/horizon: 9/' tiny.yaml > h9.yaml
expect 1 "$T" sample p.tchp h9.yaml -n 3
expect 1 "$T" sample missing.tchp tiny.yaml
echo ok
