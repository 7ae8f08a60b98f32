#!/bin/sh
# teacher train / sample / config on energy envs (diffusion samplers): the shipped study
# configs shrunk with --set (T 5, batch 16, 16-wide nets, 3-4 steps): metrics columns and
# the final evaluation, the --plot PNG, bit-identical resume, sampling a checkpoint, and the
# errors of options that need a discrete env or a 2-D picture.
. "$(dirname "$0")/lib.sh"
CFG=$SRC/examples/configs
tiny="--set env.diffusion.steps=5 --set train.batch_size=16 --set diffusion.hidden_dim=16
      --set diffusion.s_emb_dim=16 --set diffusion.t_emb_dim=16 --set diffusion.harmonics_dim=16
      --set train.eval_samples=200"

# ---- train the Teacher on 25GMM, with metrics, a checkpoint and a plot -------------------
# shellcheck disable=SC2086
expect 0 "$T" train "$CFG/diffusion_gmm25_teacher.yaml" $tiny --steps 4 --metrics m.csv \
  --checkpoint c.tchk --plot p.png
grep -q -E '^steps 4 \| reward calls [0-9]+ \| loss [^|]+ \| logZ [^|]+ \| eval log Z -?[0-9.]+ \| delta log Z -?[0-9.]+ \| ELBO -?[0-9.]+ \| EUBO -?[0-9.]+ \| ESS [0-9.]+% \| W2 [0-9.]+ \| .* it/s \| .* s$' out.txt ||
  fail "summary line: $(cat out.txt)"
[ "$(wc -l < out.txt)" -eq 1 ] || fail "stdout should hold only the summary line"
grep -q '^teacher: gmm25 dim 2 | diffusion sampler, T 5, batch 16 | Teacher (--teacher) | steps 0..4 | seed 0$' err.txt ||
  fail "header line: $(head -n 1 err.txt)"
for s in 0 1 2 3 4; do
  grep -q "^step $s/4 .* | loss .* | logZ .* | buffer [0-9]* | " err.txt || fail "no diffusion progress line for step $s: $(cat err.txt)"
done
grep -q -E 'modes|L1' err.txt && fail "diffusion progress mentions modes or L1: $(cat err.txt)"
grep -q '^teacher train: plot written to p.png: 2000 Student samples of coordinates (x0, x1)' err.txt ||
  fail "no plot message: $(cat err.txt)"

# Metrics: the diffusion trainer's columns, none of the discrete loop's.
header=$(head -n 1 m.csv)
for f in step loss.student logz.student loss.teacher logz.teacher reward_calls buffer.size \
         threshold eval.log_z eval.elbo eval.eubo eval.ess eval.delta_log_z eval.w2 wall_s final; do
  echo ",$header," | grep -q ",$f," || fail "CSV header lacks '$f': $header"
done
for f in l1 modes eval.l1; do
  echo ",$header," | grep -q ",$f," && fail "CSV header of a diffusion run has '$f'"
done
nf=$(echo "$header" | tr ',' '\n' | wc -l)
awk -F, -v n="$nf" 'NF != n { exit 1 }' m.csv || fail "CSV rows with a wrong number of fields"
csv_steps_increasing m.csv
last=$(tail -n 1 m.csv)
[ "$(echo "$last" | cut -d, -f"$(csv_col final m.csv)")" = 1 ] || fail "last record is not final"
for f in eval.log_z eval.elbo eval.eubo eval.delta_log_z eval.w2 loss.teacher; do
  case $(echo "$last" | cut -d, -f"$(csv_col "$f" m.csv)") in
    nan|inf|-inf|'') fail "final record: $f is not a number" ;;
  esac
done
case $(sed -n 2p m.csv | cut -d, -f"$(csv_col eval.log_z m.csv)") in nan) ;; *) fail "step-0 eval.log_z should be nan";; esac

