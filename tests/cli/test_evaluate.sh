#!/bin/sh
# teacher evaluate: the eval.* record of a checkpoint equals the final evaluation of the run
# that wrote it (same step, same number of samples); GMM40 adds eval.modes and eval.emc;
# JSONL; a hypergrid checkpoint; checkpoints written before eval.modes existed
# (tests/data/gmm40_eval_v1.tchk: 10 evaluation fields); errors.
. "$(dirname "$0")/lib.sh"
CFG=$SRC/examples/configs
tiny="--set env.diffusion.steps=8 --set train.batch_size=32 --set nn.hidden_dim=16
      --set smc.n_chunks=4 --set smc.prefill_batches=2 --set smc.buffer_batches=4
      --set smc.flow_hidden=8 --set train.eval_samples=300"
printf 'env:\n  name: gmm40\n  gmm40: {dim: 2}\n  diffusion: {steps: 8}\n' > g8.yaml

# ---- GMM40: the record reproduces the run's final evaluation ------------------------------
# shellcheck disable=SC2086
expect 0 "$T" train "$CFG/smc_gmm40_smc_buffer.yaml" $tiny --steps 4 --metrics m.csv --checkpoint c.tchk
grep -q -E ' \| modes [0-9]+/40 \| ' out.txt || fail "GMM40 summary has no modes: $(cat out.txt)"
expect 0 "$T" evaluate c.tchk g8.yaml
[ "$(wc -l < out.txt)" -eq 2 ] || fail "evaluate printed $(wc -l < out.txt) lines"
header=$(head -n 1 out.txt)
case $header in step,eval.*) ;; *) fail "evaluate header: $header" ;; esac
echo "$header" | tr ',' '\n' | grep -v -q '^\(step\|eval\..*\)$' && fail "non-eval column: $header"
cp out.txt e.csv
for f in $(echo "$header" | tr ',' ' '); do
  a=$(sed -n 2p e.csv | cut -d, -f"$(csv_col "$f" e.csv)")
  b=$(tail -n 1 m.csv | cut -d, -f"$(csv_col "$f" m.csv)")
  [ "$a" = "$b" ] || fail "$f: evaluate gives $a, the run's final record $b"
done
modes=$(sed -n 2p e.csv | cut -d, -f"$(csv_col eval.modes e.csv)")
emc=$(sed -n 2p e.csv | cut -d, -f"$(csv_col eval.emc e.csv)")
awk -v m="$modes" -v e="$emc" 'BEGIN { exit !(m >= 1 && m <= 40 && m == int(m) && e > 0 && e <= 1) }' ||
  fail "eval.modes $modes / eval.emc $emc out of range"
# Deterministic, and -n changes the sample.
expect 0 "$T" evaluate c.tchk g8.yaml
cmp -s out.txt e.csv || fail "two evaluations of one checkpoint differ"
expect 0 "$T" evaluate c.tchk g8.yaml -n 100 --format jsonl
[ "$(wc -l < out.txt)" -eq 1 ] || fail "jsonl: $(cat out.txt)"
grep -q -E '^\{"step":4,"eval\.log_z":-?[0-9].*,"eval\.mean_log_likelihood":(null|-?[0-9][^,]*),.*"eval\.modes":[0-9]+,"eval\.emc":[0-9.e-]+\}$' out.txt ||
  fail "jsonl record: $(cat out.txt)"

# ---- a checkpoint of an older version (no eval.modes / eval.emc fields) -------------------
printf 'env:\n  name: gmm40\n  gmm40: {dim: 2}\n  diffusion: {steps: 4}\n' > g4.yaml
expect 0 "$T" evaluate "$SRC/tests/data/gmm40_eval_v1.tchk" g4.yaml -n 200
modes=$(sed -n 2p out.txt | cut -d, -f"$(csv_col eval.modes out.txt)")
case $modes in nan|'') fail "old checkpoint: eval.modes $modes" ;; esac
expect 0 "$T" sample --checkpoint "$SRC/tests/data/gmm40_eval_v1.tchk" g4.yaml -n 3

# ---- another energy env: no mode columns' values; a hypergrid checkpoint ------------------
printf 'env:\n  name: funnel\n  diffusion: {steps: 8}\n' > f8.yaml
# shellcheck disable=SC2086
expect 0 "$T" train "$CFG/smc_funnel_tb.yaml" $tiny --steps 2 --checkpoint f.tchk --quiet
grep -q ' modes ' out.txt && fail "funnel summary has modes: $(cat out.txt)"
expect 0 "$T" evaluate f.tchk f8.yaml -n 100
[ "$(sed -n 2p out.txt | cut -d, -f"$(csv_col eval.modes out.txt)")" = nan ] || fail "funnel eval.modes: $(cat out.txt)"
write_tiny
expect 0 "$T" train tiny.yaml --steps 20 --checkpoint h.tchk --quiet
expect 0 "$T" evaluate h.tchk tiny.yaml -n 500
head -n 1 out.txt | grep -q '^step,.*eval\.l1' || fail "hypergrid evaluate header: $(head -n 1 out.txt)"
[ "$(sed -n 2p out.txt | cut -d, -f1)" = 20 ] || fail "hypergrid step: $(cat out.txt)"

# ---- errors --------------------------------------------------------------------------------
expect 2 "$T" evaluate c.tchk
expect 2 "$T" evaluate c.tchk g8.yaml -n 0
expect 2 "$T" evaluate c.tchk g8.yaml --format xml
expect 1 "$T" evaluate missing.tchk g8.yaml
grep -q 'missing.tchk' err.txt || fail "missing checkpoint: $(cat err.txt)"
head -c 5000 c.tchk > trunc.tchk
expect 1 "$T" evaluate trunc.tchk g8.yaml
grep -q 'trunc.tchk' err.txt || fail "truncated checkpoint: $(cat err.txt)"
expect 1 "$T" evaluate c.tchk f8.yaml   # another env
[ ! -s out.txt ] || fail "a failed evaluation printed a record: $(cat out.txt)"
expect 0 "$T" help evaluate
grep -q '^usage: teacher evaluate' out.txt || fail "help evaluate: $(cat out.txt)"
echo ok
