"""Validation 16: MAP pulls of the Bayesian path's experimental plural model on DualEELS images.

Simulated DualEELS images of the default scenario (plural scattering and the low-loss window, the
default instrument) with ``thickness_nm`` varied (53, 100, 158 nm: t/lambda ~0.30, 0.57, 0.90), fitted
with ``from_simulation(sim, plural=True)`` (sreels.inference.bayes.plural).  Per image: the MAP with its
Laplace errors; pulls (MAP - truth) / sd of the six study numbers (delta method) and of the per-row
profiles c_Li, Ti3+ fraction, R_OO (every 10th row; sd from 300 draws of the Laplace approximation).

Findings (2026-12-01, 80 rows, seeds 3000-3059, n = 60 images per thickness; results/16_bayes_dualeels/),
pull mean / sd:

=========================  ==============  ==============  ==============
quantity                   t/lambda 0.30   0.57            0.90
=========================  ==============  ==============  ==============
ti_boundary_nm             +0.01 / 0.98    -0.03 / 0.97    -0.15 / 0.97
r_oo_max_nm                -0.39 / 1.00    +0.39 / 1.29    +1.18 / 1.42
r_oo_parent_nm             +0.01 / 1.31    -0.36 / 1.44    -0.48 / 2.70
electrode_width_nm         -0.15 / 1.43    +0.79 / 2.19    +1.59 / 3.74
li_max_rel                 -0.51 / 3.06    +0.60 / 5.65    +0.24 / 11.8
li_at_ti_boundary_rel      -0.20 / 3.31    +0.36 / 5.97    -0.74 / 12.2
rows: Ti3+ fraction        -0.24 / 1.12    +0.27 / 1.28    +0.94 / 1.98
rows: R_OO                 -0.11 / 1.02    +0.18 / 1.23    +0.50 / 1.50
rows: c_Li                 -0.31 / 2.98    +0.62 / 5.32    +0.30 / 11.0
=========================  ==============  ==============  ==============

MAP chi2_red 0.98-1.00 (0.30), 0.98-1.01 (0.57), 1.00-1.02 (0.90).  c_Li is not honest, and through
its correlations the electrode width and R_OO at 0.57-0.90.  The Li-K tail (multiple scattering from the 250x less exposed low loss) is the cause: with the tail
and u taken from the noise-free low loss (the rest from the noisy one) seeds 3003 / 3005 at t/lambda
0.57 give li_max pulls -0.38 / +1.35 instead of +4.05 / +6.99; 64 tail replicas instead of 8 give
+4.69 / +3.62.  The row-averaged tail's noise is shared by every row (it does not average down with
the rows, as a per-row nuisance would) and the replicas span only a few of its directions; the Fourier
log's noise bias may add to it.  Next: that error's full covariance (or a tail fitted from the core
loss itself) in the likelihood.

Usage: python validation/16_bayes_dualeels_pulls.py OUTDIR [--thickness 100] [--n-images 20]
       [--first-seed 3000] [--rows 80]
(The numbers above: --n-images 60 at --thickness 53, 100, 158; ~20 s per image on a loaded 2-core machine.)
Appends one JSON line per image to OUTDIR/pulls_<thickness>.jsonl; prints the pooled pull
mean / sd per quantity (target: mean within +-0.3, sd 0.8-1.3).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from sreels.config import Detector, Instrument, Scenario
from sreels.forward.simulate import simulate, window_models
from sreels.inference.bayes.crlb import derived_gradient
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.fit import fit_bayes
from sreels.inference.bayes.params import DERIVED, default_values, derived, row_profiles
from sreels.inference.bayes.priors import build_priors

PROFILES = ("li_rel", "ti3_fraction", "r_oo_nm")


def one_image(sc, inst, det, models, pr, truth, seed) -> dict:
    t0 = time.time()
    sim = simulate(sc, inst, det, rng=seed, models=models)
    data = from_simulation(sim, plural=True)
    m = fit_bayes(data, pr, sample=False, progress=False).map
    dt = derived(pr.pset.as_dict(truth), pr.pset.ti3_mode)
    g = derived_gradient(pr, m.theta)
    dm = derived(pr.pset.as_dict(m.theta), pr.pset.ti3_mode)
    dsd = np.sqrt(np.diag(g @ m.cov @ g.T))
    zd = {k: float((dm[k] - dt[k]) / s) for k, s in zip(DERIVED, dsd) if k != "r_oo_change_nm"}
    draws = np.random.default_rng(seed).multivariate_normal(m.theta, m.cov, 300)
    y = data.y_nm
    pm, pt, pd = (row_profiles(pr.pset.as_dict(t), pr.pset.ti3_mode, y) for t in (m.theta[None], truth[None], draws))
    zp = {}
    for k in PROFILES:
        sd = np.nanstd(pd[k], 0)
        idx = np.flatnonzero(np.isfinite(sd) & (sd > 0) & np.isfinite(pt[k][0]))[::10]
        zp[k] = ((pm[k][0, idx] - pt[k][0, idx]) / sd[idx]).tolist()
    return {"thickness_nm": sc.thickness_nm, "seed": seed,
            "t_over_lambda": float(np.median(sim.lowloss_truth["t_over_lambda"])),
            "z_params": dict(zip(m.names, ((m.theta - truth) / m.sd).tolist())), "z_derived": zd, "z_rows": zp,
            "chi2_red": m.chi2_red, "success": bool(m.success), "seconds": time.time() - t0}


def summarise(records) -> dict:
    out = {}
    keys = list(records[0]["z_derived"])
    for k in keys:
        z = np.array([r["z_derived"][k] for r in records])
        out[k] = (float(z.mean()), float(z.std()), z.size)
    for k in PROFILES:
        z = np.concatenate([r["z_rows"][k] for r in records])
        z = z[np.isfinite(z)]
        out[f"rows:{k}"] = (float(z.mean()), float(z.std()), z.size)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--thickness", type=float, default=100.0)
    ap.add_argument("--n-images", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=3000)
    ap.add_argument("--rows", type=int, default=80)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    sc = dataclasses.replace(Scenario(), rows=a.rows, thickness_nm=a.thickness)
    inst, det = Instrument(), Detector()
    models = window_models(inst)
    pr = build_priors(inst)
    tv = default_values(sc, inst)
    truth = np.array([tv[n] for n in pr.pset.names])
    path = a.out / f"pulls_{a.thickness:g}.jsonl"
    for seed in range(a.first_seed, a.first_seed + a.n_images):
        rec = one_image(sc, inst, det, models, pr, truth, seed)
        with path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(seed, f"{rec['seconds']:.0f} s, chi2_red {rec['chi2_red']:.3f}",
              " ".join(f"{k}={v:+.2f}" for k, v in rec["z_derived"].items()), flush=True)
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for k, (mu, sd, n) in summarise(recs).items():
        print(f"{k:24s} pull mean {mu:+.2f}  sd {sd:.2f}  (n = {n})")


if __name__ == "__main__":
    main()
