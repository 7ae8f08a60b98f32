#!/usr/bin/python3
"""Tables of the Reinforced SMC study (docs/results/smc.md) from the metrics files of
`teacher train` written by scripts/smc_study.sh.

    scripts/smc_report.py [--dir results/smc] [--last 5] [--update docs/results/smc.md]
                          [NAME ...]

Reads DIR/NAME_sSEED.csv (or .jsonl), NAME = smc_{gmm40,funnel,manywell}_{tb,tb_buffer,
smc_buffer,teacher_smc} (others of the same pattern are listed after them), through
scripts/summarize_grid.py's records reader. Per target, three tables:

1. Final results, the paper's protocol (spec §10): for each finished run the mean of its last
   LAST evaluations (the intermediate ones of --eval-every and the final one), then
   mean +- sd over seeds of those per-run means: ELBO, EUBO, the importance-weighted log Z
   estimate, its absolute error |log Z-hat - log Z| against the known log Z, ESS (percent of
   the samples), W2 and RBF-MMD against exact target samples (what tch_trainer_evaluate
   reports; the trainer has no Sinkhorn divergence and no mode coverage, so neither
   appears), the energy evaluations of training (reward_calls) and the wall time per run.
2. Intermediate evaluations by iteration, mean +- sd over the seeds that reached it
   (finished or not).
3. Training diagnostics of the last record: SMC sweeps, the last sweep's log Z-hat and
   ESS, the Teacher's batches, the mean and log-mean-exp of its last batch's log-IWs (under
   its own q), its loss and log Z.
4. GMM40 only: mode coverage of each finished run's final sampler, eval.modes (components
   of 40 that are the nearest of at least one evaluation sample) and eval.emc (entropic
   mode coverage), mean +- sd over seeds; from the final record, or, for runs written
   before those metrics existed, from DIR/NAME_sSEED.eval.csv (`teacher evaluate` of the
   run's final checkpoint: the same evaluation, step and samples as the final record).

Runs whose last record is not final (interrupted, still running, stopped by --until) are
listed but left out of table 1. With --update FILE the tables replace what lies between the
lines "<!-- results:begin -->" and "<!-- results:end -->" of FILE. Python 3 standard
library only.
"""
import argparse
import math
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize_grid as sg  # noqa: E402  (records, last_record, RUN: the same metrics files)

NAME = re.compile(r"^smc_(?P<target>[a-z0-9]+)_(?P<method>.+)$")
TARGETS = [("gmm40", "GMM40 (2-D, log Z = 0)", 0.0),
           ("funnel", "Funnel (10-D, log Z = 0)", 0.0),
           ("manywell", "ManyWell (32-D, log Z = 164.69567532)", 164.69567532)]
METHODS = [("tb", "TB on-policy"), ("tb_buffer", "TB + IW buffer"),
           ("smc_buffer", "TB/SubTB + SMC + IW buffer"),
           ("teacher_smc", "Teacher + SMC + IW buffer")]
NAN = math.nan


fmt = sg.fmt_mean_sd


def mean_finite(values):
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else NAN


def evaluations(path):
    """[(step, record)] of every evaluation of a run, by step: the intermediate ones
    (non-final records with eval.log_z) and the final record's, unless an intermediate
    evaluation already has its step."""
    recs = [r for r in sg.records(path) if r is not None]
    out = {}
    for r in recs:
        if r.get("final") != 1.0 and not math.isnan(r.get("eval.log_z", NAN)):
            out[int(r["step"])] = r
    if recs and recs[-1].get("final") == 1.0 and not math.isnan(recs[-1].get("eval.log_z", NAN)):
        out.setdefault(int(recs[-1]["step"]), recs[-1])
    return sorted(out.items())


def abs_error(r, log_z):
    d = r.get("eval.delta_log_z", NAN)
    if math.isnan(d):
        d = log_z - r.get("eval.log_z", NAN)
    return abs(d)


