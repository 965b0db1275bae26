"""Benchmark of ``sreels plan`` (issue 14 target: < 5 s for the default scenario).

Runs ``sreels plan --out DIR`` (the default scenario: the instrument's defaults, DualEELS with plural
scattering) in this process ``--repeats`` times, each in a fresh output folder, and prints one JSON
document: wall time (``time.perf_counter``) and CPU time of this process (``time.process_time``: on a
shared, loaded machine the wall time counts the time other jobs hold the cores, the CPU time does not),
the first run separately (it pays the imports: numpy/scipy/lmfit/matplotlib), and the time per stage
of the last run.  Optionally ``--target`` / ``--vary`` as ``sreels plan`` takes them.

    python benchmarks/bench_plan.py [--repeats 3] [--target r_oo_change_nm=0.002] [--vary dose=0.1:10] [--no-fast]
                                    [--fast-in-thread] [--cold N]

``--cold N``: instead, N cold commands (``python -m sreels.cli plan``, each a fresh process: what a user waits for),
their wall times (median, min, max) and the CPU of each one's process tree.

By default (sreels.plan.planner.FAST_IN_PROCESS) the fast path's prediction and plan.png run in a forked
process: a run's CPU is then this process's plus that child's (``cpu_child_s``), and those two stages are not
timed (the child's timings stay in the child; matplotlib is imported there, not here).  ``--fast-in-thread``:
the former thread (both stages timed, matplotlib imported in this process).

The same figures are printed as a table on stderr (CPU and wall seconds of the imports, of every run and of
every stage of the last run, with the load average), the JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import environment, json_default, reserve_stdout  # noqa: E402


class _Stages:
    """CPU and wall seconds of the plan's stages (wrapping the functions ``make_plan`` calls).  A stage's CPU is
    its thread's (``time.thread_time``): the fast path runs in a thread beside the joint fit's stages, and
    ``process_time`` would count it in whichever stage runs at the same time."""

    def __init__(self):
        self.t = {}

    def wrap(self, mod, name, label):
        fn = getattr(mod, name)

        def timed(*a, **k):
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                cpu, wall = self.t.get(label, (0.0, 0.0))
                self.t[label] = (cpu + time.thread_time() - c0, wall + time.perf_counter() - w0)
        setattr(mod, name, timed)


def _children_cpu():
    """CPU seconds of this process's ended children (the fast path's forked process)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", action="append", default=[])
    ap.add_argument("--vary", action="append", default=[])
    ap.add_argument("--no-fast", action="store_true", help="skip the fast path's prediction (sreels plan --no-fast)")
    ap.add_argument("--fast-in-thread", action="store_true",
                    help="the fast path's prediction and plan.png in a thread / this process, not a forked process")
    ap.add_argument("--cold", type=int, default=0, metavar="N",
                    help="instead: N cold `sreels plan` commands, each a fresh process (what a user waits for)")
    a = ap.parse_args(argv)
    out = reserve_stdout()
    if a.cold:
        doc = _cold(a)
        json.dump(doc, out, indent=1, default=json_default)
        out.write("\n")
        return
    if True:  # noqa: SIM102 - keeps the block of the stdout reservation
        c0, w0 = time.process_time(), time.perf_counter()
        from sreels.cli import main as sreels_main
        from sreels.plan import planner
        planner.FAST_IN_PROCESS = not a.fast_in_thread
        imports = (time.process_time() - c0, time.perf_counter() - w0)
        stages = _Stages()
        for mod, name, label in ((planner, "joint_jacobian", "joint Jacobian (noise-free simulation + model)"),
                                 (planner, "covariances", "joint covariance at the design"),
                                 (planner, "fast_prediction", "fast path on the noise-free image"),
                                 (planner, "_derived_at", "sigma-dose curve"),
                                 (planner, "_vary_point", "--vary points"),
                                 (planner, "make_plan", "make_plan (all of the above)")):
            stages.wrap(mod, name, label)
        if a.fast_in_thread or a.no_fast:   # else drawn in the forked process: matplotlib not imported here
            import sreels.plan.figures as figures
            stages.wrap(figures, "plan_png", "plan.png")
        runs = []
        args = (sum((["--target", t] for t in a.target), []) + sum((["--vary", v] for v in a.vary), [])
                + (["--no-fast"] if a.no_fast else []))
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(a.repeats):
                stages.t.clear()
                k0 = _children_cpu()
                c0, w0 = time.process_time(), time.perf_counter()
                rc = sreels_main(["plan", *args, "--out", os.path.join(tmp, f"p{i}")])
                runs.append({"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
                             "cpu_child_s": _children_cpu() - k0, "exit": rc})
                print(f"run {i}: wall {runs[-1]['wall_s']:.2f} s, cpu {runs[-1]['cpu_s']:.2f} s + child "
                      f"{runs[-1]['cpu_child_s']:.2f} s", file=sys.stderr)
        first = runs[0]
        doc = {"what": "sreels plan --out DIR, default scenario" + (f" {' '.join(args)}" if args else ""),
               "imports_before_first_run": {"cpu_s": imports[0], "wall_s": imports[1]},
               "first_run_including_lazy_imports": first,
               "command_line_estimate": {"cpu_s": imports[0] + first["cpu_s"], "wall_s": imports[1] + first["wall_s"]},
               "later_runs": runs[1:],
               "stages_last_run": {k: {"cpu_s": c, "wall_s": w} for k, (c, w) in stages.t.items()},
               "load_average": os.getloadavg(), "environment": environment()}
        json.dump(doc, out, indent=1, default=json_default)
        out.write("\n")
        _table(doc)


