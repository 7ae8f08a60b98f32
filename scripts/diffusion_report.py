#!/usr/bin/python3
"""Tables of the diffusion study (docs/results/diffusion.md) from the metrics files of
`teacher train` written by scripts/diffusion_study.sh.

    scripts/diffusion_report.py [--dir results/diffusion] [--update docs/results/diffusion.md]
                                [NAME ...]

Reads DIR/NAME_sSEED.csv (or .jsonl), NAME = diffusion_{gmm25,manywell}_{tb,per,per_ls,
teacher}, takes the last record of each run and prints one Markdown table per target, one
row per method: complete seeds, iterations, and mean +- std over seeds of the final
evaluation's metrics (`tch_trainer_evaluate`, as diffusion/train.py's eval_step computes
them): the importance-weighted log Z estimate, its error against the known log Z
(eval.delta_log_z = log Z - estimate, as the reference's delta_log_Z), ELBO, EUBO, the
effective sample size (percent of the samples), W2 against exact target samples (25GMM
only: the distance is not informative in 32-D) and the wall time per run. Runs whose last
record is not final (interrupted, still running, stopped by --until) are listed but left out
of the statistics. Runs made with --eval-every (finished or not) also give a second table per
target: the same metrics at every intermediate evaluation, by iteration, over the seeds that
reached it.
With --update FILE the tables replace what lies between the lines "<!-- results:begin -->"
and "<!-- results:end -->" of FILE. Python 3 standard library only.
"""
import argparse
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize_grid as sg  # noqa: E402  (records, last_record, RUN: the same metrics files)

NAME = re.compile(r"^diffusion_(?P<target>[a-z0-9]+)_(?P<method>.+)$")
TARGETS = [("gmm25", "25GMM (2-D, log Z = 0)", 0.0),
           ("manywell", "ManyWell (32-D, log Z = 164.69567532)", 164.69567532)]
METHODS = [("tb", "TB on-policy"), ("per", "TB + PER"), ("per_ls", "TB + PER + LS"),
           ("teacher", "Teacher")]


fmt = sg.fmt_mean_sd


def collect(directory, names):
    """{name: {"done": [(seed, record)], "partial": [(seed, step)]}} of the runs in directory."""
    runs = {}
    for fn in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        m = sg.RUN.match(fn)
        if not m or not NAME.match(m.group("name")):
            continue
        if names and m.group("name") not in names:
            continue
        rec = sg.last_record(os.path.join(directory, fn))
        entry = runs.setdefault(m.group("name"), {"done": [], "partial": [], "paths": []})
        entry["paths"].append((int(m.group("seed")), os.path.join(directory, fn)))
        if rec and rec.get("final") == 1.0:
            entry["done"].append((int(m.group("seed")), rec))
        else:
            step = rec.get("step", math.nan) if rec else math.nan
            entry["partial"].append((int(m.group("seed")), step))
    return runs


def eval_records(path):
    """{step: record} of the intermediate evaluations (non-final records with eval.log_z)."""
    return {int(r["step"]): r for r in sg.records(path)
            if r is not None and r.get("final") != 1.0
            and not math.isnan(r.get("eval.log_z", math.nan))}


def metric_cells(recs, log_z, w2):
    cells = [fmt([r.get("eval.log_z", math.nan) for r in recs], "{:.3f}"),
             fmt([r.get("eval.delta_log_z", log_z - r.get("eval.log_z", math.nan))
                  for r in recs], "{:.3f}"),
             fmt([r.get("eval.elbo", math.nan) for r in recs], "{:.3f}"),
             fmt([r.get("eval.eubo", math.nan) for r in recs], "{:.3f}"),
             fmt([100 * r.get("eval.ess_fraction", math.nan) for r in recs], "{:.1f}")]
    if w2:
        cells.append(fmt([r.get("eval.w2", math.nan) for r in recs], "{:.3f}"))
    return cells


def curve_table(runs, target, log_z, rows):
    """Intermediate evaluations of every run of target (finished or not), by iteration."""
    w2 = target == "gmm25"
    body = []
    for method, label in rows:
        entry = runs["diffusion_%s_%s" % (target, method)]
        by_step = {}
        for seed, path in sorted(entry["paths"]):
            for step, rec in eval_records(path).items():
                by_step.setdefault(step, []).append((seed, rec))
        for step in sorted(by_step):
            recs = by_step[step]
            body.append("| " + " | ".join(
                [label, str(step), ",".join(str(sd) for sd, _ in recs)] +
                metric_cells([r for _, r in recs], log_z, w2)) + " |")
    if not body:
        return []
    head = ["method", "iteration", "seeds", "log Z (IS)", "Δ log Z", "ELBO", "EUBO",
            "ESS %"] + (["W2"] if w2 else [])
    return (["Intermediate evaluations (`--eval-every`; same metrics, same sample count):\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + body + [""])


def tables(runs):
    out = []
    for target, title, log_z in TARGETS:
        rows = [(m, label) for m, label in METHODS if "diffusion_%s_%s" % (target, m) in runs]
        extra = sorted(n for n in runs if NAME.match(n).group("target") == target
                       and NAME.match(n).group("method") not in dict(METHODS))
        rows += [(NAME.match(n).group("method"), NAME.match(n).group("method")) for n in extra]
        if not rows:
            continue
        w2 = target == "gmm25"
        out.append("### %s\n" % title)
        head = ["method", "seeds", "iterations", "log Z (IS)", "Δ log Z", "ELBO", "EUBO",
                "ESS %"] + (["W2"] if w2 else []) + ["wall s / run"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for method, label in rows:
            entry = runs["diffusion_%s_%s" % (target, method)]
            done = [r for _, r in sorted(entry["done"], key=lambda x: x[0])]
            seeds = ",".join(str(s) for s, _ in sorted(entry["done"], key=lambda x: x[0]))
            if entry["partial"]:
                seeds += "%s(unfinished: %s)" % (" " if seeds else "", ", ".join(
                    "s%d at %s" % (s, "?" if math.isnan(st) else "%.0f" % st)
                    for s, st in sorted(entry["partial"])))
            steps = sorted({int(r["step"]) for r in done if not math.isnan(r.get("step", math.nan))})
            cells = ([label, seeds or "—", ",".join(map(str, steps)) or "—"] +
                     metric_cells(done, log_z, w2))
            cells.append(fmt([r.get("wall_s", math.nan) for r in done], "{:.0f}"))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out += curve_table(runs, target, log_z, rows)
    if not out:
        out.append("No runs yet.\n")
    return "\n".join(out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="results/diffusion")
    ap.add_argument("--update", metavar="FILE", help="rewrite FILE's results section")
    ap.add_argument("names", nargs="*", help="configurations (default: every one in DIR)")
    a = ap.parse_args()
    text = tables(collect(a.dir, set(a.names)))
    print(text)
    if a.update:
        sg.update_results(a.update, text, "diffusion_report")


if __name__ == "__main__":
    main()
