"""Bayesian path: the noise model and every reported error against an independent estimate,
in the dose / readout regimes of :mod:`tests.statistics.regimes` (issue 16).

- the likelihood's variance (expected electrons + readout after PSF whitening) against the
  realised noise of a simulated readout (noisy minus noise-free image, same whitening);
- MAP standard errors against the truth (pulls, two-sided) at low dose with readout dominating
  (default run) and at very high dose (``-m slow``);
- the summary's ``<number>_err`` and the profile bands against the sd of the posterior draws
  they are computed from.
"""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from sreels.forward.simulate import simulate, window_models
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.fit import fit_bayes
from sreels.inference.bayes.params import DERIVED, default_values, derived, row_profiles
from sreels.inference.bayes.priors import build_priors
from sreels.inference.bayes.results import profile_bands, summarise

from tests.statistics.bands import check_pulls, sd_band
from tests.statistics.regimes import REGIMES


@pytest.mark.parametrize("regime", list(REGIMES))
def test_whitened_noise_matches_the_likelihood_variance(small, regime):
    """mean((d - E[d])^2 / V) over every bin of a window is 1 within its chi-square band (+-1 %),
    V = expected electrons + readout variance as the likelihood uses it (whitened, binned)."""
    inst, det = REGIMES[regime]
    sc = dataclasses.replace(small["scenario"], rows=40)
    models = window_models(inst)
    noisy = from_simulation(simulate(sc, inst, det, rng=1616, models=models))
    exact = from_simulation(simulate(sc, inst, det, noise_free=True, models=models))
    v = noisy.with_variance(tuple(w.data for w in exact.windows), "noise-free truth").variance
    for wn, we, vv in zip(noisy.windows, exact.windows, v):
        r2 = ((wn.data - we.data) ** 2 / vv)[wn.mask]
        lo, hi = sd_band(r2.size, 0.01)
        ratio = np.sqrt(r2.mean())
        assert lo < ratio < hi, f"{regime}/{wn.window.name}: rms whitened residual {ratio:.4f} not in [{lo:.4f}, {hi:.4f}]"
        share = np.median(wn.readout_var / vv)
        if regime == "low":  # the regime must test the readout term, not only the shot noise
            assert share > 0.5, (wn.window.name, share)


def _map_pulls(small, regime, n, seed0):
    inst, det = REGIMES[regime]
    inst = dataclasses.replace(inst, plural_scattering=False, lowloss_window=False)  # the model's own data
    sc = small["scenario"]
    models = window_models(inst)
    pr = build_priors(inst)
    tv = default_values(sc, inst)
    truth = np.array([tv[k] for k in pr.pset.names])
    z = []
    for i in range(n):
        sim = simulate(sc, inst, det, rng=seed0 + i, models=models)
        fit = fit_bayes(from_simulation(sim), pr, sample=False)
        assert not fit.flags, fit.flags
        z.append((fit.map.theta - truth) / fit.map.sd)
    return np.ravel(z)


#: Why the Bayesian errors are too wide when readout dominates (issue 16, not fixed): after PSF
#: whitening the readout noise K^-1 e is no longer white.  Each bin's variance is right (the test
#: above), but neighbouring bins are anti-correlated (K^-1 sharpens), and the likelihood treats
#: bins as independent: for features wider than a bin the readout variance is overstated, up to
#: sum over a bin of (K^-1 row sums)^2 / bin = 1.41x (4-channel bins) and 1.82x (2-channel bins)
#: at psf_decay 0.2.  Negligible at the default readout (3 counts); errors up to ~1.3x too wide
#: at 30 counts.  A fix needs the banded readout covariance in the likelihood.
READOUT_CORRELATION = ("whitened readout noise is anti-correlated between bins but treated as independent: "
                       "MAP errors ~1.3x too wide when readout dominates (pull sd 0.75 on 16 images)")