# The PNG: signature, IHDR 512 x 512.
[ "$(od -A n -t x1 -N 8 p.png | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "p.png has no PNG signature"
[ "$(od -A n -t x1 -j 16 -N 8 p.png | tr -d ' \n')" = 0000020000000200 ] || fail "p.png is not 512 x 512"

# ---- resume: 2 + 2 steps give the run above, bit for bit ---------------------------------
# --resume takes no --set: CONFIG must describe the checkpoint's env (T = 5) by itself.
printf 'env:\n  name: gmm25\n  diffusion: {steps: 5}\n' > g5.yaml
# shellcheck disable=SC2086
expect 0 "$T" train "$CFG/diffusion_gmm25_teacher.yaml" $tiny --steps 2 --metrics r.csv \
  --checkpoint r.tchk --quiet
expect 0 "$T" train g5.yaml --resume r.tchk --steps 4 --quiet
[ "$(csv_last_without_wall r.csv)" = "$(csv_last_without_wall m.csv)" ] ||
  fail "resumed run differs: $(csv_last_without_wall r.csv) vs $(csv_last_without_wall m.csv)"
# The weights agree too (the checkpoints differ in their stored train.steps).
expect 0 "$T" sample --checkpoint r.tchk g5.yaml -n 20
cp out.txt r_samples.txt
expect 0 "$T" sample --checkpoint c.tchk g5.yaml -n 20
cmp -s out.txt r_samples.txt || fail "samples of the resumed and the uninterrupted run differ"

# ---- teacher sample --checkpoint ----------------------------------------------------------
expect 0 "$T" sample --checkpoint c.tchk g5.yaml -n 5 --header
[ "$(head -n 1 out.txt)" = "x0,x1,log_w" ] || fail "sample header: $(head -n 1 out.txt)"
[ "$(wc -l < out.txt)" -eq 6 ] || fail "sample -n 5 --header printed $(wc -l < out.txt) lines"
num='-?[0-9][0-9.e+-]*'
tail -n 5 out.txt | grep -v -q -E "^$num,$num,$num\$" && fail "bad sample line: $(cat out.txt)"
cp out.txt s1.txt
expect 0 "$T" sample --checkpoint c.tchk g5.yaml -n 5 --header
cmp -s out.txt s1.txt || fail "same seed, different samples"
expect 0 "$T" sample --checkpoint c.tchk g5.yaml -n 5 --header --seed 3
cmp -s out.txt s1.txt && fail "--seed has no effect"
expect 0 "$T" sample --checkpoint c.tchk g5.yaml -n 2 --format jsonl
grep -v -q -E "^\\{\"x\":\\[$num,$num\\],\"log_w\":$num\\}\$" out.txt && fail "bad JSONL sample: $(cat out.txt)"
# A policy file cannot hold a diffusion sampler; another env is refused by the library.
expect 2 "$T" sample c.tchk g5.yaml
grep -q -F 'teacher sample --checkpoint CKPT.tchk' err.txt || fail "policy + energy env: $(cat err.txt)"
expect 1 "$T" sample --checkpoint c.tchk "$CFG/diffusion_gmm25_teacher.yaml" -n 2   # T 100
grep -q 'c.tchk' err.txt || fail "another env: $(cat err.txt)"
expect 1 "$T" sample --checkpoint c.tchk "$CFG/diffusion_manywell_tb.yaml" -n 2
expect 2 "$T" sample --checkpoint c.tchk

# ---- ManyWell (32-D) and PER + local search: first and third coordinates -----------------
# shellcheck disable=SC2086
expect 0 "$T" train "$CFG/diffusion_manywell_per_ls.yaml" $tiny --steps 3 --plot mw.png \
  --plot-dims 0,2 --plot-samples 100
grep -q 'background: the log density with the other coordinates at 0' err.txt ||
  fail "32-D plot message: $(cat err.txt)"
grep -q ' | delta log Z ' out.txt || fail "ManyWell summary has no log Z error: $(cat out.txt)"
[ "$(od -A n -t x1 -N 8 mw.png | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "mw.png has no PNG signature"
# shellcheck disable=SC2086
expect 0 "$T" train "$CFG/diffusion_gmm25_tb.yaml" $tiny --steps 2 --eval 0 --plot q.png \
  --plot-range -13,13 --quiet
[ ! -s err.txt ] || fail "--quiet printed on stderr: $(cat err.txt)"
grep -q 'eval log Z' out.txt && fail "--eval 0: summary mentions the evaluation"

# ---- errors -------------------------------------------------------------------------------
expect 2 "$T" train "$CFG/diffusion_gmm25_tb.yaml" --set diffusion.hiden_dim=16
grep -q 'diffusion.hiden_dim' err.txt || fail "bad key: $(cat err.txt)"
expect 2 "$T" train "$CFG/diffusion_gmm25_tb.yaml" --set diffusion.hidden_dim=-5
# A key of the discrete loop that means nothing here: refused by the trainer (exit 1).
# shellcheck disable=SC2086
expect 1 "$T" train "$CFG/diffusion_gmm25_tb.yaml" $tiny --set mixer.epsilon=0.1
grep -q "mixer.epsilon" err.txt || fail "discrete key on an energy env: $(cat err.txt)"
expect 2 "$T" train "$CFG/diffusion_gmm25_tb.yaml" --save-policy x.tchp
grep -q -F -- '--save-policy' err.txt || fail "--save-policy: $(cat err.txt)"
expect 2 "$T" train "$CFG/diffusion_gmm25_tb.yaml" --plot x.png --plot-dims 0,2
expect 2 "$T" train "$CFG/diffusion_gmm25_tb.yaml" --plot x.png --plot-range 1,1
expect 2 "$T" train "$CFG/diffusion_gmm25_tb.yaml" --plot x.png --plot-range 1,2,3
expect 2 "$T" train "$CFG/diffusion_gmm25_tb.yaml" --plot-samples 10
expect 2 "$T" train "$CFG/grid_d2_h64_tb.yaml" --plot x.png
grep -q 'discrete env' err.txt || fail "--plot on the hypergrid: $(cat err.txt)"
if [ -e x.png ] || [ -e x.tchp ]; then fail "a refused run wrote a file"; fi
echo ok
