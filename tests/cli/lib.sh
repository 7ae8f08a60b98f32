# shellcheck shell=sh
# Shared helpers of the CLI tests (sourced). Arguments of every test: TEACHER SOURCE_ROOT.
set -eu
T=$1
# shellcheck disable=SC2034  # used by the tests that source this file
SRC=$2
case $T in /*) ;; *) T=$(pwd)/$T ;; esac
WORK=$(mktemp -d "${TMPDIR:-/tmp}/teacher-cli.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }

# The tiny run of the tests: ndim 2, horizon 8, 2 x 32 MLP, 200 steps, 1000 eval samples.
write_tiny() {
  cat > tiny.yaml <<'YAML'
env:
  hypergrid: {ndim: 2, horizon: 8}
nn:
  hidden_dim: 32
train:
  steps: 200
  eval_samples: 1000
YAML
}

# expect STATUS CMD...: runs CMD (stdout > out.txt, stderr > err.txt), checks its status.
expect() {
  want=$1
  shift
  set +e
  "$@" > out.txt 2> err.txt
  got=$?
  set -e
  if [ "$got" -ne "$want" ]; then
    cat err.txt >&2
    fail "expected exit status $want, got $got: $*"
  fi
}

# Column number of field NAME in the header of CSV file F.
csv_col() {
  head -n 1 "$2" | tr ',' '\n' | grep -n -x -F "$1" | cut -d: -f1
}

# Strictly increasing steps in CSV file F.
csv_steps_increasing() {
  c=$(csv_col step "$1")
  awk -F, -v c="$c" 'NR > 1 { if (NR > 2 && $c + 0 <= prev) bad = 1; prev = $c + 0 } END { exit bad }' "$1" ||
    fail "$1: steps are not strictly increasing"
}

# Last record of CSV file F without its wall_s column.
csv_last_without_wall() {
  c=$(csv_col wall_s "$1")
  tail -n 1 "$1" | awk -F, -v OFS=, -v c="$c" '{ $c = ""; print }'
}