# (column, function of (record, known log Z), format)
COLUMNS = [("ELBO", lambda r, z: r.get("eval.elbo", NAN), "{:.3f}"),
           ("EUBO", lambda r, z: r.get("eval.eubo", NAN), "{:.3f}"),
           ("log Ẑ (IS)", lambda r, z: r.get("eval.log_z", NAN), "{:.3f}"),
           ("\\|log Ẑ − log Z\\|", abs_error, "{:.3f}"),
           ("ESS %", lambda r, z: 100 * r.get("eval.ess_fraction", NAN), "{:.1f}"),
           ("W2", lambda r, z: r.get("eval.w2", NAN), "{:.3f}"),
           ("MMD", lambda r, z: r.get("eval.mmd", NAN), "{:.4f}")]


def collect(directory, names):
    """{name: {"done": [(seed, path, last record)], "partial": [(seed, step)],
    "paths": [(seed, path)]}} of the runs in directory."""
    runs = {}
    for fn in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        m = sg.RUN.match(fn)
        if not m or not NAME.match(m.group("name")):
            continue
        if names and m.group("name") not in names:
            continue
        path = os.path.join(directory, fn)
        rec = sg.last_record(path)
        entry = runs.setdefault(m.group("name"), {"done": [], "partial": [], "paths": []})
        entry["paths"].append((int(m.group("seed")), path))
        if rec and rec.get("final") == 1.0:
            entry["done"].append((int(m.group("seed")), path, rec))
        else:
            step = rec.get("step", NAN) if rec else NAN
            entry["partial"].append((int(m.group("seed")), step))
    return runs


def rows_of(runs, target):
    rows = [(m, label) for m, label in METHODS if "smc_%s_%s" % (target, m) in runs]
    known = dict(METHODS)
    rows += sorted((NAME.match(n).group("method"),) * 2 for n in runs
                   if NAME.match(n).group("target") == target
                   and NAME.match(n).group("method") not in known)
    return rows


def final_table(runs, target, log_z, rows, last):
    head = (["method", "seeds", "iterations", "evals averaged"] + [c for c, _, _ in COLUMNS] +
            ["energy evals", "wall s / run"])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, label in rows:
        entry = runs["smc_%s_%s" % (target, method)]
        done = sorted(entry["done"], key=lambda x: x[0])
        seeds = ",".join(str(s) for s, _, _ in done)
        if entry["partial"]:
            seeds += "%s(unfinished: %s)" % (" " if seeds else "", ", ".join(
                "s%d at %s" % (s, "?" if math.isnan(st) else "%.0f" % st)
                for s, st in sorted(entry["partial"])))
        per_run = {c: [] for c, _, _ in COLUMNS}
        n_avg = []
        for _, path, _ in done:
            ev = [r for _, r in evaluations(path)][-last:]
            n_avg.append(len(ev))
            for c, f, _ in COLUMNS:
                per_run[c].append(mean_finite([f(r, log_z) for r in ev]))
        steps = sorted({int(r["step"]) for _, _, r in done if not math.isnan(r.get("step", NAN))})
        cells = [label, seeds or "—", ",".join(map(str, steps)) or "—",
                 ",".join(sorted({str(k) for k in n_avg})) or "—"]
        cells += [fmt(per_run[c], spec) for c, _, spec in COLUMNS]
        cells.append(fmt([r.get("reward_calls", NAN) for _, _, r in done], "{:.3g}"))
        cells.append(fmt([r.get("wall_s", NAN) for _, _, r in done], "{:.0f}"))
        out.append("| " + " | ".join(cells) + " |")
    return out


