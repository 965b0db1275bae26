"""Maximum a posteriori point and its covariance with lmfit (the fast answer).

The objective is the profile likelihood (per-row amplitudes at their best values for
every parameter vector: variable projection) plus the Gaussian priors as extra
residuals; flat priors enter only as bounds.  lmfit's ``least_squares`` (trust-region
reflective, bounded, lsmr steps) is given a Jacobian computed by forward differences in
one vectorised batch of model evaluations.  The covariance is (J'J)^-1 at the optimum,
from the optimiser's last Jacobian when it was taken there (else central differences),
not rescaled by the reduced chi-square (the noise model is known; chi2_red is reported
to check it).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import lmfit
import numpy as np

from .likelihood import MAP_REL_STEP, Likelihood
from .priors import Priors


@dataclass(frozen=True)
class MapResult:
    """MAP estimate: theta (P,), covariance (P, P), chi2 and its degrees of freedom, flags."""

    names: tuple
    theta: np.ndarray
    cov: np.ndarray
    chi2: float
    n_data: int
    nfev: int
    success: bool
    message: str
    at_bound: tuple
    seconds: float

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    @property
    def chi2_red(self) -> float:
        return self.chi2 / max(self.n_data - len(self.names), 1)


def jacobian(like: Likelihood, priors: Priors, theta, central: bool = False) -> np.ndarray:
    """d(residuals)/d(theta) (N + n_prior, P) by finite differences in one batch."""
    theta = np.asarray(theta, dtype=float)
    lo, hi = priors.bounds.T
    h = MAP_REL_STEP * (hi - lo)
    P = theta.size
    jp = np.array([[1.0 / priors.dists[n].sigma if (j == i) else 0.0 for j in range(P)]
                   for i, n in enumerate(priors.pset.names) if hasattr(priors.dists[n], "sigma")])
    N = like.n_data
    out = np.empty((N + len(jp), P), order="F")  # column-major: each column is one residual vector
    if central:
        up = np.minimum(theta + h, hi)
        dn = np.maximum(theta - h, lo)
        r = like.residuals_batch(np.vstack([theta + np.diag(up - theta), theta + np.diag(dn - theta)]))
        np.subtract(r[:P].T, r[P:].T, out=out[:N])
        out[:N] /= up - dn
    else:
        step = np.where(theta + h <= hi, h, -h)
        r0 = like.residuals_batch(theta[None])[0]
        like.residuals_batch(theta + np.diag(step), out=out[:N].T)
        out[:N] -= r0[:, None]
        out[:N] /= step
    out[N:] = jp.reshape(-1, P)
    return out


def find_map(like: Likelihood, priors: Priors, start, max_nfev: int = 200, covariance: bool = True,
             tol: float = 1e-8) -> MapResult:
    """lmfit MAP from ``start`` (P,) within the prior support (``covariance=False`` skips the
    covariance, e.g. for a first pass)."""
    t0 = time.perf_counter()
    names = priors.pset.names
    lo, hi = priors.bounds.T
    start = np.clip(np.asarray(start, dtype=float), lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    params = lmfit.Parameters()
    for n, v, a, b in zip(names, start, lo, hi):
        params.add(n, value=float(v), min=float(a), max=float(b))

    def vec(p):
        return np.array([p[n].value for n in names])

    def resid(p):
        t = vec(p)
        r = like.residuals_batch(t[None])[0]
        return np.concatenate([r, priors.residuals(t)])

    last = {}

    def jac(p):
        t = vec(p)
        last["theta"], last["J"] = t, jacobian(like, priors, t)
        return last["J"]

    mini = lmfit.Minimizer(resid, params, scale_covar=False, nan_policy="raise")
    res = mini.minimize(method="least_squares", jac=jac, x_scale="jac", max_nfev=max_nfev, ftol=tol, xtol=tol,
                        gtol=tol, tr_solver="lsmr")
    theta = vec(res.params)
    cov = np.full((len(names), len(names)), np.nan)
    if covariance:
        # the optimiser's last Jacobian is at the optimum (trf evaluates it at every accepted
        # point); forward differences there agree with central ones within 2e-4 in the sd
        # (median 2e-6, measured)
        J = last["J"] if "theta" in last and np.array_equal(last["theta"], theta) else \
            jacobian(like, priors, theta, central=True)
        # a singular J'J leaves the covariance NaN, which fit.model_checks flags
        with contextlib.suppress(np.linalg.LinAlgError):
            cov = np.linalg.inv(J.T @ J)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    near = tuple(n for n, t, a, b, s in zip(names, theta, lo, hi, sd) if min(t - a, b - t) < max(s, 1e-6 * (b - a)))
    chi2 = float(np.sum(like.residuals_batch(theta[None])[0] ** 2))
    return MapResult(names, theta, cov, chi2, like.n_data, int(res.nfev), bool(res.success),
                     str(res.message), near, time.perf_counter() - t0)
