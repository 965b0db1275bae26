"""Benchmark of the Bayesian path's DualEELS preparation (``from_simulation(sim, plural=True)``) on the default
330-row image (``simulate(Scenario(), Instrument(), Detector(), rng=5)``); prints JSON.

Times, interleaved in one process, the current code and (``--reference``) the earlier Li-K tail noise code
kept as the tests' reference (tests/bayes/_plural_reference.py: three FFTs per bin and row, a full eigh per
row), each as wall and CPU time (``time.process_time``: on a shared machine the wall time is inflated by the
other processes, CPU time much less) of the whole preparation and of its two Li-K tail stages
(``plural.tail_covariance``, ``plural._tail_noise_columns``), with the load average.  The PSF operators'
cache is warmed first (a non-plural preparation), so every timed preparation is a later one.

Usage: python benchmarks/bench_bayes_prep.py [--repeats 2] [--reference] [--rows 330]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from sreels.config import Detector, Instrument, Scenario  # noqa: E402
from sreels.forward.simulate import simulate, window_models  # noqa: E402
from sreels.inference.bayes import plural  # noqa: E402
from sreels.inference.bayes.data import from_simulation  # noqa: E402


def _timed(fn, acc, key):
    def wrapper(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*a, **k)
        acc[key] = (time.perf_counter() - t, time.process_time() - c)
        return out
    return wrapper


def _run(sim, impl):
    tc, nc = impl
    acc = {}
    saved = plural.tail_covariance, plural._tail_noise_columns
    plural.tail_covariance, plural._tail_noise_columns = _timed(tc, acc, "tail_covariance"), _timed(nc, acc, "noise_columns")
    try:
        load = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        data = from_simulation(sim, plural=True)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        plural.tail_covariance, plural._tail_noise_columns = saved
    return {"wall_s": wall, "cpu_s": cpu, "load_1min": load,
            **{f"{k}_wall_s": v[0] for k, v in acc.items()}, **{f"{k}_cpu_s": v[1] for k, v in acc.items()},
            "nuisance_columns": int(data.plural[0].extra.shape[0] - len(plural.EXTRA_POWERS))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rows", type=int, default=330)
    ap.add_argument("--reference", action="store_true", help="also time the earlier code (tests' reference)")
    a = ap.parse_args(argv)
    impls = {"current": (plural.tail_covariance, plural._tail_noise_columns)}
    if a.reference:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from tests.bayes._plural_reference import reference_tail_covariance, reference_tail_noise_columns
        impls["reference"] = (lambda *x, whiten=None, **k: (reference_tail_covariance(*x, **k), whiten),
                              lambda cw, row_var, whitened=False: reference_tail_noise_columns(cw[0], row_var))
    sc = dataclasses.replace(Scenario(), rows=a.rows)
    inst = Instrument()
    sim = simulate(sc, inst, Detector(), rng=5, models=window_models(inst))
    from_simulation(sim)                    # the PSF operators' cache
    runs = {k: [] for k in impls}
    for _ in range(a.repeats):
        for k, impl in impls.items():
            runs[k].append(_run(sim, impl))
            print(k, json.dumps(runs[k][-1]), file=sys.stderr, flush=True)
    out = {"image": {"rows": a.rows, "seed": 5}, "cpu_count": os.cpu_count(), "runs": runs}
    if a.reference:
        out["speedup_cpu_median"] = (sorted(r["cpu_s"] for r in runs["reference"])[a.repeats // 2]
                                     / sorted(r["cpu_s"] for r in runs["current"])[a.repeats // 2])
        out["speedup_wall_median"] = (sorted(r["wall_s"] for r in runs["reference"])[a.repeats // 2]
                                      / sorted(r["wall_s"] for r in runs["current"])[a.repeats // 2])
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
