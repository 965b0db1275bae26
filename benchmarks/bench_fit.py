"""Benchmark of the fast-path inversion (issue 4) against its peers in the same run.

sreels: ``sreels.inference.fast.fit_image`` on the default two-window 330 x 2048 image
(background, Li, Ti MLLS with shift, O-K peak fits, uncertainties) plus the derived
numbers; cold (first call: references built) and warm (references cached, as for every
further image with the same axes).  Peers on the same image: exspy ``EELSModel.multifit``
on the Ti MLLS task and an lmfit per-row loop of the O-K peak fit (``peers.py``).

    python benchmarks/bench_fit.py [--repeats 7] [--no-peer] > fit.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import environment, json_default, reserve_stdout  # noqa: E402


def sreels_timings(sim, repeats):
    from sreels.inference.derived import derive
    from sreels.inference.fast import fine_references, fit_image
    from sreels.inference.load import WindowData

    det = sim.config.detector
    md = {"sreels": {"detector": {"psf_decay": det.psf_decay}}}
    wins = {k: WindowData(k, v.energy, v.counts.astype(float), sim.position, "sim", det.gain_counts_per_e,
                          det.readout_noise_counts, metadata=md) for k, v in sim.windows.items()}

    def once():
        t0 = time.perf_counter()
        res = fit_image(wins)
        derive(res.position.y_nm, res.columns, res.status == "ok")
        return time.perf_counter() - t0, res

    fine_references.cache_clear()
    cold, res = once()
    warm, stages = [], []
    for _ in range(repeats):
        dt, r = once()
        warm.append(dt)
        stages.append(r.timings_s)
    rows = sim.position.size
    stage_med = {k: float(np.median([s[k] for s in stages])) * 1e3 for k in stages[0]}
    return {
        "cold_ms": cold * 1e3, "warm_median_ms": float(np.median(warm)) * 1e3,
        "warm_min_ms": float(np.min(warm)) * 1e3, "warm_times_ms": [t * 1e3 for t in warm],
        "ms_per_row_warm": float(np.median(warm)) * 1e3 / rows, "stages_median_ms": stage_med,
        "rows_ok": int((res.status == "ok").sum()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--peer-repeats", type=int, default=1)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    real_stdout = reserve_stdout()  # peers log to stdout: keep it for the JSON alone
    from sreels.forward.simulate import simulate

    sim = simulate(rng=a.seed)
    out = {"task": "default 330 x 2048 two-window image: Li, Ti MLLS + shift, O-K peaks, errors, derived",
           "env": environment(), "sreels": sreels_timings(sim, a.repeats)}
    if not a.no_peer:
        from peers import load_simulation, time_exspy_ti_mlls, time_lmfit_ok_loop

        data = load_simulation(sim)
        ex = time_exspy_ti_mlls(data, repeats=a.peer_repeats)
        lm = time_lmfit_ok_loop(data, repeats=a.peer_repeats)
        out["peers"] = {"exspy_ti_mlls": ex, "lmfit_ok_loop": lm}
        s = out["sreels"]
        ratios = {}
        for k, v in ex.items():
            if isinstance(v, dict) and "median_ms" in v:
                ratios[f"exspy_{k}_total_over_sreels_whole_fit"] = v["median_ms"] / s["warm_median_ms"]
                ratios[f"exspy_{k}_over_sreels_ti_stage"] = v["median_ms"] / s["stages_median_ms"]["ti"]
        ratios["lmfit_ok_loop_over_sreels_whole_fit"] = lm["median_ms"] / s["warm_median_ms"]
        ratios["lmfit_ok_loop_over_sreels_o_stage"] = lm["median_ms"] / s["stages_median_ms"]["o"]
        out["ratios"] = ratios
    json.dump(out, real_stdout, indent=2, default=json_default)
    real_stdout.write("\n")
    real_stdout.flush()


if __name__ == "__main__":
    main()