def test_map_pulls_with_readout_dominating(small):
    """4 images of 80 rows at 1/20 dose and 30 counts readout: 72 pulls, sd and mean two-sided
    (errors 2x too small or too large fail).  The errors are known to be too wide here
    (READOUT_CORRELATION), so the sd band carries that as its allowance (0.3): measured on 16 images
    (slow test below) sd 0.75 with the first noise generator, 0.83 (seeds 1900-1915, mean -0.03) with
    the per-window streams; these 4 images (seeds 1800-1803) 0.55, mean -0.09 (0.87 before the streams)."""
    check_pulls(_map_pulls(small, "low", 4, 1800), "bayes MAP, low dose", syst_sd=0.3)


@pytest.mark.slow
@pytest.mark.parametrize("regime", [pytest.param("low", marks=pytest.mark.xfail(strict=False, reason=READOUT_CORRELATION)),
                                    "high"])
def test_map_pulls_regime_grid(small, regime):
    """16 images per regime (288 pulls). Measured: low sd 0.75 (xfail; 0.83 with the per-window noise streams,
    inside the band's 0.74: not strict), high passes (6 images: sd 1.10)."""
    check_pulls(_map_pulls(small, regime, 16, 1900), f"bayes MAP, {regime}", syst_sd=0.1)


@pytest.fixture(scope="module")
def laplace_fit(small_fit):
    """The small fit with 20 000 draws from its Laplace approximation standing in for emcee's."""
    _, fit = small_fit
    rng = np.random.default_rng(1616)
    flat = rng.multivariate_normal(fit.map.theta, fit.map.cov, size=20000)
    samples = SimpleNamespace(flat=flat, converged=True, diagnostics={}, reasons=())
    return dataclasses.replace(fit, samples=samples)


def test_summary_errors_are_the_posterior_sd(laplace_fit):
    """summary.json: each derived ``_err`` (half the 16-84 % width) equals the sd of the posterior
    draws of that number within 4 % (these draws are near-Gaussian; sampling error ~1 %), the value
    is their median, and every parameter's sd and map_err are those of the draws / the covariance."""
    fit = laplace_fit
    s = summarise(fit)
    pset = fit.likelihood.model.pset
    d = derived(pset.as_dict(fit.samples.flat), pset.ti3_mode)
    for k in DERIVED:
        x = np.asarray(d[k])[np.isfinite(d[k])]
        assert s[f"{k}_err"] == pytest.approx(np.std(x), rel=0.04), k
        assert s[k] == pytest.approx(np.median(x), abs=0.05 * np.std(x)), k
    for i, n in enumerate(pset.names):
        p = s["parameters"][n]
        assert p["sd"] == pytest.approx(np.sqrt(fit.map.cov[i, i]), rel=0.03), n
        assert p["map_err"] == pytest.approx(np.sqrt(fit.map.cov[i, i]), rel=1e-9), n
        assert 0.5 * (p["p84"] - p["p16"]) == pytest.approx(p["sd"], rel=0.04), n


def test_profile_band_errors_are_the_posterior_sd(laplace_fit):
    """profiles.csv: ``<profile>_err`` per row equals the sd of that row's profile over the draws
    (rows where the profile varies; 4 %), and the band brackets the median."""
    fit = laplace_fit
    pset = fit.likelihood.model.pset
    cols = profile_bands(fit, n_max=4000)
    flat = fit.samples.flat[np.linspace(0, fit.samples.flat.shape[0] - 1, 4000).astype(int)]
    prof = row_profiles(pset.as_dict(flat), pset.ti3_mode, fit.data.y_nm)
    inside = fit.data.y_nm >= 0
    for k in ("li_rel", "r_oo_nm", "peak_b_ev"):
        sd = prof[k].std(0)
        use = inside & (sd > 0.2 * np.median(sd[inside]))
        np.testing.assert_allclose(cols[f"{k}_err"][use], sd[use], rtol=0.06, err_msg=k)
        assert np.all(cols[f"{k}_lo"][inside] <= cols[k][inside]) and np.all(cols[k][inside] <= cols[f"{k}_hi"][inside])
