#!/bin/sh
# Every shipped configuration (examples/configs/*.yaml) loads, prints through `teacher
# config`, round-trips, and builds its env and trainer (--check). The GAFN files may fail
# with exactly the library's GAFN-not-available message, and nothing else. The diffusion
# study's files build diffusion trainers with the reference's sizes and methods.
. "$(dirname "$0")/lib.sh"
n=0
for f in "$SRC"/examples/configs/*.yaml; do
  name=$(basename "$f")
  head -n 1 "$f" | grep -q '^# ' || fail "$name does not start with a comment"
  set +e
  "$T" config --check "$f" > out.yaml 2> err.txt
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    case $name in
      *gafn*) grep -q -F 'gafn.enabled: the GAFN baseline is not available yet' err.txt ||
                fail "$name: $(cat err.txt)" ;;
      *) fail "$name: exit $rc: $(cat err.txt)" ;;
    esac
  fi
  cp err.txt "check_$name.txt"
  # The printed YAML is the same configuration.
  expect 0 "$T" config out.yaml
  cmp -s out.txt out.yaml || fail "$name: printed config does not round-trip"
  n=$((n + 1))
done
[ $n -eq 94 ] || fail "expected 94 shipped configs (64 grid study + default + 8 diffusion + 12 Reinforced SMC + 9 discovery), found $n"
for g in d2_h64 d2_h128 d4_h16 d4_h32; do
  for m in tb tb_eps tb_prt tb_per teacher teacher_prt teacher_per tb_ls teacher_ls tb_ls_per \
           teacher_ls_per db db_per teacher_db teacher_db_per gafn; do
    [ -f "$SRC/examples/configs/grid_${g}_$m.yaml" ] || fail "missing grid_${g}_$m.yaml"
  done
done
# The diffusion study: 2 targets x 4 methods, each the reference's run (batch 500, T 100,
# 10001 iterations) with the method --check reports.
for e in gmm25:2 manywell:32; do
  for m in tb:'TB on-policy' per:'TB + PER (--per)' per_ls:'TB + PER + MALA local search (--per --ls)' \
           teacher:'Teacher (--teacher)'; do
    f="diffusion_${e%%:*}_${m%%:*}.yaml"
    [ -f "$SRC/examples/configs/$f" ] || fail "missing $f"
    grep -q -F "ok: 10001 steps, diffusion sampler on a ${e#*:}-D target, T 100, batch 500, ${m#*:}" \
      "check_$f.txt" || fail "$f: $(cat "check_$f.txt")"
  done
done
# The Reinforced SMC study: 3 targets x 3 methods at the reference's sizes (N 2000, T 64,
# 20000 iterations), with the method --check reports.
for e in gmm40:2 funnel:10 manywell:32; do
  for m in smc_buffer:'TB/SubTB + SMC + IW buffer' tb_buffer:'TB + IW buffer' tb:'TB on-policy, OU reference'; do
    f="smc_${e%%:*}_${m%%:*}.yaml"
    [ -f "$SRC/examples/configs/$f" ] || fail "missing $f"
    grep -q -F "ok: 20000 steps, diffusion sampler on a ${e#*:}-D target, T 64, batch 2000, Reinforced SMC" \
      "check_$f.txt" || fail "$f: $(cat "check_$f.txt")"
    grep -q -F "${m#*:}" "check_$f.txt" || fail "$f: $(cat "check_$f.txt")"
  done
done
# The defaults print too, and --set applies.
expect 0 "$T" config --set seed=5
grep -q '^seed: 5$' out.txt || fail "config --set seed=5"
echo "ok ($n configs)"
