"""Fisher information and Cramer-Rao lower bounds of the physical parameters.

F = J' J, J the Jacobian of the whitened image residuals with respect to the parameters,
the per-row amplitudes profiled out (variable projection: J = -(1 - P_A) V^-1/2 dmu/dtheta,
so J'J is the Schur complement of the full Fisher matrix over parameters and
amplitudes, the information left once the nuisances are estimated).  Evaluated at the
truth on a noise-free image it is the bound any unbiased estimator using the same data
(fit regions, binning) and the same nuisance set must respect: sd >= sqrt(diag F^-1).
Derived numbers get g' F^-1 g (g their gradient).  Gaussian priors add 1 / sigma^2.
"""

from __future__ import annotations

import numpy as np

from .likelihood import Likelihood
from .params import DERIVED, derived
from .priors import Priors


def fisher(like: Likelihood, priors: Priors, theta, include_prior: bool = False) -> np.ndarray:
    """F (P, P) at ``theta`` (central differences)."""
    from .optimize import jacobian  # lmfit: imported when needed (sreels plan uses derived_gradient only)

    J = jacobian(like, priors, theta, central=True)
    n_prior = J.shape[0] - like.n_data
    if not include_prior and n_prior:
        J = J[:like.n_data]
    return J.T @ J


def derived_gradient(priors: Priors, theta, rel: float = 1e-6) -> np.ndarray:
    """d(derived)/d(theta) (D, P) by central differences."""
    pset = priors.pset
    lo, hi = priors.bounds.T
    h = rel * (hi - lo)
    P = len(theta)
    pts = np.vstack([theta + np.diag(h), theta - np.diag(h)])
    d = derived(pset.as_dict(pts), pset.ti3_mode)
    vals = np.array([d[k] for k in DERIVED])  # (D, 2P)
    return (vals[:, :P] - vals[:, P:]) / (2 * h)


def crlb(like: Likelihood, priors: Priors, theta) -> dict:
    """Lower bounds on the standard deviation of every free parameter and derived number."""
    F = fisher(like, priors, theta)
    cov = np.linalg.inv(F)
    out = {n: float(np.sqrt(cov[i, i])) for i, n in enumerate(priors.pset.names)}
    g = derived_gradient(priors, np.asarray(theta, float))
    dc = g @ cov @ g.T
    out.update({f"derived:{k}": float(np.sqrt(dc[i, i])) for i, k in enumerate(DERIVED)})
    return out
