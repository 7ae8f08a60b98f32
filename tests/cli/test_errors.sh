#!/bin/sh
# Command-line errors exit 2 with a one-line message; library errors (bad checkpoint, bad
# YAML) exit 1 with tch_last_error().
. "$(dirname "$0")/lib.sh"
write_tiny

one_line() { [ "$(wc -l < err.txt)" -eq 1 ] || fail "expected a one-line error, got: $(cat err.txt)"; }

expect 2 "$T" train tiny.yaml --no-such-option;  one_line; grep -q -- "--no-such-option" err.txt || fail "message does not name the option"
expect 2 "$T" frobnicate;                         one_line
expect 2 "$T" --frobnicate;                       one_line
expect 2 "$T" train;                              one_line
expect 2 "$T" train tiny.yaml --steps;            one_line
expect 2 "$T" train tiny.yaml --steps abc;        one_line; grep -q 'abc' err.txt || fail "bad value not named"
expect 2 "$T" train tiny.yaml --log-every -7;     one_line
expect 2 "$T" train tiny.yaml --set nn.hidden_dim; one_line
expect 2 "$T" train tiny.yaml --set no.such.key=1; one_line; grep -q 'no.such.key' err.txt || fail "bad key not named"
expect 2 "$T" train tiny.yaml --set nn.hidden_dim=-4; one_line
expect 2 "$T" train tiny.yaml --metrics m.txt;    one_line
expect 2 "$T" sample;                             one_line
expect 2 "$T" sample a.tchp tiny.yaml --format xml; one_line
expect 2 "$T" config tiny.yaml --bogus;           one_line
expect 1 "$T" train missing.yaml;                 one_line; grep -q 'missing.yaml' err.txt || fail "missing config not named"
expect 0 "$T" --version
grep -q '^teacher (libteacher) [0-9]' out.txt || fail "--version: $(cat out.txt)"
expect 0 "$T" help
expect 0 "$T" -h
expect 0 "$T" train --help
grep -q -- '--checkpoint-every' out.txt || fail "train --help does not list its options"

# Checkpoints: truncated, corrupted, missing -> exit 1, message names the file.
expect 0 "$T" train tiny.yaml --steps 50 --checkpoint good.tchk --quiet
size=$(wc -c < good.tchk)
head -c $((size / 2)) good.tchk > truncated.tchk
cp good.tchk corrupted.tchk
printf 'garbage!' | dd of=corrupted.tchk bs=1 seek=$((size / 3)) conv=notrunc 2> /dev/null
: > empty.tchk
for f in truncated.tchk corrupted.tchk empty.tchk missing.tchk; do
  expect 1 "$T" train tiny.yaml --resume $f
  one_line
  grep -q "$f" err.txt || fail "--resume $f: message does not name the file: $(cat err.txt)"
done
# --set with --resume, and a CONFIG that describes another env.
expect 2 "$T" train tiny.yaml --resume good.tchk --set seed=1; one_line
sed 's/ndim: 2, horizon: 8/ndim: 2, horizon: 8, beta: 2.0/' tiny.yaml > beta2.yaml
expect 2 "$T" train beta2.yaml --resume good.tchk; one_line
grep -q 'env.hypergrid.beta' err.txt || fail "env mismatch not named: $(cat err.txt)"
echo ok
