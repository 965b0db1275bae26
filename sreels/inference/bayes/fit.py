"""The Bayesian path end to end: data -> MAP -> variance from the MAP -> MAP -> emcee.

:func:`fit_bayes` never mutates its inputs and returns a :class:`BayesFit` holding the
MAP (the fast answer), the posterior sample (if requested) and the checks that decide
whether a number may be trusted (flags, never a silent value).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from ...config import Scenario
from ...errors import SreelsInputError
from ...resources import single_threaded_blas
from .data import PreparedData
from .likelihood import Likelihood, count_regime
from .model import ImageModel
from .optimize import MapResult, find_map
from .params import default_values
from .priors import Priors
from .sample import SampleResult, run_sampler


@dataclass(frozen=True)
class BayesFit:
    """Everything a run produced; ``flags`` lists what a user must know before trusting it."""

    data: PreparedData
    likelihood: Likelihood
    map: MapResult
    samples: SampleResult | None
    checks: dict
    flags: tuple = field(default=())

    @property
    def converged(self) -> bool:
        return self.samples is not None and self.samples.converged


def _positive_definite(cov) -> bool:
    """Whether a covariance can start the walkers (finite, Cholesky-factorisable, not near-singular): on a
    measured line scan of 10 rows with Ti in 3 (LSMO/STO) it was not, and the sampler's start failed with an
    internal error (a LinAlgError, or emcee's "large condition number")."""
    c = np.asarray(cov, float)
    if c.size == 0 or not np.all(np.isfinite(c)):
        return False
    d = np.sqrt(np.clip(np.diag(c), 0.0, None))
    if np.any(d <= 0):
        return False
    try:
        np.linalg.cholesky(c / np.outer(d, d))
    except np.linalg.LinAlgError:
        return False
    return bool(np.linalg.cond(c / np.outer(d, d)) < 1e12)


def default_start(priors: Priors, instrument) -> np.ndarray:
    """The source study's values (default Scenario) for the free parameters, clipped to the priors."""
    v = default_values(Scenario(), instrument)
    lo, hi = priors.bounds.T
    return np.clip([v[n] for n in priors.pset.names], lo, hi)


#: a parameter near a prior bound matters to the derived numbers when its MAP correlation with one of them is at least this
BOUND_CORRELATION = 0.1


def bound_correlations(priors: Priors, m: MapResult) -> dict:
    """For each parameter of ``m.at_bound``: the largest absolute correlation (MAP covariance) between it and a derived number
    (nan where the covariance is not finite)."""
    from .crlb import derived_gradient

    names = list(m.names)
    if not m.at_bound:
        return {}
    cov = np.asarray(m.cov, float)
    if not np.all(np.isfinite(cov)):
        return {n: float("nan") for n in m.at_bound}
    g = derived_gradient(priors, m.theta)                    # (D, P)
    gc = g @ cov                                             # (D, P): cov(derived_d, theta_k)
    sd_d = np.sqrt(np.maximum(np.einsum("dp,dp->d", gc, g), 1e-300))
    sd_k = np.sqrt(np.maximum(np.diag(cov), 1e-300))
    corr = np.abs(gc) / sd_d[:, None] / sd_k[None, :]
    return {n: float(np.max(corr[:, names.index(n)])) for n in m.at_bound}


def model_checks(like: Likelihood, m: MapResult, priors: Priors | None = None) -> tuple:
    """Goodness of fit at the MAP: chi2_red against its noise band; per-window chi2.  With ``priors``, a parameter
    near a prior bound is told apart by whether a derived number correlates with it (:func:`bound_correlations`)."""
    n = like.n_data
    tol = max(0.02, 5 * np.sqrt(2.0 / n))
    _, pred, chi2_rows = like.fit_rows(m.theta)
    per_window = {}
    for wd, p, w in zip(like.data.windows, pred, like.w):
        r = (wd.data - p)[wd.mask] ** 2 * w[wd.mask]
        per_window[wd.window.name] = float(r.mean())
    checks = {"chi2_red": m.chi2_red, "chi2_red_tolerance": 1 + tol, "chi2_red_per_window": per_window,
              "n_data": n, **count_regime(like.data)}
    flags = []
    if m.chi2_red > 1 + tol:
        worst = max(per_window, key=per_window.get)
        flags.append(f"model does not describe the data: chi2_red = {m.chi2_red:.3f} > {1 + tol:.3f} "
                     f"(worst window {worst!r}: {per_window[worst]:.3f})")
    if not m.success:
        flags.append(f"MAP optimiser did not converge ({m.message}): the MAP and its covariance are not final")
    corr = bound_correlations(priors, m) if priors is not None else {n: float("nan") for n in m.at_bound}
    checks["at_bound_max_correlation_with_derived"] = corr
    matter = [n for n, c in corr.items() if not c < BOUND_CORRELATION]
    harmless = [n for n in corr if n not in matter]
    if matter:
        flags.append(f"MAP within one standard deviation of a prior bound for {matter}: "
                     "the prior may exclude the data")
    if harmless:
        flags.append(f"MAP within one standard deviation of a prior bound for {harmless}, harmless to the derived "
                     f"numbers (their largest correlation with it {max(corr[n] for n in harmless):.2f} < "
                     f"{BOUND_CORRELATION}): a nuisance parameter the data leave loose")
    if not np.all(np.isfinite(m.cov)) or np.any(np.diag(m.cov) <= 0):
        flags.append("MAP covariance is singular: some parameter is not constrained by the data")
    if not checks["gaussian_valid"]:
        flags.append(f"some bins hold < 20 expected electrons ({checks['min_electrons_per_bin']:.1f}): "
                     "the Gaussian approximation of the Poisson likelihood is not valid there")
    return checks, pred, flags


def fit_bayes(data: PreparedData, priors: Priors, rng: np.random.Generator | None = None,
              start=None, sample: bool = True, walkers: int | None = None, max_steps: int = 3000,
              min_ess: float = 1000.0, progress: bool = True, chunk: int = 2) -> BayesFit:
    """Fit the whole image: two MAP passes (variance from smoothed data, then from the MAP
    prediction), then emcee from the MAP if ``sample``.

    Parameters
    ----------
    data : PreparedData
    priors : Priors
    rng : numpy.random.Generator
        Required when ``sample``.
    start : array (P,), optional
        Optimiser start; default the study's values.
    """
    if sample and not isinstance(rng, np.random.Generator):
        raise TypeError("fit_bayes(sample=True) needs rng, a numpy.random.Generator")
    with single_threaded_blas():
        like0 = Likelihood(ImageModel(data, priors.pset), chunk=chunk)
        if like0.n_data == 0:
            raise SreelsInputError(f"{data.source}: no data left to fit (every row or every channel masked: rows beside "
                                   "a jump of t/lambda, saturated or outside the windows' fit ranges)")
        x0 = default_start(priors, data.instrument) if start is None else np.asarray(start, float)
        if progress:  # the MAP takes seconds to minutes and has no bar of its own
            print(f"MAP: {len(priors.pset.names)} parameters, {like0.n_data} data (lmfit, two passes) ...",
                  file=sys.stderr, flush=True)
        m1 = find_map(like0, priors, x0, covariance=False, tol=1e-5)
        _, pred, _ = like0.fit_rows(m1.theta)
        like = like0.with_data(data.with_variance(pred, "MAP prediction (first pass)"))
        m2 = find_map(like, priors, m1.theta)
        m2 = MapResult(m2.names, m2.theta, m2.cov, m2.chi2, m2.n_data, m1.nfev + m2.nfev, m2.success,
                       m2.message, m2.at_bound, m1.seconds + m2.seconds)
        checks, _, flags = model_checks(like, m2, priors)
        samples = None
        if sample and not _positive_definite(m2.cov):
            flags.append("sampler not run: the MAP covariance is not positive definite (parameters these data do not "
                         "constrain, e.g. a profile without its edge); no posterior, so no derived number is reported "
                         "(summary.json: null; the MAP, without errors, under map_not_final): the fast path "
                         "(--method fast) measures such data row by row")
        elif sample:
            samples = run_sampler(like, priors, m2.theta, m2.cov, rng, walkers=walkers, max_steps=max_steps,
                                  min_ess=min_ess, progress=progress)
            if not samples.converged:
                flags.append("sampler not converged: " + "; ".join(samples.reasons))
    return BayesFit(like.data, like, m2, samples, checks, tuple(flags))