def curve_table(runs, target, log_z, rows):
    body = []
    for method, label in rows:
        by_step = {}
        for seed, path in sorted(runs["smc_%s_%s" % (target, method)]["paths"]):
            for step, rec in evaluations(path):
                by_step.setdefault(step, []).append((seed, rec))
        for step in sorted(by_step):
            recs = by_step[step]
            body.append("| " + " | ".join(
                [label, str(step), ",".join(str(sd) for sd, _ in recs)] +
                [fmt([f(r, log_z) for _, r in recs], spec) for _, f, spec in COLUMNS]) + " |")
    if not body:
        return []
    head = ["method", "iteration", "seeds"] + [c for c, _, _ in COLUMNS]
    return (["Evaluations by iteration (mean ± sd over the seeds that reached it):\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + body + [""])


DIAG = [("SMC sweeps", "smc.sweeps", "{:.0f}"), ("SMC log Ẑ", "smc.log_z_hat", "{:.3f}"),
        ("SMC ESS", "smc.ess", "{:.3f}"), ("Teacher batches", "smc.teacher.batches", "{:.0f}"),
        ("Teacher mean log-IW", "smc.teacher.log_iw", "{:.2f}"),
        ("Teacher log Ẑ", "smc.teacher.log_z_hat", "{:.3f}"),
        ("Teacher loss", "loss.teacher", "{:.3g}"), ("Teacher log Z", "logz.teacher", "{:.2f}"),
        ("Student log Z", "logz.student", "{:.3f}")]


def diag_table(runs, target, rows):
    body = []
    for method, label in rows:
        last = [sg.last_record(p) for _, p in sorted(runs["smc_%s_%s" % (target, method)]["paths"])]
        last = [r for r in last if r]
        if not last:
            continue
        body.append("| " + " | ".join(
            [label, fmt([r.get("step", NAN) for r in last], "{:.0f}")] +
            [fmt([r.get(k, NAN) for r in last], spec) for _, k, spec in DIAG]) + " |")
    if not body:
        return []
    head = ["method", "last step"] + [c for c, _, _ in DIAG]
    return (["Training diagnostics (last record of each run, mean ± sd over seeds):\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + body + [""])


def final_eval(path, rec):
    """The final evaluation of a finished run with its mode metrics: the final record if it
    has eval.modes, else the record of NAME_sS.eval.csv beside it (`teacher evaluate` of
    the final checkpoint) if that is of the same step; None otherwise."""
    if not math.isnan(rec.get("eval.modes", NAN)):
        return rec
    side = re.sub(r"\.(csv|jsonl)$", ".eval.csv", path)
    if not os.path.exists(side):
        return None
    ev = sg.last_record(side)
    if not ev or ev.get("step") != rec.get("step"):
        sys.stderr.write("smc_report: %s is not of the run's final step; ignored\n" % side)
        return None
    return ev


def modes_table(runs, target, rows):
    if target != "gmm40":
        return []
    body = []
    for method, label in rows:
        done = sorted(runs["smc_%s_%s" % (target, method)]["done"], key=lambda x: x[0])
        evs = [(seed, final_eval(path, rec)) for seed, path, rec in done]
        evs = [(seed, ev) for seed, ev in evs if ev]
        if not evs:
            continue
        body.append("| " + " | ".join(
            [label, ",".join(str(sd) for sd, _ in evs),
             fmt([ev.get("eval.modes", NAN) for _, ev in evs], "{:.1f}"),
             " ".join("%.0f" % ev.get("eval.modes", NAN) for _, ev in evs),
             fmt([ev.get("eval.emc", NAN) for _, ev in evs], "{:.3f}")]) + " |")
    if not body:
        return []
    head = ["method", "seeds", "modes covered (of 40)", "per seed", "EMC"]
    return (["Mode coverage of the final sampler (2000 samples of the final evaluation; a "
             "component is covered when it is the nearest of at least one sample; EMC = "
             "entropy of the nearest-component histogram / log 40, 1 = uniform over the 40):\n",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + body + [""])


def tables(runs, last):
    out = []
    for target, title, log_z in TARGETS:
        rows = rows_of(runs, target)
        if not rows:
            continue
        out.append("### %s\n" % title)
        out.append("Final results (per run: mean of its last %d evaluations; then mean ± sd over "
                   "seeds):\n" % last)
        out += final_table(runs, target, log_z, rows, last)
        out.append("")
        out += modes_table(runs, target, rows)
        out += curve_table(runs, target, log_z, rows)
        out += diag_table(runs, target, rows)
    if not out:
        out.append("No runs yet.\n")
    return "\n".join(out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="results/smc")
    ap.add_argument("--last", type=int, default=5,
                    help="evaluations averaged per run in the final table (the paper: 5)")
    ap.add_argument("--update", metavar="FILE", help="rewrite FILE's results section")
    ap.add_argument("names", nargs="*", help="configurations (default: every one in DIR)")
    a = ap.parse_args()
    if a.last < 1:
        sys.exit("smc_report: --last must be >= 1")
    text = tables(collect(a.dir, set(a.names)), a.last)
    print(text)
    if a.update:
        sg.update_results(a.update, text, "smc_report")


if __name__ == "__main__":
    main()
