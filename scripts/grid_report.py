#!/usr/bin/python3
"""docs/results/grid.md tables: libteacher's study (results/grid) beside the reference code's
own runs (results/reference/*.log from grid_timed.py, and readme_seed0.tsv).

    scripts/grid_report.py [--dir results/grid] [--ref results/reference]

Prints Markdown, one table per grid. Standard library only.
"""
import argparse
import math
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import summarize_grid as sg  # noqa: E402

REF_LOG = re.compile(r"^(?P<name>grid_d\d+_h\d+_.+)_s(?P<seed>\d+)\.log$")


def reference_runs(ref_dir):
    """name -> list of (seed, modes, eval_l1) from the reference's logs and README table."""
    out = {}
    tsv = os.path.join(ref_dir, "readme_seed0.tsv")
    if os.path.exists(tsv):
        for line in open(tsv):
            if line.startswith("#") or not line.strip():
                continue
            name, seed, modes, l1 = line.split()
            out.setdefault(name, {})[int(seed)] = (float(modes), float(l1))
    for fn in sorted(os.listdir(ref_dir)) if os.path.isdir(ref_dir) else []:
        m = REF_LOG.match(fn)
        if not m:
            continue
        text = open(os.path.join(ref_dir, fn)).read()
        goals = re.findall(r"n_goals_found: (\d+)/(\d+)", text)
        evals = re.findall(r"Eval: empirical L1 dist: ([0-9.e+-]+)", text)
        if not goals or "BENCH" not in text:
            continue  # unfinished run
        out.setdefault(m.group("name"), {})[int(m.group("seed"))] = (
            float(goals[-1][0]), float(evals[-1]) if evals else math.nan)
    return out


def fmt(values, f):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f.format(values[0])
    return (f + " ± " + f).format(statistics.fmean(values), statistics.stdev(values))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="results/grid")
    ap.add_argument("--ref", default="results/reference")
    a = ap.parse_args()
    runs = {}
    for fn in sorted(os.listdir(a.dir)):
        m = sg.RUN.match(fn)
        if m:
            rec = sg.last_record(os.path.join(a.dir, fn))
            if rec and rec.get("final") == 1.0:
                runs.setdefault(m.group("name"), []).append((int(m.group("seed")), rec))
    ref = reference_runs(a.ref)
    grids = sorted({(int(g.group("d")), int(g.group("h")))
                    for g in (sg.GRID.match(n) for n in set(runs) | set(ref)) if g})
    for d, h in grids:
        print("\n### ndim %d, horizon %d\n" % (d, h))
        print("| method | steps | libteacher modes found | libteacher eval L1 (100k samples) | seeds "
              "| reference modes found | reference seeds | reference eval L1 (20k samples) |")
        print("|---|---|---|---|---|---|---|---|")
        for method in sg.METHODS:
            name = "grid_d%d_h%d_%s" % (d, h, method)
            ours = [r for _, r in sorted(runs.get(name, []))]
            theirs = ref.get(name, {})
            if not ours and not theirs:
                continue
            total = next((r["modes.total"] for r in ours if not math.isnan(r.get("modes.total", math.nan))), math.nan)
            steps = sorted({int(r["step"]) for r in ours})
            modes = fmt([r["modes"] for r in ours], "{:.1f}")
            if ours and not math.isnan(total):
                modes += " / %.0f" % total
            seeds = ",".join(str(s) for s, _ in sorted(runs.get(name, [])))
            rseeds = ",".join(str(s) for s in sorted(theirs))
            rmodes = ", ".join("%.0f" % theirs[s][0] for s in sorted(theirs)) or "—"
            rl1 = fmt([theirs[s][1] for s in sorted(theirs)], "{:.1e}")
            print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                method, ",".join(map(str, steps)) or "—", modes if ours else "—",
                fmt([r["eval.l1"] for r in ours], "{:.3e}"), seeds or "—", rmodes, rseeds or "—", rl1))


if __name__ == "__main__":
    main()
