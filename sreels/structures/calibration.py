"""Fitting the resonance constant C of dE * R^2 = C from (dE, R) pairs.

Models (weighted linear least squares in x = 1/R^2):

* ``"inverse_square"``: dE = C / R^2 (one parameter, the study's rule);
* ``"offset"``: dE = C / R^2 + k (an alternative with a constant offset k, e.g. a
  threshold defined differently from the one the rule assumes).

Both dE and R carry errors; the fit uses the effective variance
sigma_i^2 = s_dE,i^2 + (dE/dR)^2 s_R,i^2 with dE/dR = -2C/R^3, iterated to
convergence (Orear, Am. J. Phys. 50 (1982) 912); at each step the fit is solved exactly.
The offset model uses the effective variances of the one-parameter fit, so its chi^2 never
exceeds the nested model's (with C free in the variances it could, and C ran to 0).  Residuals, pulls and chi^2/dof
are reported; the parameter errors are the covariance errors *not* rescaled by
chi^2/dof (``scale_covar=False``) so they are honest when the input errors are;
``C_err_scaled_ev_nm2`` gives the rescaled one as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SreelsInputError
from .resonance import C_EV_NM2

MODELS = ("inverse_square", "offset")


@dataclass(frozen=True)
class CalibrationPoint:
    """One (dE, R) pair with errors: dE in eV above the threshold, R in nm."""

    name: str
    delta_e_ev: float
    delta_e_err_ev: float
    r_nm: float
    r_err_nm: float
    source: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "delta_e_ev": self.delta_e_ev, "delta_e_err_ev": self.delta_e_err_ev,
                "r_nm": self.r_nm, "r_err_nm": self.r_err_nm, "source": self.source}


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`fit_c`.

    Attributes
    ----------
    model : str
    c_ev_nm2, c_err_ev_nm2 : float
        Fitted C and its standard error (eV nm^2), not rescaled by chi^2/dof.
    c_err_scaled_ev_nm2 : float
        Standard error rescaled by sqrt(chi^2/dof) when chi^2/dof > 1.
    k_ev, k_err_ev : float or None
        Offset of the ``"offset"`` model.
    chi2, dof : float, int
    residuals_ev, pulls : ndarray
        dE - model and (dE - model) / sigma_eff per point.
    points : tuple of CalibrationPoint
    leave_one_out : tuple of (name, C, C_err)
        C refitted without each point in turn (how much one oxide moves C).
    """

    model: str
    c_ev_nm2: float
    c_err_ev_nm2: float
    c_err_scaled_ev_nm2: float
    k_ev: float | None
    k_err_ev: float | None
    chi2: float
    dof: int
    residuals_ev: np.ndarray = field(repr=False)
    pulls: np.ndarray = field(repr=False)
    points: tuple = field(repr=False)
    leave_one_out: tuple = field(default=(), repr=False)

    #: A point whose absolute pull exceeds this is listed as an outlier of the rule.
    OUTLIER_PULL = 3.0

    @property
    def outliers(self) -> tuple:
        """Names of the points the fitted rule misses by more than OUTLIER_PULL sigma."""
        return tuple(p.name for p, u in zip(self.points, self.pulls) if abs(u) > self.OUTLIER_PULL)

    @property
    def chi2_dof(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else float("nan")

    def compare(self, c_ref: float = C_EV_NM2) -> float:
        """(C - c_ref) / sigma_C: how many standard errors from the study's 2.820."""
        return (self.c_ev_nm2 - c_ref) / self.c_err_ev_nm2 if self.c_err_ev_nm2 > 0 else float("nan")

    def as_dict(self) -> dict:
        return {
            "model": self.model, "C_ev_nm2": self.c_ev_nm2, "C_err_ev_nm2": self.c_err_ev_nm2,
            "C_err_scaled_ev_nm2": self.c_err_scaled_ev_nm2, "k_ev": self.k_ev, "k_err_ev": self.k_err_ev,
            "chi2": self.chi2, "dof": self.dof, "chi2_dof": self.chi2_dof,
            "C_minus_2820_in_sigma": self.compare(),
            "points": [dict(p.as_dict(), residual_ev=float(r), pull=float(u))
                       for p, r, u in zip(self.points, self.residuals_ev, self.pulls)],
            "outliers": list(self.outliers),
            "leave_one_out": [{"without": n, "C_ev_nm2": c, "C_err_ev_nm2": e} for n, c, e in self.leave_one_out],
        }


def _arrays(points):
    if len(points) == 0:
        raise SreelsInputError("calibration needs at least one (dE, R) pair, got none")
    de = np.array([p.delta_e_ev for p in points], float)
    se = np.array([p.delta_e_err_ev for p in points], float)
    r = np.array([p.r_nm for p in points], float)
    sr = np.array([p.r_err_nm for p in points], float)
    for arr, what in ((de, "dE (eV)"), (r, "R (nm)")):
        bad = ~np.isfinite(arr) | (arr <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SreelsInputError(f"calibration point {points[i].name!r}: {what} must be > 0, got {arr[i]}")
    for arr, what in ((se, "dE error"), (sr, "R error")):
        if np.any(~np.isfinite(arr) | (arr < 0)):
            raise SreelsInputError(f"calibration: {what} must be finite and >= 0")
    if np.any(np.hypot(se, sr) == 0):
        raise SreelsInputError("calibration: every point needs a non-zero dE or R error")
    return de, se, r, sr


def fit_c(points, model: str = "inverse_square", c_init: float = C_EV_NM2, max_iter: int = 20,
          leave_one_out: bool = True) -> CalibrationResult:
    """Fit C (and k for ``model="offset"``) to :class:`CalibrationPoint` s, and (if
    ``leave_one_out`` and a point can be spared) C without each point in turn.

    Raises
    ------
    SreelsInputError
        Unknown model, dE <= 0, R <= 0, no points, or too few points for the model.
    """
    if model not in MODELS:
        raise SreelsInputError(f"unknown calibration model {model!r}; valid: {list(MODELS)}")
    points = tuple(points)
    de, se, r, sr = _arrays(points)
    npar = 1 if model == "inverse_square" else 2
    if len(points) < npar:
        raise SreelsInputError(f"model {model!r} needs at least {npar} points, got {len(points)}")
    if model == "offset" and np.unique(np.round(r, 6)).size < 2:
        raise SreelsInputError("model 'offset' needs at least two different R values")

    # dE = C x + k with x = 1/R^2 is linear in (C, k): weighted least squares solved exactly at
    # each effective-variance step (no bounds, no local minima; the offset model nests the other)
    x = 1.0 / r**2
    A = np.column_stack([x] + ([np.ones_like(x)] if model == "offset" else []))
    c_fit = c_init
    sigma = np.hypot(se, 2 * c_fit / r**3 * sr)
    if model == "offset":  # the effective variances of the one-parameter rule, held: nested chi^2
        base = fit_c(points, "inverse_square", c_init, max_iter, leave_one_out=False)
        sigma = np.hypot(se, 2 * base.c_ev_nm2 / r**3 * sr)
    for _ in range(max_iter if model == "inverse_square" else 0):
        Aw = A / sigma[:, None]
        cov = np.linalg.inv(Aw.T @ Aw)
        theta = cov @ (Aw.T @ (de / sigma))
        new_sigma = np.hypot(se, 2 * theta[0] / r**3 * sr)
        done = np.allclose(new_sigma, sigma, rtol=1e-10)
        sigma = new_sigma
        if done:
            break
    Aw = A / sigma[:, None]
    cov = np.linalg.inv(Aw.T @ Aw)
    theta = cov @ (Aw.T @ (de / sigma))
    c_val = float(theta[0])
    k_val = float(theta[1]) if model == "offset" else 0.0
    if c_val <= 0:
        raise SreelsInputError(f"model {model!r}: C = {c_val:.3g} eV nm^2 <= 0; the points do not follow dE ~ 1/R^2")
    res = de - (c_val / r**2 + k_val)
    pulls = res / sigma
    chi2 = float(np.sum(pulls**2))
    dof = len(points) - npar
    c_err = float(np.sqrt(cov[0, 0]))
    scale = np.sqrt(max(chi2 / dof, 1.0)) if dof > 0 else 1.0
    loo = ()
    if leave_one_out and len(points) > npar + 1:
        out = []
        for i, p in enumerate(points):
            try:
                f = fit_c(points[:i] + points[i + 1:], model, c_init, max_iter, leave_one_out=False)
                out.append((p.name, f.c_ev_nm2, f.c_err_ev_nm2))
            except SreelsInputError:  # e.g. the offset model left with a single R
                out.append((p.name, float("nan"), float("nan")))
        loo = tuple(out)
    return CalibrationResult(
        model=model, c_ev_nm2=c_val, c_err_ev_nm2=c_err, c_err_scaled_ev_nm2=c_err * scale,
        k_ev=k_val if model == "offset" else None,
        k_err_ev=float(np.sqrt(cov[1, 1])) if model == "offset" else None,
        chi2=chi2, dof=dof, residuals_ev=res, pulls=pulls, points=points, leave_one_out=loo)


def synthetic_points(r_nm, c_ev_nm2: float, de_err_ev, r_err_nm, rng: np.random.Generator, k_ev: float = 0.0):
    """Points drawn from dE = C/R^2 + k with Gaussian errors (for tests and validation).

    ``rng`` is an explicit ``numpy.random.Generator``; R is also perturbed by r_err_nm.
    """
    r_true = np.asarray(r_nm, float)
    de_err = np.broadcast_to(np.asarray(de_err_ev, float), r_true.shape)
    r_err = np.broadcast_to(np.asarray(r_err_nm, float), r_true.shape)
    de = c_ev_nm2 / r_true**2 + k_ev + rng.normal(0, 1, r_true.shape) * de_err
    r_obs = r_true + rng.normal(0, 1, r_true.shape) * r_err
    return [CalibrationPoint(f"synthetic{i}", float(a), float(b), float(c), float(d))
            for i, (a, b, c, d) in enumerate(zip(de, de_err, r_obs, r_err))]
