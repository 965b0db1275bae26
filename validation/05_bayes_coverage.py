"""Validation 05: are the Bayesian path's uncertainties honest?

Fixed truth (the default scenario, the source study's interface) + new detector noise per
image (seeds first_seed + i, recorded in the report).  For every image: the MAP with its lmfit covariance (Laplace
intervals) and, with ``--mode emcee``, the emcee posterior.  Reported:

- coverage of the 68 % (16-84) and 95 % (2.5-97.5) intervals of every parameter and derived
  number, with its binomial standard error (target 68 +- 5 %, 95 +- 3 %);
- rank histograms (position of the truth among the posterior draws; flat if calibrated);
- efficiency table: Cramer-Rao bound at the truth (Fisher information of a noise-free image
  with the same fit regions, binning and nuisance set), mean posterior sd, spread of the
  posterior medians over replicas, efficiency = CRLB^2 / spread^2 (target >= 0.8 for the
  Ti3+ boundary, maximum c_Li and the R_OO change), and the fast path's mean error and spread;
- the study's derived numbers from the first image with their 95 % intervals.

Usage: python validation/05_bayes_coverage.py OUTDIR [--n-images 100] [--mode emcee|laplace]
Writes OUTDIR/report.json, OUTDIR/rank_histograms.png, OUTDIR/efficiency.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from sreels.config import Detector, Instrument, Scenario
from sreels.forward.simulate import simulate, window_models
from sreels.inference.bayes.crlb import crlb
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.fit import fit_bayes, single_threaded_blas
from sreels.inference.bayes.likelihood import Likelihood
from sreels.inference.bayes.model import ImageModel
from sreels.inference.bayes.params import DERIVED, default_values, derived
from sreels.inference.bayes.priors import build_priors

KEY = ("ti_boundary_nm", "li_max_rel", "r_oo_change_nm")
STUDY = {"ti_boundary_nm": 160.0, "li_at_ti_boundary_rel": 6.0, "electrode_width_nm": 400.0,
         "li_max_rel": 8.5, "r_oo_parent_nm": 0.280, "r_oo_max_nm": 0.310}


def fast_path(sim):
    """The fast path's derived numbers and errors (None if it is not available)."""
    try:
        from sreels.inference.derived import derive
        from sreels.inference.fast import fit_image
        from sreels.inference.load import WindowData
    except ImportError:
        return None
    det = sim.config.detector
    wins = {k: WindowData(k, v.energy, v.counts.astype(float), sim.position, "sim", det.gain_counts_per_e,
                          det.readout_noise_counts) for k, v in sim.windows.items()}
    try:
        res = fit_image(wins)
        d = derive(res.position.y_nm, res.columns, res.status == "ok")
    except Exception as exc:  # noqa: BLE001 - reported, not fatal for this validation
        return {"error": repr(exc)}
    out = {k: d.get(k) for k in DERIVED if k in d}
    out.update({f"{k}_err": d.get(f"{k}_err") for k in DERIVED if f"{k}_err" in d})
    return out


