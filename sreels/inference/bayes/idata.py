"""The Bayesian fit as ArviZ InferenceData (``posterior.nc``).

Groups
------
``posterior``
    every sampled parameter and derived number; chains are emcee's walkers
``sample_stats``
    ``lp``: log posterior of every draw
``log_likelihood``
    ``rows`` (chain, draw, row): the log-likelihood of each row's spectra (all windows),
    amplitudes marginalised as in the fit; evaluated on a thinned subset of the draws (every
    k-th step of every walker, ``draw`` holds the step index) so that ``az.loo`` gives
    leave-one-row-out predictive accuracy
``observed_data``
    one variable per window: the data the likelihood saw (electrons per bin, PSF removed,
    (row, energy)); masked bins NaN
``posterior_predictive``
    the same variables: replicated images, the prediction at a posterior draw plus Gaussian
    noise of the likelihood's variance (a few draws, float32)
``prior``
    draws from the priors of the sampled parameters

Every variable carries ``units`` and ``description`` attributes.  ArviZ's ``az.summary``
rounds to two decimals by default: R_OO (nm) varies in the fifth, so call it with
``round_to="none"`` (or 6).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .params import DERIVED, derived

#: description of the parameters and derived numbers; units follow from the name's suffix
DESCRIPTIONS = {
    "electrode_width_nm": "width of the Li-rich electrode (c_Li at 2.3 % of its excess)",
    "li_max_rel": "c_Li at the Pt interface, parent electrolyte = 1",
    "li_rise_nm": "length over which c_Li rises toward the Pt interface",
    "ti3_li_threshold_rel": "c_Li (parent = 1) above which Ti is Ti3+",
    "ti3_li_width_rel": "width in c_Li of the Ti3+/Ti4+ transition",
    "ti3_boundary_nm": "Ti3+/Ti4+ boundary position (position mode)",
    "ti3_width_nm": "Ti3+/Ti4+ transition width (position mode)",
    "r_oo_parent_nm": "mean O-O distance in the parent electrolyte",
    "r_oo_slope_nm": "R_OO rise per unit c_Li",
    "peak_a_ev": 'O-K peak "a" position in the parent',
    "ti_boundary_nm": "Ti3+/Ti4+ boundary (Ti3+ fraction 0.5) from the Pt interface",
    "li_at_ti_boundary_rel": "c_Li at the Ti3+/Ti4+ boundary, parent = 1",
    "r_oo_max_nm": "R_OO at the maximum c_Li",
    "r_oo_change_nm": "maximum expansion of R_OO (max - parent)",
    "rows": "log-likelihood of one row's spectra (all windows), amplitudes marginalised",
}


def units_of(name: str) -> str:
    """Units of a parameter from its name: ``_nm`` nm, ``_ev`` eV, else dimensionless ("1";
    ``_rel`` quantities are relative to the parent electrolyte, as their description says)."""
    if name.endswith("_nm"):
        return "nm"
    if name.endswith("_ev"):
        return "eV"
    return "1"


def _attrs(name: str) -> dict:
    text = DESCRIPTIONS.get(name, name.replace("_", " "))
    if name.endswith("_rel") and "parent" not in text:
        text += " (relative to the parent electrolyte)"
    return {"units": units_of(name), "description": text}


def row_log_likelihood(like, thetas: np.ndarray) -> np.ndarray:
    """(B, R) log-likelihood of each row for parameter vectors ``thetas`` (B, P).

    The per-row amplitudes (background per window, host and AlPO4 amounts) are integrated
    out under a flat unit prior, as in the fit:
    ln p_r = -(chi2_r + ln det M_r) / 2 - sum ln(2 pi V) / 2 + K ln(2 pi) / 2,
    chi2_r at the best amplitudes, M_r the amplitudes' normal matrix, K their number."""
    thetas = np.atleast_2d(np.asarray(thetas, float))
    const = sum(np.sum(np.where(wd.mask, np.log(2 * np.pi * v), 0.0), axis=1)
                for wd, v in zip(like.data.windows, like.data.variance))
    out = np.empty((thetas.shape[0], like.data.y_nm.size))
    for s in range(0, thetas.shape[0], like.chunk):
        cols = like.model.columns(thetas[s:s + like.chunk])
        chi2, logdet = like.row_terms(cols)
        K = like.n_cols  # flat-prior amplitudes per row (a DualEELS input's extra background columns too)
        out[s:s + like.chunk] = -0.5 * (chi2 + logdet) - 0.5 * const + 0.5 * K * math.log(2 * np.pi)
    return out