def _cold(a) -> dict:
    """``a.cold`` cold ``sreels plan`` commands (``python -m sreels.cli``: a fresh interpreter, imports included): the
    wall time of each and the CPU of its whole process tree (the forked children too), with the load average."""
    import resource
    import statistics
    import subprocess

    args = (sum((["--target", t] for t in a.target), []) + sum((["--vary", v] for v in a.vary), [])
            + (["--no-fast"] if a.no_fast else []))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.cold):
            k0 = _children_cpu()
            w0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sreels.cli", "plan", *args, "--out", os.path.join(tmp, f"c{i}")],
                           check=True, stdout=subprocess.DEVNULL)
            runs.append({"wall_s": time.perf_counter() - w0, "cpu_tree_s": _children_cpu() - k0,
                         "load_average_1min": os.getloadavg()[0]})
            print(f"cold run {i}: wall {runs[-1]['wall_s']:.2f} s, CPU (process tree) {runs[-1]['cpu_tree_s']:.2f} s, "
                  f"load {runs[-1]['load_average_1min']:.1f}", file=sys.stderr)
    walls = [r["wall_s"] for r in runs]
    doc = {"what": "cold `sreels plan --out DIR`, default scenario" + (f" {' '.join(args)}" if args else ""),
           "runs": runs, "wall_median_s": statistics.median(walls), "wall_min_s": min(walls), "wall_max_s": max(walls),
           "peak_rss_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
           "environment": environment()}
    print(f"wall median {doc['wall_median_s']:.2f} s (min {min(walls):.2f}, max {max(walls):.2f}) over {len(walls)} "
          "cold runs; on a loaded machine the wall time holds the other jobs' share of the two cores", file=sys.stderr)
    return doc


def _table(doc):
    """The figures of ``doc`` as a table on stderr."""
    p = lambda *x: print(*x, file=sys.stderr)  # noqa: E731
    p(f"\n{doc['what']}  (load average {', '.join(f'{x:.1f}' for x in doc['load_average'])}; timings on a loaded "
      "machine are inflated)")
    p(f"{'':72s} {'CPU s':>8s} {'wall s':>8s} {'child CPU s':>12s}")
    rows = [("imports (numpy, scipy, sreels.plan)", doc["imports_before_first_run"]),
            ("first run (with lazy imports; matplotlib in the forked child)", doc["first_run_including_lazy_imports"]),
            ("command line estimate (imports + first run)", doc["command_line_estimate"])]
    rows += [(f"later run {i + 2}", r) for i, r in enumerate(doc["later_runs"])]
    rows += [(f"  stage (its thread's CPU): {k}", v) for k, v in doc["stages_last_run"].items()]
    for name, v in rows:
        child = f"{v['cpu_child_s']:12.2f}" if "cpu_child_s" in v else ""
        p(f"{name[:72]:72s} {v['cpu_s']:8.2f} {v['wall_s']:8.2f} {child}")


if __name__ == "__main__":
    main()
