"""Posterior summaries and files: summary.json, posterior.nc (ArviZ), profiles.csv with bands.

Every parameter and derived number gets the median, the 16/84 and 2.5/97.5 percentiles,
mean and standard deviation of the posterior, and the MAP value with its lmfit standard
error.  Profiles are evaluated for a thinned posterior sample (at most 2000 draws) and
summarised per row: median and 16/84 % band (``_lo``/``_hi``).
"""

from __future__ import annotations

import numpy as np

from .fit import BayesFit
from .params import DERIVED, derived, row_profiles

PERCENTILES = (2.5, 16.0, 50.0, 84.0, 97.5)
PROFILE_KEYS = ("li_rel", "ti3_fraction", "r_oo_nm", "peak_a_ev", "peak_b_ev")


def _stats(x) -> dict:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": None, "p16": None, "p84": None, "p2_5": None, "p97_5": None, "mean": None, "sd": None}
    q = np.percentile(x, PERCENTILES)
    return {"median": float(q[2]), "p16": float(q[1]), "p84": float(q[3]), "p2_5": float(q[0]),
            "p97_5": float(q[4]), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0}


def draws(fit: BayesFit, n_max: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Posterior draws (N, P); thinned evenly to ``n_max`` if given."""
    flat = fit.samples.flat
    if n_max is not None and flat.shape[0] > n_max:
        idx = np.linspace(0, flat.shape[0] - 1, n_max).astype(int)
        flat = flat[idx]
    return flat


def summarise(fit: BayesFit, settings: dict | None = None, crlb: dict | None = None) -> dict:
    """The summary.json content."""
    pset = fit.likelihood.model.pset
    m = fit.map
    out = {"method": "bayes", "converged": fit.converged, "flags": list(fit.flags),
           "parameters": {}, "derived": {}}
    flat = fit.samples.flat if fit.samples is not None else None
    for i, n in enumerate(pset.names):
        s = _stats(flat[:, i]) if flat is not None else {}
        out["parameters"][n] = {**s, "map": float(m.theta[i]), "map_err": float(m.sd[i])}
    for n, v in pset.fixed.items():
        out["parameters"][n] = {"fixed": float(v)}
    dmap = derived(pset.as_dict(m.theta), pset.ti3_mode)
    dd = derived(pset.as_dict(flat), pset.ti3_mode) if flat is not None else None
    for k in DERIVED:
        s = _stats(dd[k]) if dd is not None else {}
        out["derived"][k] = {**s, "map": float(dmap[k])}
        # the fast path's contract: value and _err (posterior median and half the 16-84 width); without a posterior
        # both are withheld (null), as the fast path withholds a number it could not measure (NaN and a note)
        if s.get("median") is not None:
            out[k] = s["median"]
            out[f"{k}_err"] = 0.5 * (s["p84"] - s["p16"])
        else:
            out[k] = None
            out[f"{k}_err"] = None
    if flat is None:
        out.update(_withheld(fit, dmap))
    if crlb:
        out["crlb"] = crlb
    out["map"] = {"seconds": m.seconds, "nfev": m.nfev, "success": m.success, "message": m.message,
                  "chi2": m.chi2, "chi2_red": m.chi2_red, "n_data": m.n_data, "at_bound": list(m.at_bound),
                  "covariance": m.cov.tolist(), "names": list(m.names)}
    out["checks"] = fit.checks
    out["diagnostics"] = fit.samples.diagnostics if fit.samples is not None else None
    out["convergence_reasons"] = list(fit.samples.reasons) if fit.samples is not None else []
    out["likelihood"] = {
        "noise": "Gaussian, variance = expected electrons + readout'^2 after PSF whitening "
                 "(Poisson limit; valid above ~20 electrons per bin)",
        "variance_source": fit.data.variance_source,
        "amplitudes": "per-row background level per window, host and AlPO4 amounts: marginalised "
                      "analytically (flat priors)",
        "fit_regions_ev": {w.window.name: [float(w.energy_ev[0, 0]), float(w.energy_ev[-1, -1])]
                           for w in fit.data.windows},
        "bin_channels": {w.window.name: int(w.bin) for w in fit.data.windows},
    }
    out["settings"] = dict(settings or {})
    return out


def _withheld(fit: BayesFit, dmap: dict) -> dict:
    """Without a posterior (the sampler not run: a MAP covariance that is not positive definite, or
    ``fit_bayes(sample=False)``) no derived number has an error bar: summary.json's top level holds null for each, a
    note says why, and ``map_not_final`` holds the MAP's values with the reason, for inspection only (on a measured
    SrTiO3 spectrum they were an electrode width of 400 nm, the optimiser's start (the source study's value) left
    where it was, and a c_Li max of 17.8 without a Li-K edge: numbers the data do not constrain)."""
    reason = next((f for f in fit.flags if f.startswith("sampler not run")),
                  "sampler not run (MAP only, fit_bayes(sample=False)): no posterior")
    keys = ", ".join(DERIVED)
    return {"notes": [f"no posterior (the sampler was not run: map_not_final.reason, flags): the derived numbers "
                      f"({keys}) are withheld (null); their MAP values, without errors and not a result, are under "
                      "map_not_final"],
            "map_not_final": {"reason": reason, **{k: float(dmap[k]) for k in DERIVED}}}


def profile_bands(fit: BayesFit, n_max: int = 2000) -> dict:
    """Per-row median and 16/84 % band of li_rel, ti3_fraction, r_oo_nm and the peak positions."""
    pset = fit.likelihood.model.pset
    y = fit.data.y_nm
    pt = y < 0
    flat = draws(fit, n_max) if fit.samples is not None else fit.map.theta[None]
    prof = row_profiles(pset.as_dict(flat), pset.ti3_mode, y)
    cols = {"y_nm": y}
    for k in PROFILE_KEYS:
        v = prof[k]
        lo, med, hi = np.percentile(v, [16, 50, 84], axis=0)
        med, lo, hi = (np.where(pt, np.nan, a) for a in (med, lo, hi))
        cols[k], cols[f"{k}_lo"], cols[f"{k}_hi"] = med, lo, hi
        cols[f"{k}_err"] = 0.5 * (hi - lo)
    cols["status"] = np.where(pt, "pt_collector", "ok")
    return cols


def posterior_predictive(fit: BayesFit, n_max: int = 64):
    """Mean and variance over posterior draws of the predicted image, per window.

    Each draw's per-row amplitudes are those that fit best at its parameters (the profiled
    amplitudes; their own conditional spread is not added).  Without samples: the MAP
    prediction and zero variance."""
    like = fit.likelihood
    thetas = draws(fit, n_max) if fit.samples is not None else fit.map.theta[None]
    mean = m2 = None
    for k, th in enumerate(thetas, start=1):  # Welford: no cancellation between large sums
        _, pred, _ = like.fit_rows(th)
        if mean is None:
            mean, m2 = [np.zeros_like(p) for p in pred], [np.zeros_like(p) for p in pred]
        for m, s, p in zip(mean, m2, pred):
            d = p - m
            m += d / k
            s += d * (p - m)
    return tuple(mean), tuple(s / len(thetas) for s in m2)


def inference_data(fit: BayesFit, attrs: dict | None = None, priors=None, rng=None):
    """ArviZ InferenceData with posterior, sample_stats, log_likelihood, observed_data,
    posterior_predictive and (given ``priors``) prior; see :mod:`sreels.inference.bayes.idata`."""
    from .idata import inference_data as build
    return build(fit, attrs, priors=priors, rng=rng)