def _ranges(seeds):
    """[[first, last], ...] of the runs of consecutive seeds (compact record of what was run)."""
    out = []
    for s in seeds:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--n-images", type=int, default=100)
    ap.add_argument("--mode", choices=("emcee", "laplace"), default="emcee")
    ap.add_argument("--min-ess", type=float, default=400.0)
    ap.add_argument("--walkers", type=int, default=24)
    ap.add_argument("--max-steps", type=int, default=3000)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--no-fast", action="store_true", help="skip the fast path comparison")
    ap.add_argument("--merge", nargs="+", metavar="DIR", help="combine raw.pkl of earlier shards into OUT")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import pickle
    sc, inst, det = Scenario(), Instrument(), Detector()
    models = window_models(inst)
    priors = build_priors(inst)
    names = priors.pset.names
    tv = default_values(sc, inst)
    truth = np.array([tv[n] for n in names])
    dtruth = {k: float(v) for k, v in derived(priors.pset.as_dict(truth), priors.pset.ti3_mode).items()}
    allnames = list(names) + [f"derived:{k}" for k in DERIVED]
    tvec = np.r_[truth, [dtruth[k] for k in DERIVED]]
    t0 = time.perf_counter()
    # Cramer-Rao bound at the truth: noise-free image, variance = expected electrons
    with single_threaded_blas():
        nf = from_simulation(simulate(sc, inst, det, rng=0, noise_free=True, models=models))
        like0 = Likelihood(ImageModel(nf, priors.pset))
        _, pred, _ = like0.fit_rows(truth)
        bound = crlb(like0.with_data(nf.with_variance(pred, "truth")), priors, truth)
    rec = {k: [] for k in ("lap_lo1", "lap_hi1", "lap_lo2", "lap_hi2", "q2", "q16", "q50", "q84", "q97",
                            "rank", "map", "sd", "post_sd")}
    fast, conv, secs, seeds, first = [], [], [], [], None
    if a.merge:
        parts = [pickle.loads((Path(d) / "raw.pkl").read_bytes()) for d in a.merge]
        rec = {k: sum((p["rec"][k] for p in parts), []) for k in rec}
        fast = sum((p["fast"] for p in parts), [])
        conv = sum((p["conv"] for p in parts), [])
        secs = sum((p["secs"] for p in parts), [])
        seeds = sum((p.get("seeds", []) for p in parts), [])
        if len(set(seeds)) != len(seeds):
            sys.exit("error: the shards share seeds (same --first-seed?): merged images would not be independent")
        first = next((p["first"] for p in parts if p["first"] is not None), None)
        a.mode = parts[0]["mode"]
    for i in range(0 if a.merge else a.n_images):
        seed = a.first_seed + i
        ti = time.perf_counter()
        sim = simulate(sc, inst, det, rng=seed, models=models)
        fit = fit_bayes(from_simulation(sim), priors, np.random.default_rng(seed), sample=a.mode == "emcee",
                        walkers=a.walkers, min_ess=a.min_ess, max_steps=a.max_steps, progress=False)
        m = fit.map
        # derived at the MAP with delta-method errors from the MAP covariance
        from sreels.inference.bayes.crlb import derived_gradient
        g = derived_gradient(priors, m.theta)
        dmap = derived(priors.pset.as_dict(m.theta), priors.pset.ti3_mode)
        mvec = np.r_[m.theta, [float(dmap[k]) for k in DERIVED]]
        sdvec = np.r_[m.sd, np.sqrt(np.diag(g @ m.cov @ g.T))]
        rec["map"].append(mvec)
        rec["sd"].append(sdvec)
        if fit.samples is not None:
            flat = fit.samples.flat
            dd = derived(priors.pset.as_dict(flat), priors.pset.ti3_mode)
            allv = np.column_stack([flat] + [np.asarray(dd[k]) for k in DERIVED])
            q = np.nanpercentile(allv, [2.5, 16, 50, 84, 97.5], axis=0)
            for k, row in zip(("q2", "q16", "q50", "q84", "q97"), q):
                rec[k].append(row)
            rec["rank"].append(np.mean(allv < tvec, axis=0))
            rec["post_sd"].append(np.nanstd(allv, axis=0))
            conv.append(bool(fit.converged))
            if first is None:
                first = {k: {"median": float(q[2, len(names) + j]), "p2_5": float(q[0, len(names) + j]),
                             "p97_5": float(q[4, len(names) + j]), "truth": dtruth[k]}
                         for j, k in enumerate(DERIVED)}
        if not a.no_fast:
            fast.append(fast_path(sim))
        secs.append(time.perf_counter() - ti)
        seeds.append(seed)
        (out / "raw.pkl").write_bytes(pickle.dumps({"rec": rec, "fast": fast, "conv": conv, "secs": secs,
                                                    "seeds": seeds, "first": first, "mode": a.mode}))
        print(f"image {i + 1}/{a.n_images}: {secs[-1]:.1f} s, converged {conv[-1] if conv else None}", flush=True)
    (out / "raw.pkl").write_bytes(pickle.dumps({"rec": rec, "fast": fast, "conv": conv, "secs": secs,
                                                "seeds": seeds, "first": first, "mode": a.mode}))
    R = {k: np.array(v) for k, v in rec.items() if v}
    z1, z2 = norm.ppf(0.84), norm.ppf(0.975)
    n = len(R["map"])
    cov_tab = {}
    for j, name in enumerate(allnames):
        t = tvec[j]
        row = {"laplace_68": float(np.mean(np.abs(R["map"][:, j] - t) <= z1 * R["sd"][:, j])),
               "laplace_95": float(np.mean(np.abs(R["map"][:, j] - t) <= z2 * R["sd"][:, j]))}
        if "q16" in R:
            row["posterior_68"] = float(np.mean((R["q16"][:, j] <= t) & (t <= R["q84"][:, j])))
            row["posterior_95"] = float(np.mean((R["q2"][:, j] <= t) & (t <= R["q97"][:, j])))
        cov_tab[name] = row
    se68, se95 = np.sqrt(0.68 * 0.32 / n), np.sqrt(0.95 * 0.05 / n)
    src = "posterior" if "q16" in R else "laplace"
    passed = {k: (abs(v[f"{src}_68"] - 0.68) <= 0.05 and abs(v[f"{src}_95"] - 0.95) <= 0.03)
              for k, v in cov_tab.items()}
    # efficiency
    eff = {}
    est = R["q50"] if "q50" in R else R["map"]
    psd = R["post_sd"] if "post_sd" in R else R["sd"]
    for j, name in enumerate(allnames):
        b = bound[name]
        spread = float(np.std(est[:, j], ddof=1))
        eff[name] = {"crlb": b, "posterior_sd_mean": float(np.nanmean(psd[:, j])), "replica_spread": spread,
                     "efficiency": b ** 2 / spread ** 2 if spread > 0 else None,
                     "bias_over_spread": float((np.mean(est[:, j]) - tvec[j]) / spread) if spread > 0 else None}
        k = name.split(":", 1)[-1]
        fv = [f for f in fast if f and "error" not in f and f.get(k) is not None]
        if name.startswith("derived:") and fv:
            vals = np.array([f[k] for f in fv], dtype=float)
            errs = np.array([f.get(f"{k}_err", np.nan) for f in fv], dtype=float)
            eff[name].update(fast_err_mean=float(np.nanmean(errs)), fast_spread=float(np.nanstd(vals, ddof=1)),
                             fast_efficiency=b ** 2 / float(np.nanvar(vals, ddof=1)))
    report = {
        "n_images": n, "mode": a.mode, "truth": "default Scenario/Instrument/Detector, new detector noise per image",
        "seeds": _ranges(seeds) if len(seeds) == n else "unknown (shards without a seed record)",
        "binomial_se": {"68": se68, "95": se95}, "coverage": cov_tab, "coverage_pass": passed,
        "all_pass": bool(all(passed.values())), "efficiency": eff,
        "efficiency_targets_met": {k: bool(eff[f"derived:{k}"]["efficiency"] >= 0.8) for k in KEY},
        "converged_fraction": float(np.mean(conv)) if conv else None,
        "seconds_per_image_mean": float(np.mean(secs)), "seconds_total": time.perf_counter() - t0,
        "study_numbers_first_image": first,
        "study_claims_inside_95": {k: (None if first is None else
                                       {"study": v, "truth_of_simulation": dtruth[k],
                                        "truth_inside": bool(first[k]["p2_5"] <= dtruth[k] <= first[k]["p97_5"])})
                                   for k, v in STUDY.items()},
        "fast_path_failures": [f for f in fast if f and "error" in f][:3],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| quantity | CRLB | posterior sd | replica spread | efficiency | fast err | fast spread |",
             "|---|---|---|---|---|---|---|"]
    for name, e in eff.items():
        lines.append(f"| {name} | {e['crlb']:.4g} | {e['posterior_sd_mean']:.4g} | {e['replica_spread']:.4g} | "
                     f"{e['efficiency']:.3f} | {e.get('fast_err_mean', float('nan')):.4g} | "
                     f"{e.get('fast_spread', float('nan')):.4g} |")
    (out / "efficiency.md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ranks = R["rank"] if "rank" in R else norm.cdf((tvec - R["map"]) / R["sd"])
    cols = 5
    rows = -(-len(allnames) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows))
    for ax, j in zip(axes.ravel(), range(len(allnames))):
        ax.hist(ranks[:, j], bins=10, range=(0, 1), color="C0")
        ax.axhline(n / 10, color="k", lw=0.8)
        ax.set_title(allnames[j].replace("derived:", "d:"), fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(allnames):]:
        ax.set_visible(False)
    fig.suptitle(f"rank of the truth among posterior draws ({src}, {n} images): flat = calibrated", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "rank_histograms.png", dpi=110)
    print(json.dumps({"all_pass": report["all_pass"], "efficiency_targets_met": report["efficiency_targets_met"],
                      "converged_fraction": report["converged_fraction"]}, indent=1))
    return 0 if report["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
