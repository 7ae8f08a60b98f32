#!/usr/bin/python3
"""Markdown table of a grid study from the metrics files of `teacher train`.

    scripts/summarize_grid.py [--dir results/grid] [NAME ...]

Reads DIR/NAME_sSEED.csv (or .jsonl) as written by scripts/grid_study.sh, takes the last
record of each run, and prints one row per configuration NAME (default: every NAME found in
DIR): method, complete seeds, modes found (mean +- std over seeds), eval L1 (mean +- std)
and mean wall time per run. Runs whose last record is not final (interrupted, still
running) are counted but left out of the statistics. Standard library only.
"""
import argparse
import csv
import json
import math
import os
import re
import statistics
import sys

RUN = re.compile(r"^(?P<name>.+)_s(?P<seed>\d+)\.(?P<ext>csv|jsonl)$")
GRID = re.compile(r"^grid_d(?P<d>\d+)_h(?P<h>\d+)_(?P<method>.+)$")
METHODS = ["tb", "tb_eps", "tb_prt", "tb_per", "teacher", "teacher_prt", "teacher_per",
           "tb_ls", "teacher_ls", "tb_ls_per", "teacher_ls_per", "db", "db_per",
           "teacher_db", "teacher_db_per", "gafn"]


def number(v):
    """Metric value: float, NaN for nan/null/missing."""
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def records(path):
    """Every complete record of a metrics file, in order, as dicts of floats; a line that does
    not parse (a JSON error, a CSV row of the wrong width) is None."""
    with open(path, newline="") as f:
        text = f.read()
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # a partial last line (a run writing right now)
    lines = [ln for ln in lines if ln.strip()]
    if path.endswith(".jsonl"):
        out = []
        for ln in lines:
            try:
                out.append({k: number(v) for k, v in json.loads(ln).items()})
            except ValueError:
                out.append(None)
        return out
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    return [{k: number(v) for k, v in zip(header, row)} if len(row) == len(header) else None
            for row in csv.reader(lines[1:])]


def last_record(path):
    """The last complete record of a metrics file as a dict of floats (None if empty; a
    CSV whose last row does not parse gives None, a JSONL file its last parseable record)."""
    recs = records(path)
    if path.endswith(".jsonl"):
        recs = [r for r in recs if r is not None]
    return recs[-1] if recs else None


def mean_std(values, fmt):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    m = statistics.fmean(values)
    if len(values) < 2:
        return fmt.format(m)
    return (fmt + " ± " + fmt).format(m, statistics.stdev(values))


def duration(seconds):
    if math.isnan(seconds):
        return "—"
    if seconds < 100:
        return "%.1f s" % seconds
    s = int(round(seconds))
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else "%d:%02d" % (s // 60, s % 60)


def sort_key(name):
    g = GRID.match(name)
    if not g:
        return (1, name, 0, 0, 0)
    m = g.group("method")
    return (0, "", int(g.group("d")), int(g.group("h")),
            METHODS.index(m) if m in METHODS else len(METHODS), m)



# ---- shared by the study reports (diffusion_report, discovery_report, smc_report) ----------
RESULTS_BEGIN, RESULTS_END = "<!-- results:begin -->", "<!-- results:end -->"


def fmt_mean_sd(values, spec):
    """'mean ± sd' over the finite values ('—' if none; no ± for a single one)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return spec.format(values[0])
    return (spec + " ± " + spec).format(statistics.fmean(values), statistics.stdev(values))


def update_results(path, text, prog):
    """Replaces what lies between the results markers of the Markdown file path with text
    (atomically: a temporary file renamed over it)."""
    with open(path) as f:
        doc = f.read()
    b_, e_ = RESULTS_BEGIN, RESULTS_END
    if b_ not in doc or e_ not in doc or doc.index(b_) > doc.index(e_):
        sys.exit("%s: %s has no %s ... %s section" % (prog, path, b_, e_))
    a = doc.index(b_) + len(b_)
    b = doc.index(e_)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc[:a] + "\n\n" + text.rstrip("\n") + "\n\n" + doc[b:])
    os.replace(tmp, path)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="results/grid", help="directory of the metrics files")
    ap.add_argument("names", nargs="*", help="configuration names (default: all in --dir)")
    args = ap.parse_args()
    if not os.path.isdir(args.dir):
        sys.exit("summarize_grid: no directory %s" % args.dir)

    runs = {}  # name -> list of (seed, record or None)
    for fn in sorted(os.listdir(args.dir)):
        m = RUN.match(fn)
        if not m:
            continue
        try:
            rec = last_record(os.path.join(args.dir, fn))
        except OSError as e:
            print("summarize_grid: %s: %s" % (fn, e), file=sys.stderr)
            rec = None
        runs.setdefault(m.group("name"), []).append((int(m.group("seed")), rec))
    names = args.names or sorted(runs, key=sort_key)

    print("| config | method | seeds | steps | modes found | eval L1 | wall time / run |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        g = GRID.match(name)
        method = g.group("method") if g else "—"
        found = runs.get(name, [])
        done = [r for _, r in found if r and r.get("final") == 1.0]
        seeds = "%d" % len(done) if len(done) == len(found) else "%d/%d" % (len(done), len(found))
        steps = sorted({int(r["step"]) for r in done if not math.isnan(r.get("step", math.nan))})
        total = [r.get("modes.total", math.nan) for r in done]
        total = next((t for t in total if not math.isnan(t)), math.nan)
        modes = mean_std([r.get("modes", math.nan) for r in done], "{:.1f}")
        if modes != "—" and not math.isnan(total):
            modes += " / %.0f" % total
        l1 = mean_std([r.get("eval.l1", math.nan) for r in done], "{:.3e}")
        wall = [r.get("wall_s", math.nan) for r in done]
        wall = [w for w in wall if not math.isnan(w)]
        print("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, method, seeds, ",".join(map(str, steps)) or "—", modes, l1,
            duration(statistics.fmean(wall)) if wall else "—"))


if __name__ == "__main__":
    main()
