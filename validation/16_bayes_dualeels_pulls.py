"""Validation 16: MAP pulls of the Bayesian path's experimental plural model on DualEELS images.

Simulated DualEELS images of the default scenario (plural scattering and the low-loss window, the
default instrument) with ``thickness_nm`` varied (53, 100, 158 nm: t/lambda ~0.30, 0.57, 0.90), fitted
with ``from_simulation(sim, plural=True)`` (sreels.inference.bayes.plural).  Per image: the MAP with its
Laplace errors; pulls (MAP - truth) / sd of the six study numbers (delta method) and of the per-row
profiles c_Li, Ti3+ fraction, R_OO (every 10th row; sd from 300 draws of the Laplace approximation).

Findings, the model of 178f982 (the Li-K tail from each row's own low loss, its noise as per-row nuisance
columns; 2026-12-01, 40 rows, seeds 3000-3025, n = 26 images per thickness; results/16_bayes_dualeels/,
pull mean / sd, target mean within +-0.3, sd 0.8-1.3):

quantity                   t/lambda 0.31 (n=26)  t/lambda 0.59 (n=26)  t/lambda 0.93 (n=26)
electrode_width_nm         +0.04 / 0.88          -0.27 / 1.03          +0.06 / 0.76
ti_boundary_nm             -0.05 / 1.03          +0.07 / 0.87          -0.09 / 0.74
li_max_rel                 -0.32 / 1.02          -0.58 / 0.96          -0.03 / 1.01
li_at_ti_boundary_rel      -0.18 / 1.20          -0.68 / 1.06          -0.01 / 1.00
r_oo_parent_nm             -0.24 / 1.00          +0.35 / 1.19          +0.06 / 0.85
r_oo_max_nm                +0.04 / 0.95          -0.07 / 0.89          -0.01 / 0.91
rows:li_rel                -0.30 / 1.07          -0.60 / 1.01          -0.04 / 1.05
rows:ti3_fraction          -0.00 / 1.21          +0.14 / 1.03          +0.15 / 0.84
rows:r_oo_nm               +0.04 / 0.94          +0.01 / 0.94          +0.02 / 0.89

MAP chi2_red 0.95-0.98, 0.94-0.97, 0.91-0.95.  Every sd is within 0.74-1.21, c_Li's included (0.74-0.76,
slightly wide errors, for the Ti boundary and electrode width at t/lambda 0.93); c_Li reads low at t/lambda
0.59 (means -0.58 to -0.68, ~3 standard errors of the mean: the pulls of one image share its noise) and
-0.3 at 0.31, R_OO in the parent +0.35 at 0.59: not within target, so the model stays opt-in.  Not yet
explained; not tested: the Fourier log's noise bias in each row's tail (no longer averaged over the rows).  The same images with the replicas' Poisson noise alone
(47ed63d, no readout noise; results/16_bayes_dualeels/poisson_only/, n = 11-13): c_Li sd 1.10-1.72, means
-0.79 to +0.16.

History (the h10b model, 80 rows, seeds 3000-3059, n = 60 per thickness): the tail denoised across the
rows (mean and principal components of the image) had an error shared by every row that its 8 image-level
replicas did not span: c_Li pulls sd 3.0 / 5.3 / 11 at t/lambda 0.30 / 0.57 / 0.90, R_OO max +1.18 / 1.42
and Ti3+ +0.94 / 1.98 at 0.90.  Diagnosed on 40-row images at t/lambda 0.59 (seeds 3003, 3005): a
noise-free low loss gives li_max pulls +1.61 (3003) instead of +4.81; the noise-free tail alone (the
kernels and u from the noisy low loss) +0.92; the noise-free row mean with the noisy per-row deviations
+4.14; a full-covariance model of the row mean's error (300 image-wide columns) +2.90 / +6.38: the error
was the true row-to-row variation outside the noisy principal components (true singular values 168, 62,
11 against noise ~70-115 per component).  The tail's noise is smooth in energy (25-bin means keep ~85 %
of its variance), so a per-bin variance does not carry it (li_max -9.5 and +5.1 on seeds 3006, 3007 with it).

Usage: python validation/16_bayes_dualeels_pulls.py OUTDIR [--thickness 100] [--n-images 20]
       [--first-seed 3000] [--rows 80]
(The numbers above: --rows 40, one image per call over seeds 3000-3025 at --thickness 53, 100, 158; 20-40 s
per image on a 2-core machine at load 8-13.)
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
