"""O atoms per row from the O-K edge well above its near-edge structure, every row at once.

The O-K near-edge structure (pre-peaks, peaks "a" and "b", :mod:`.okpeaks`) is material-specific
and parametric in the forward model; the continuum further above the threshold is atomic-like,
where the hydrogenic cross section holds (Egerton 2011, Sec. 4.5.1: integration windows starting
>~ 50 eV above a K edge average out the near-edge structure).  So the O amount is an MLLS
amplitude of the forward model's per-atom O-K continuum reference (:func:`sreels.forward.model.
reference_spectra`, "O-K continuum") fitted, together with a power-law background, to the pre-edge
:data:`PRE_EDGE_EV` and the post-edge :data:`POST_EDGE_EV` only (the near-edge channels between
them have no weight), on the same data the Ti-L2,3 fit sees: Fourier-ratio deconvolved by the row's
low loss where there is one (:mod:`.lowloss`), with the Ti-L2,3 fit's L2,3 and L1 continua taken
off first where both edges share the window.  The amplitude is in the units of the Ti and Li-K
amplitudes (atoms x reference scale), so N_Li / N_O follows as N_Li / N_Ti does (:mod:`.lipfu`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..axes import EnergyAxis
from .edgefits import fit_linear_edges

#: Pre-edge of the O-K amount fit, eV on the reference scale (threshold 529.0 eV; the study's
#: convention, :data:`sreels.forward.edges.O_THRESHOLD_EV`): the pre-edge window of
#: :func:`.fast.fit_ranges`, above the Ti-L2,3 white lines.
PRE_EDGE_EV = (495.0, 526.0)
#: Post-edge of the O-K amount fit, eV above the threshold: from 55 eV (peak "b" of oxides lies
#: 18-45 eV above it, :mod:`.okpeaks`; its 6 eV FWHM Gaussian is < 1e-6 of its height 55 eV up)
#: to 105 eV (a 50 eV window; what the window records of it is used).
POST_EDGE_EV = (55.0, 105.0)
#: A post-edge shorter than this (eV) does not measure the O amount (the window ends too soon).
MIN_POST_EDGE_EV = 15.0
O_THRESHOLD_EV = 529.0


@dataclass(frozen=True)
class OAmount:
    """Per-row O amount (rows,): amplitude and error in reference units (divide by ``ref_scale``
    for atoms x incident-electron units), reduced chi^2 of the used channels, poor-fit rows."""

    n: np.ndarray
    n_err: np.ndarray
    chi2_red: np.ndarray
    poor: np.ndarray
    ref_scale: float
    post_ev: tuple   # post-edge range used, eV on the window's axis
    fit: object = None


def post_edge_range(axis: EnergyAxis, offset_ev: float):
    """The post-edge (lo, hi) on ``axis`` for a window whose axis is the reference scale plus
    ``offset_ev``, clipped to the window; None if shorter than :data:`MIN_POST_EDGE_EV`."""
    lo = O_THRESHOLD_EV + POST_EDGE_EV[0] + offset_ev
    hi = min(O_THRESHOLD_EV + POST_EDGE_EV[1] + offset_ev, axis.end_ev - axis.scale_ev)
    return (lo, hi) if hi - lo >= MIN_POST_EDGE_EV else None


def fit_o_amount(axis: EnergyAxis, counts, variance, refs, delta, mask=None,
                 window_offset_ev: float | None = None) -> OAmount | None:
    """MLLS amplitude of the O-K continuum on the pre- and post-edge (module docstring).

    Parameters
    ----------
    axis : EnergyAxis of ``counts`` (rows, channels), other edges' contributions already removed.
    variance : (rows, channels) per-pixel variances.
    refs : (fine energy grid, {"O-K continuum": per-atom reference}) on the reference scale.
    delta : (rows,) offset (eV) of each row's axis from the reference scale.
    mask : optional (rows, channels) bool, pixels without weight (saturated).
    window_offset_ev : offset that places the pre- and post-edge windows (default: the rows' median
        ``delta``); give the whole image's when ``counts`` is a block of its rows.

    Returns
    -------
    OAmount, or None when the window has no pre-edge or no post-edge long enough.
    """
    delta = np.asarray(delta, float)
    d0 = float(np.nanmedian(delta)) if np.isfinite(delta).any() else 0.0
    delta = np.where(np.isfinite(delta), delta, d0)
    if window_offset_ev is not None:
        d0 = float(window_offset_ev)
    pre = (max(PRE_EDGE_EV[0] + d0, axis.offset_ev + axis.scale_ev), PRE_EDGE_EV[1] + d0)
    post = post_edge_range(axis, d0)
    if post is None or pre[1] - pre[0] < 10.0:
        return None
    e = axis.energy_ev
    gap = (e > pre[1]) & (e < post[0])
    m = np.broadcast_to(gap, np.shape(counts))
    if mask is not None:
        m = m | mask
    fit = fit_linear_edges(axis, counts, variance, refs, ("O-K continuum",), pre[0], post[1], pre[1],
                           delta=delta, mask=m, fit_delta=False, whole_window=False)
    # chi^2 over the channels that had weight (the near-edge gap has none; the fit is on the channels with weight
    # in some row only)
    used = (fit.weights > 0).sum(1)
    npar = fit.result.params.shape[1]
    chi = fit.result.chi2_red * max(fit.data.shape[1] - npar, 1) / np.maximum(used - npar, 1)
    dof = np.maximum(used - npar, 1)
    poor = chi > 1.0 + 5.0 * np.sqrt(2.0 / dof)
    cov = fit.result.cov * np.maximum(np.nan_to_num(chi, nan=1.0), 1.0)[:, None, None]
    fit = dataclasses.replace(fit, result=dataclasses.replace(fit.result, cov=cov, chi2_red=chi))
    return OAmount(fit.value("O-K continuum"), fit.err("O-K continuum"), chi, poor, fit.ref_scale,
                   (float(post[0]), float(post[1])), fit)
