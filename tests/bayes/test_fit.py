"""MAP, Cramer-Rao bound and the sampler's convergence machinery (seeded)."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from sreels.forward.simulate import simulate
from sreels.inference.bayes.crlb import crlb
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.fit import fit_bayes
from sreels.inference.bayes.params import DERIVED, default_values, derived
from sreels.inference.bayes.priors import build_priors
from sreels.inference.bayes.sample import run_sampler


def test_map_pulls_are_standard_normal(small, small_fit):
    """18 pulls (MAP - truth) / sd of one seeded image: sum of squares within chi2_18 (99.9 %)."""
    _, fit = small_fit
    pulls = (fit.map.theta - small["truth"]) / fit.map.sd
    assert np.all(np.abs(pulls) < 4)
    assert np.sum(pulls ** 2) < stats.chi2.ppf(0.999, pulls.size)
    assert abs(fit.checks["chi2_red"] - 1) < 0.02 and not fit.flags


def test_crlb_matches_map_covariance(small, small_fit):
    """The bound at the truth (noise-free Fisher) and the MAP standard errors agree within 10 %."""
    _, fit = small_fit
    b = crlb(fit.likelihood, small["priors"], small["truth"])
    ratio = np.array([b[n] for n in fit.map.names]) / fit.map.sd
    assert np.all((ratio > 0.9) & (ratio < 1.1)), dict(zip(fit.map.names, ratio.round(3)))
    assert set(f"derived:{k}" for k in DERIVED) <= set(b)


def test_map_from_the_study_start_on_another_scenario(small):
    """Another interface (narrower electrode, lower c_Li, different R_OO slope), started from the study's values."""
    sc = dataclasses.replace(small["scenario"], electrode_width_nm=300.0, li_max_rel=7.0, li_rise_nm=80.0,
                             ti3_li_threshold_rel=5.0, r_oo_slope_nm=0.003)
    sim = simulate(sc, small["instrument"], small["detector"], rng=21, models=small["models"])
    fit = fit_bayes(from_simulation(sim), small["priors"], sample=False)
    tv = default_values(sc, small["instrument"])
    t = np.array([tv[n] for n in fit.map.names])
    assert np.all(np.abs((fit.map.theta - t) / fit.map.sd) < 4.5)


def test_derived_numbers_of_the_truth():
    from sreels.config import Instrument, Scenario
    pset = build_priors(Instrument()).pset
    tv = default_values(Scenario(), Instrument())
    d = derived(pset.as_dict(np.array([tv[n] for n in pset.names])), "threshold")
    assert d["li_at_ti_boundary_rel"] == 6.0 and d["li_max_rel"] == 8.5
    assert 150 < d["ti_boundary_nm"] < 170           # the study's "about 160 nm"
    assert d["r_oo_max_nm"] == pytest.approx(0.310)


class _Gauss:
    """A stand-in likelihood: correlated 3-D Gaussian, vectorised, counting evaluations."""

    def __init__(self, mean, cov):
        self.mean, self.icov = mean, np.linalg.inv(cov)
        self.n_evals = self.n_nan = 0

    def __call__(self, th):
        d = th - self.mean
        self.n_evals += th.shape[0]
        return -0.5 * np.einsum("bi,ij,bj->b", d, self.icov, d)


def test_sampler_recovers_a_gaussian_and_measures_convergence():
    from sreels.config import Instrument
    pr = build_priors(Instrument(), {"fixed": {n: 0.0 for n in build_priors(Instrument()).pset.names[3:]}})
    names = pr.pset.names
    mean = np.array([400.0, 8.5, 100.0])
    cov = np.array([[4.0, 0.01, 0.5], [0.01, 0.01, 0.0], [0.5, 0.0, 1.0]])
    like = _Gauss(mean, cov)
    # start from a deliberately wrong Laplace approximation (inflated, offset): DE + MH must fix it
    res = run_sampler(like, pr, mean + 0.5 * np.sqrt(np.diag(cov)), 1.5 * cov, np.random.default_rng(1),
                      walkers=24, min_ess=1000, progress=False)
    assert res.converged, res.reasons
    d = res.diagnostics
    assert d["run_over_tau"] >= 50 and d["ess_bulk_min"] >= 1000 and max(d["rhat"].values()) < 1.01
    flat = res.flat
    z = (flat.mean(0) - mean) / np.sqrt(np.diag(cov) / d["ess_bulk_min"])
    assert np.all(np.abs(z) < 4)
    np.testing.assert_allclose(flat.std(0), np.sqrt(np.diag(cov)), rtol=0.08)
    ks = stats.kstest((flat[:, 1] - mean[1]) / 0.1, "norm").statistic
    assert ks < 0.05
    assert names == ("electrode_width_nm", "li_max_rel", "li_rise_nm")


def test_sampler_reports_non_convergence():
    from sreels.config import Instrument
    pr = build_priors(Instrument(), {"fixed": {n: 0.0 for n in build_priors(Instrument()).pset.names[3:]}})
    like = _Gauss(np.array([400.0, 8.5, 100.0]), np.diag([4.0, 0.01, 1.0]))
    res = run_sampler(like, pr, np.array([400.0, 8.5, 100.0]), np.diag([4.0, 0.01, 1.0]),
                      np.random.default_rng(2), walkers=24, max_steps=20, progress=False)
    assert not res.converged and any("tau" in r or "ESS" in r for r in res.reasons)
    with pytest.raises(TypeError, match="Generator"):
        run_sampler(like, pr, np.zeros(3), np.eye(3), 1, progress=False)


def test_posterior_predictive_mean_and_variance(small_fit):
    """Over two draws the predictive mean is their average and the variance ((p1 - p2) / 2)^2;
    without samples it is the MAP prediction with zero variance."""
    from types import SimpleNamespace

    from sreels.inference.bayes.results import posterior_predictive

    _, fit = small_fit
    like = fit.likelihood
    mean, var = posterior_predictive(fit)
    _, p0, _ = like.fit_rows(fit.map.theta)
    assert all(np.array_equal(m, p) and not v.any() for m, p, v in zip(mean, p0, var))
    t2 = fit.map.theta + 3 * fit.map.sd
    _, p2, _ = like.fit_rows(t2)
    two = dataclasses.replace(fit, samples=SimpleNamespace(flat=np.vstack([fit.map.theta, t2])))
    mean, var = posterior_predictive(two)
    for m, v, a, b in zip(mean, var, p0, p2):
        assert np.allclose(m, 0.5 * (a + b), rtol=1e-12)
        assert np.allclose(v, (0.5 * (a - b)) ** 2, rtol=1e-9, atol=1e-12)