def _thinned(chain: np.ndarray, n_max: int):
    """Every k-th step of every walker, at most ~n_max draws: (walkers, steps', P), step indices."""
    steps, walkers = chain.shape[:2]
    k = max(1, math.ceil(steps * walkers / n_max))
    idx = np.arange(steps - 1, -1, -k)[::-1]
    return np.swapaxes(chain[idx], 0, 1), idx


def inference_data(fit, attrs: dict | None = None, priors=None, rng=None, n_loglik: int = 128,
                   n_prior: int = 500, max_ppc_values: float = 1e6):
    """ArviZ InferenceData of a sampled :class:`~sreels.inference.bayes.fit.BayesFit`
    (groups in the module docstring).

    Parameters
    ----------
    fit : BayesFit
        With samples.
    attrs : dict, optional
        Written (as strings) into the file's attributes (version, seed, settings).
    priors : Priors, optional
        For the ``prior`` group (left out without).
    rng : numpy.random.Generator or int, optional
        Source of the prior draws and the posterior-predictive noise.
    n_loglik : int
        About this many draws get a pointwise log-likelihood.
    n_prior : int
        Prior draws.
    max_ppc_values : float
        Bound on the values of the posterior-predictive images (draws x bins); at least two
        draws are kept.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az
    rng = np.random.default_rng(rng)
    like = fit.likelihood
    pset = like.model.pset
    ch = fit.samples.chain  # (steps, walkers, P)
    post = {n: np.swapaxes(ch[..., i], 0, 1) for i, n in enumerate(pset.names)}
    d = derived(pset.as_dict(ch), pset.ti3_mode)
    for k in DERIVED:
        if k not in post:
            post[k] = np.swapaxes(np.asarray(d[k]), 0, 1)
    th, steps = _thinned(ch, n_loglik)
    ll = row_log_likelihood(like, th.reshape(-1, th.shape[-1])).reshape(th.shape[0], th.shape[1], -1)
    y = like.data.y_nm
    obs, pp, dims, coords = {}, {}, {"rows": ["row"]}, {"row": y}
    n_data = sum(wd.data.size for wd in like.data.windows)
    n_pp = int(max(2, min(th.shape[0] * th.shape[1], max_ppc_values // max(n_data, 1))))
    pick = th.reshape(-1, th.shape[-1])[np.linspace(0, th.shape[0] * th.shape[1] - 1, n_pp).astype(int)]
    reps = [like.fit_rows(t)[1] for t in pick]
    for i, (wd, v) in enumerate(zip(like.data.windows, like.data.variance)):
        name = wd.window.name
        dims[name] = ["row", f"energy_{name}"]
        coords[f"energy_{name}"] = wd.energy_ev.mean(1)
        obs[name] = np.where(wd.mask, wd.data, np.nan).astype(np.float32)
        rep = np.stack([r[i] + np.sqrt(v) * rng.standard_normal(v.shape) for r in reps])
        pp[name] = np.where(wd.mask, rep, np.nan).astype(np.float32)[None]
    groups = {"posterior": post, "sample_stats": {"lp": np.swapaxes(fit.samples.log_prob, 0, 1)},
              "log_likelihood": {"rows": ll}, "observed_data": obs, "posterior_predictive": pp}
    if priors is not None:
        pr = priors.sample(rng, n_prior)
        groups["prior"] = {n: pr[None, :, i] for i, n in enumerate(pset.names)}
    with warnings.catch_warnings():  # arrays are (chain, draw): ArviZ's guess warns when draws < chains
        warnings.filterwarnings("ignore", message="More chains")
        idata = az.from_dict(**groups, coords=coords, dims=dims,
                             attrs={k: str(v) for k, v in (attrs or {}).items()})
    idata.log_likelihood = idata.log_likelihood.assign_coords(draw=steps)
    for g in ("posterior", "log_likelihood", "observed_data", "posterior_predictive", "prior"):
        if g in idata.groups():
            for name, var in idata[g].data_vars.items():
                var.attrs.update(_attrs(name) if g not in ("observed_data", "posterior_predictive") else
                                 {"units": "electrons per bin (detector PSF removed)",
                                  "description": f"{name} window: {'data' if g == 'observed_data' else 'replicated data'}"})
    idata.posterior.attrs["log_likelihood_draws"] = "every {}-th step of every walker".format(
        int(steps[1] - steps[0]) if steps.size > 1 else 1)
    return idata
