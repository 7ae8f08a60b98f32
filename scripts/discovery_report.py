#!/usr/bin/python3
"""Tables and plots of the discovery study (docs/results/discovery.md) from the metrics files
of `teacher train` written by scripts/discovery_study.sh.

    scripts/discovery_report.py [--dir results/discovery] [--update docs/results/discovery.md]
                                [--plots DIR] [NAME ...]

Reads DIR/NAME_sSEED.csv (or .jsonl), NAME = discovery_{qm9str,sehstr,tfbind8}_{tb,tb_prt,teacher}
(others of the same pattern are listed after these), and prints per task:

1. the final record of each run, mean +- std over the complete seeds: rounds, reward calls,
   modes discovered (every distinct object sampled in training that is in the task's mode
   set, the reference's all_num_modes), distinct objects sampled, the top-100's mean raw
   reward and mean pairwise Levenshtein distance (the clean mean; monitor.py reports half of
   it), and the final evaluation on fresh Student samples: the log Z estimate, its error
   against the exact log Z (qm9str), ELBO, EUBO and the Pearson correlation of sum log P_F
   with the log raw reward on exact target samples (qm9str only: sehstr has no target
   samples), the expected raw reward and the modes among the samples; wall time;
2. modes discovered against reward calls: the mean +- std over seeds at a few budgets (the
   last record at or below each budget; runs that have not reached a budget are left out of
   its cell).

With --plots DIR it also writes DIR/discovery_TASK_modes.png per task: modes discovered
against reward calls, the mean over seeds per method with the range of the seeds shaded
(matplotlib from Debian's python3-matplotlib; skipped with a note when it is missing).
With --update FILE the tables (and links to the plots) replace what lies between the lines
"<!-- results:begin -->" and "<!-- results:end -->" of FILE. Runs whose last record is not
final are listed but left out of table 1.
"""
import argparse
import math
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize_grid as sg  # noqa: E402  (records, last_record, RUN: the same metrics files)

NAME = re.compile(r"^discovery_(?P<task>[a-z0-9]+)_(?P<method>.+)$")
TASKS = [("qm9str", "QM9 fragment strings (qm9str: 11 blocks, length 5; 161 051 objects, "
          "805 modes; exact log Z 4.7487)"),
         ("sehstr", "sEH fragment strings (sehstr: 18 blocks, length 6; 34 012 224 objects, "
          "129 modes)"),
         ("tfbind8", "TFBind8 with the STAND-IN reward (tfbind8: 4 letters, length 8; 65 536 "
          "objects, the reference's 328 modes; exact log Z of the stand-in; not the paper's "
          "oracle, see data/README.md)")]
METHODS = [("tb", "TB on-policy"), ("tb_prt", "TB + PRT replay"), ("teacher", "Teacher")]
BUDGET_FRACTIONS = [0.1, 0.25, 0.5, 0.75, 1.0]


fmt = sg.fmt_mean_sd


def collect(directory, names):
    """{name: {"done": [(seed, record)], "partial": [(seed, step)], "paths": [(seed, path)]}}."""
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
            entry["done"].append((int(m.group("seed")), rec))
        else:
            entry["partial"].append((int(m.group("seed")), rec.get("step", math.nan) if rec else math.nan))
    return runs


def curve(path):
    """[(reward_calls, modes)] of a run's records, in order."""
    out = []
    for r in sg.records(path):
        if r is None:
            continue
        c, m = r.get("reward_calls", math.nan), r.get("modes", math.nan)
        if not (math.isnan(c) or math.isnan(m)):
            out.append((c, m))
    return out


def modes_at(points, calls):
    """Modes at the last record with reward_calls <= calls, or NaN if the run stops before."""
    if not points or points[-1][0] < calls:
        return math.nan
    best = math.nan
    for c, m in points:
        if c <= calls:
            best = m
    return best


def rows_of(runs, task):
    rows = [(m, label) for m, label in METHODS if "discovery_%s_%s" % (task, m) in runs]
    extra = sorted(n for n in runs if NAME.match(n).group("task") == task
                   and NAME.match(n).group("method") not in dict(METHODS))
    return rows + [(NAME.match(n).group("method"), NAME.match(n).group("method")) for n in extra]


def seeds_cell(entry):
    done = sorted(entry["done"], key=lambda x: x[0])
    cell = ",".join(str(s) for s, _ in done)
    if entry["partial"]:
        cell += "%s(unfinished: %s)" % (" " if cell else "", ", ".join(
            "s%d at %s" % (s, "?" if math.isnan(st) else "%.0f" % st) for s, st in sorted(entry["partial"])))
    return cell or "—"


def final_table(runs, task, rows):
    head = ["method", "seeds", "rounds", "reward calls", "modes", "unique x", "top-100 reward",
            "top-100 diversity", "log Z (eval)", "Δ log Z", "ELBO", "EUBO", "Pearson",
            "E[reward]", "eval modes", "wall s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, label in rows:
        entry = runs["discovery_%s_%s" % (task, method)]
        done = [r for _, r in sorted(entry["done"], key=lambda x: x[0])]
        per_round = 1 if method == "tb" else 2

        def col(key, spec, scale=1.0):
            return fmt([scale * r.get(key, math.nan) for r in done], spec)
        total = next((r.get("modes.total") for r in done if not math.isnan(r.get("modes.total", math.nan))), math.nan)
        modes = col("modes", "{:.1f}")
        if modes != "—" and not math.isnan(total):
            modes += " / %.0f" % total
        out.append("| " + " | ".join([
            label, seeds_cell(entry), col("step", "{:.0f}", 1.0 / per_round), col("reward_calls", "{:.0f}"),
            modes, col("unique", "{:.0f}"), col("topk.reward", "{:.3f}"), col("topk.diversity", "{:.3f}"),
            col("eval.log_z", "{:.3f}"), col("eval.delta_log_z", "{:.3f}"), col("eval.elbo", "{:.3f}"),
            col("eval.eubo", "{:.3f}"), col("eval.pearson", "{:.3f}"), col("eval.expected_reward", "{:.3f}"),
            col("eval.modes", "{:.1f}"), col("wall_s", "{:.0f}")]) + " |")
    return out


def budget_table(runs, task, rows):
    curves = {m: [curve(p) for _, p in sorted(runs["discovery_%s_%s" % (task, m)]["paths"])]
              for m, _ in rows}
    longest = max((c[-1][0] for cs in curves.values() for c in cs if c), default=0)
    if longest <= 0:
        return []
    budgets = sorted({int(round(f * longest)) for f in BUDGET_FRACTIONS})
    head = ["method"] + ["%d calls" % b for b in budgets]
    out = ["Modes discovered against reward calls (mean ± std over the seeds that reached the "
           "budget):\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, label in rows:
        cells = [fmt([modes_at(c, b) for c in curves[method]], "{:.1f}") for b in budgets]
        out.append("| " + " | ".join([label] + cells) + " |")
    return out + [""]


def plot(runs, task, rows, path):
    """modes vs reward calls, mean over seeds with the seeds' range; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for method, label in rows:
        cs = [curve(p) for _, p in sorted(runs["discovery_%s_%s" % (task, method)]["paths"])]
        cs = [c for c in cs if c]
        if not cs:
            continue
        limit = min(c[-1][0] for c in cs)   # the calls every seed has reached
        xs = sorted({x for c in cs for x, _ in c if x <= limit})
        ys = [[modes_at(c, x) for c in cs] for x in xs]
        mean = [statistics.fmean(v) for v in ys]
        line, = ax.plot(xs, mean, label="%s (%d seed%s)" % (label, len(cs), "" if len(cs) == 1 else "s"))
        if len(cs) > 1:
            ax.fill_between(xs, [min(v) for v in ys], [max(v) for v in ys], alpha=0.2,
                            color=line.get_color(), linewidth=0)
    ax.set_xlabel("reward calls")
    ax.set_ylabel("modes discovered")
    ax.set_title(task)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def report(runs, plots_dir):
    out = []
    for task, title in TASKS:
        rows = rows_of(runs, task)
        if not rows:
            continue
        out.append("### %s\n" % title)
        out += final_table(runs, task, rows)
        out.append("")
        out += budget_table(runs, task, rows)
        if plots_dir:
            name = "discovery_%s_modes.png" % task
            if plot(runs, task, rows, os.path.join(plots_dir, name)):
                out.append("![modes discovered against reward calls, %s](%s)\n" % (task, name))
            else:
                out.append("(No plot: matplotlib is not installed.)\n")
    if not out:
        out.append("No runs yet.\n")
    return "\n".join(out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="results/discovery")
    ap.add_argument("--update", metavar="FILE", help="rewrite FILE's results section")
    ap.add_argument("--plots", metavar="DIR", help="write DIR/discovery_TASK_modes.png")
    ap.add_argument("names", nargs="*", help="configurations (default: every one in DIR)")
    a = ap.parse_args()
    text = report(collect(a.dir, set(a.names)), a.plots)
    print(text)
    if a.update:
        sg.update_results(a.update, text, "discovery_report")


if __name__ == "__main__":
    main()
