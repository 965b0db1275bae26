"""The low-loss window of a DualEELS recording: energy reference, resolution, t/lambda and
Fourier-ratio deconvolution of the core-loss windows.  Every function acts on all rows at once.

- ZLP centre per row (:func:`zlp_centre`): vertex of a least-squares parabola through ln(counts)
  over the maximum and its two neighbours on each side (channels above 30 % of the maximum);
  exact for a Gaussian peak; the centre of the row's energy scale (the study's reference,
  Yamamoto 2014, Supplementary data 1) and so the SR distortion curve across rows.
- Resolution (:func:`zlp_fwhm`): full width at half maximum, half-maximum crossings
  interpolated linearly between channels (includes the camera's point spread).
- t/lambda (:func:`log_ratio_thickness`): the log-ratio method, t/lambda = ln(I_t / I_0)
  (Egerton 2011, Eq. 5.11), I_0 the counts up to the first minimum after the ZLP (as exspy's
  ``estimate_elastic_scattering_intensity`` with a threshold), I_t the whole window.
- Plural scattering of the core-loss windows: those above the low-loss range are Fourier-ratio
  deconvolved (:mod:`.deconvolve`) and reconvolved with the inversion's own resolution; those that
  start inside it (the Li-K window at 40 eV) keep their counts and the fit convolves its references
  with each row's low loss (:func:`plural_kernel`); :func:`apply_low_loss` is the fast path's step.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import uniform_filter1d

from ..axes import EnergyAxis
from ..config import LOWLOSS_NAME
from ..errors import SreelsInputError
from ..resources import fft_workers, run_concurrently
from .deconvolve import (ROW_BATCH, _IMAGE, _resample, _row_mean, fourier_ratio, held_step, low_loss_total,
                          row_sum_mean, stats_scope)
from .edgefits import variance_model
from .okpeaks import noise_ratio_counts, noise_scale_of

#: the ZLP is searched within this distance of 0 eV on the stored axis (uncalibrated axes: a few eV)
ZLP_SEARCH_EV = 10.0
#: windows starting below this energy (eV) are not deconvolved (their plural source is the plasmon
#: region just below them, where a Fourier ratio's kernel would hold their own edges and a Fourier log
#: needs the low loss spliced in at its ~250x shorter exposure's noise): the fit takes its references
#: times the unscattered fraction plus the row's multiple scattering instead (:func:`plural_kernel`)
MIN_DECONVOLVE_EV = 150.0
#: at most this many principal components kept of the rows' multiple-scattering tails (:func:`denoise_rows`)
TAIL_COMPONENTS = 6
#: ... cut where an eigenvalue exceeds the next by this ratio (the largest such cut up to TAIL_COMPONENTS)
TAIL_GAP = 1.5
#: the tail's lag spacing (eV): it is smooth on the plasmon's scale (and reconvolved with TAIL_FWHM_EV)
TAIL_STEP_EV = 0.5
#: the tail's reconvolution FWHM (eV), or the fit's resolution where that is wider: the tail holds the sharp
#: onsets of the low loss's own shallow edges (Li-K, Ti-M2,3) times a plasmon, which a narrower reconvolution
#: than the data's leaves too sharp (noise-free at 1.5 eV resolution: Li-K chi^2_red 23-28 with 1 eV, 0.004-0.006
#: with 1.5 eV; every row li_poor_fit)
TAIL_FWHM_EV = 1.0
#: the tail is computed up to this far above the Li-K fit range's end (eV); its principal components
#: are better determined over the longer range (c_Li errors 0.107 at +5 eV, 0.086 at +70 eV, measured)
TAIL_MARGIN_EV = 70.0
#: replicas (and their seed) that carry the low loss's shot noise through the tail into the errors
TAIL_REPLICAS = 8
TAIL_SEED = 20140414
#: the elastic threshold (first minimum) is searched in [centre + max(1 eV, 1.5 FWHM), centre + this]
THRESHOLD_MAX_EV = 11.0


def zlp_centre(counts, axis: EnergyAxis):
    """ZLP maximum per row (eV on ``axis``) and its channel index, (rows,) each.

    Parabola through ln(counts) at the maximum and up to two channels either side (those above
    30 % of the maximum), by weighted least squares solved for all rows at once.
    """
    y = np.asarray(counts, dtype=float)
    e = axis.energy_ev
    near = np.abs(e) <= ZLP_SEARCH_EV
    if not near.any():
        raise SreelsInputError(f"the low-loss window ({axis.offset_ev:.1f}-{axis.end_ev:.1f} eV) holds no "
                               f"channel within {ZLP_SEARCH_EV:.0f} eV of 0 eV: no zero-loss peak to read")
    a, b = np.flatnonzero(near)[[0, -1]]  # (e ascends: the channels near 0 eV are one run)
    imax = a + np.argmax(y[:, a:b + 1], axis=1)
    rows = np.arange(y.shape[0])
    off = np.arange(-2, 3)
    idx = np.clip(imax[:, None] + off[None, :], 0, y.shape[1] - 1)
    v = y[rows[:, None], idx]
    peak = v[:, 2:3]
    w = (v > 0.3 * peak) & (peak > 0)
    lv = np.log(np.where(w, v, 1.0))
    x = off[None, :].astype(float)
    s = [np.sum(w * x**k, 1) for k in range(5)]
    t = [np.sum(w * lv * x**k, 1) for k in range(3)]
    m = np.stack([np.stack([s[0], s[1], s[2]], -1), np.stack([s[1], s[2], s[3]], -1),
                  np.stack([s[2], s[3], s[4]], -1)], -2)
    rhs = np.stack(t, -1)
    ok = np.linalg.det(m) > 1e-9
    coef = np.linalg.solve(np.where(ok[:, None, None], m, np.eye(3)), rhs[:, :, None])[:, :, 0]
    c1, c2 = coef[:, 1], coef[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where(ok & (c2 < 0), -c1 / (2 * c2), 0.0)
    dx = np.clip(dx, -1.0, 1.0)
    return axis.offset_ev + axis.scale_ev * (imax + dx), imax


def _crossings(y, imax, half, lo=0):
    """The last channel below ``half`` before ``imax`` (-1: none) and the first after it (y's width: none), of
    rows ``y`` whose channel 0 is channel ``lo`` of the row."""
    idx = np.arange(lo, lo + y.shape[1])[None, :]
    below = y < half
    return (np.max(np.where(below & (idx < imax[:, None]), idx, -1), 1),
            np.min(np.where(below & (idx > imax[:, None]), idx, lo + y.shape[1]), 1))


#: channels either side of the ZLP maximum in which :func:`zlp_fwhm` looks for its half-maximum crossings first
#: (rows without both there: the whole row)
FWHM_SEARCH_CHANNELS = 64


def zlp_fwhm(counts, axis: EnergyAxis, imax):
    """FWHM (eV) of the ZLP per row: half-maximum crossings interpolated between channels (the nearest
    crossing either side of the maximum, looked for within :data:`FWHM_SEARCH_CHANNELS` first: the same channels)."""
    y = np.asarray(counts, dtype=float)
    n = y.shape[1]
    rows = np.arange(y.shape[0])
    half = 0.5 * y[rows, imax][:, None]
    a = max(int(imax.min()) - FWHM_SEARCH_CHANNELS, 0)
    b = min(int(imax.max()) + FWHM_SEARCH_CHANNELS + 1, n)
    jl, jr = _crossings(y[:, a:b], imax, half, a)
    far = ((jl < 0) & (a > 0)) | ((jr >= b) & (b < n))  # a crossing not within the channels looked at
    if far.any():
        jl[far], jr[far] = _crossings(y[far], imax[far], half[far])
    jl, jr = np.clip(jl, 0, n - 2), np.clip(jr, 1, n - 1)
    h = half[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        xl = jl + (h - y[rows, jl]) / (y[rows, jl + 1] - y[rows, jl])
        xr = jr - (h - y[rows, jr]) / (y[rows, jr - 1] - y[rows, jr])
    return axis.scale_ev * (xr - xl)


def elastic_threshold(counts, axis: EnergyAxis, centre_ev, fwhm_ev):
    """Channel index of the first minimum after the ZLP, (rows,): the minimum of the counts
    smoothed over ~0.5 eV in [centre + max(1 eV, 1.5 FWHM), centre + 11 eV]."""
    y = np.asarray(counts, dtype=float)
    k = max(1, int(round(0.5 / axis.scale_ev)) | 1)
    sm = uniform_filter1d(y, k, axis=1, mode="nearest")
    e = axis.energy_ev[None, :]
    lo = (centre_ev + np.maximum(1.0, 1.5 * np.nan_to_num(fwhm_ev, nan=1.0)))[:, None]
    sel = (e >= lo) & (e <= centre_ev[:, None] + THRESHOLD_MAX_EV)
    sel[~sel.any(1), -1] = True  # a window that ends before: its last channel
    return np.argmin(np.where(sel, sm, np.inf), axis=1)


def _channel_variance(y, c0: int) -> np.ndarray:
    """Each row's noise variance per channel from its second differences y[c-1] - 2 y[c] + y[c+1] on disjoint
    triples of the channels from ``c0`` on (the same for every row: a block of rows gets the whole image's
    values): (median |d| / (0.6745 sqrt 6))^2 (6 sigma^2
    for independent channels; the smooth inelastic signal's own curvature is far below the noise on sub-eV
    channels; the median ignores a spike).  A camera's point spread, which correlates neighbouring channels, makes
    it smaller than the counts' own variance: a lower bound.  0 where fewer than 5 triples remain.  One partial
    sort of a third of the channels (~12 ms a 1024-row block: a map's first pass)."""
    n = (y.shape[1] - c0) // 3
    if n < 5:
        return np.zeros(y.shape[0])
    a, b, c = (y[:, c0 + k:c0 + 3 * n:3] for k in range(3))
    d = np.abs(a - 2.0 * b + c)
    return (np.median(d, axis=1) / (0.6745 * np.sqrt(6.0))) ** 2


#: the channels' own scatter (:func:`_channel_variance`) is read above this loss on a low loss's stored axis: beyond
#: any zero-loss peak the reading accepts (its maximum within 10 eV of 0 eV, :func:`zlp_centre`)
SCATTER_FROM_EV = 20.0


def log_ratio_thickness(counts, threshold_idx, gain=1.0, readout=0.0, scatter_from: int | None = None):
    """t/lambda = ln(I_t / I_0) per row and its standard error.

    Error propagation with I_t = I_0 + I_in and Var(I) = g I + n rd^2 for a sum of n channels
    of counts (gain g counts/electron; the camera's PSF does not change a broad sum's variance):
        Var(t/lambda) = Var(I_in) / I_t^2 + Var(I_0) (1/I_t - 1/I_0)^2,
    which is I_in / (I_t I_0) electrons^-1 for pure shot noise.  With ``scatter_from`` (a channel), Var(I_in) is at
    least the channels' own scatter from there on (:func:`_channel_variance`) times the inelastic channels' number:
    with the gain or the readout noise unknown (1 and 0 taken) the model alone gave a vacuum pixel of a measured map
    t/lambda -0.0045 +- 0.000004.  The threshold's own
    systematic error (the plasmon's onset under the ZLP, the ZLP tail above it) is not included.
    """
    y = np.asarray(counts, dtype=float)
    idx = np.arange(y.shape[1])[None, :]
    zero = idx < threshold_idx[:, None]
    i0 = np.sum(np.where(zero, y, 0.0), 1)
    it = y.sum(1)
    iin = it - i0
    n0 = zero.sum(1)
    v0 = gain * np.maximum(i0, 0.0) + n0 * readout**2
    n_in = y.shape[1] - n0
    vin = gain * np.maximum(iin, 0.0) + n_in * readout**2
    if scatter_from is not None:
        vin = np.maximum(vin, n_in * _channel_variance(y, scatter_from))
    with np.errstate(divide="ignore", invalid="ignore"):
        tl = np.log(it / i0)
        err = np.sqrt(vin / it**2 + v0 * (1.0 / it - 1.0 / i0) ** 2)
    return tl, err


#: A low loss's pedestal: a dark-reference residual, tens of counts per channel in a low loss recorded in
#: microseconds (30-66 counts on the measured Fe/Cr oxide DualEELS pair of practical_EELS_QEM, GIF Quantum ER, 5 us
#: dwell: below the ZLP, where no electron scatters, and beyond ~100 eV, where the core loss, 4e4 times longer
#: exposed, gives the low loss 0.4 counts at 400 eV; its ZLP holds 9e4 counts; 180 and 450 counts on the LSMO and
#: LSMO/STO pairs of exspy-demos, flat from -50 eV to the ZLP's foot).  Read on each row's channels at least
#: PEDESTAL_GAP_EV and PEDESTAL_FWHM x its ZLP's FWHM below its ZLP maximum, when they span PEDESTAL_MIN_EV, and
#: subtracted from the row where it exceeds PEDESTAL_Z of its standard error and does not rise toward the ZLP (the
#: half of those channels nearer to it not above the farther half by 3 standard errors or 10 %): a rising level is
#: the ZLP's own tail (pyEELSMODEL's SrTiO3 ll.msa: 0.0 / 1.4 / 3.0 / 6.0 counts at -40 / -25 / -16 / -10 eV)
PEDESTAL_GAP_EV = 15.0
PEDESTAL_FWHM = 10.0
PEDESTAL_MIN_EV = 10.0
PEDESTAL_Z = 4.0
#: a pedestal that adds less than this fraction to the row's counts above its ZLP is left (t/lambda moves < 0.01):
#: pyEELSMODEL's ll.msa reads 1.3 counts at -40 to -19 eV, within 3 standard errors of flat but its ZLP's tail
#: (0.7 % of I_t); the measured pedestals above add 13-58 %
PEDESTAL_MIN_FRACTION = 0.01
#: A row whose pedestal was subtracted ends where its signal does: above its plasmon maximum + FLOOR_MARGIN_EV, the
#: first energy where the row smoothed over FLOOR_SMOOTH_EV falls below FLOOR_Z of its own noise.  Beyond it the
#: channels hold noise and what is left of the pedestal (the pair above: its window's end at 462 eV, extended by a
#: power law of its last 20 eV, a flat pedestal, added 75 % to I_t: t/lambda 0.68 for ~0.4, and its deconvolved
#: core loss was 68 % negative); they are replaced by a power law continuing the row, E^-r with r from its last
#: 20 eV before the end in [FLOOR_R_MIN, 8] (FLOOR_R_DEFAULT where that is not measurable).  Each row on its own
#: (no image average: a Dask block gets what the whole image would)
FLOOR_SMOOTH_EV = 5.0
FLOOR_Z = 3.0
FLOOR_MARGIN_EV = 10.0
FLOOR_R_MIN = 2.0
FLOOR_R_DEFAULT = 3.0


@dataclasses.dataclass(frozen=True)
class LowLossFloor:
    """What :func:`low_loss_floor` did, per row: the pedestal subtracted (counts per channel; 0 where none),
    the signal end (eV on the stored axis; NaN: not cut), the pedestal left beyond it (counts per channel;
    NaN: not measured) and its systematic on t/lambda."""

    pedestal: np.ndarray
    signal_end_ev: np.ndarray
    residual: np.ndarray
    t_over_lambda_syst: np.ndarray


def low_loss_floor(counts, axis: EnergyAxis):
    """A recorded low loss without its pedestal and, in the rows that had one, without the channels beyond
    their signal's end (:data:`PEDESTAL_GAP_EV`, :data:`FLOOR_Z`): (counts (rows, channels),
    :class:`LowLossFloor`).  Rows without a measurable pedestal are returned as recorded.

    The pedestal under the ZLP and the plasmons cannot be measured there; where it differs from the one read
    below the ZLP, the channels beyond the signal's end show the difference (``residual``), and that
    difference over the channels up to the end, over I_t, is the stated t/lambda systematic."""
    y = np.asarray(counts, dtype=float)
    rows = np.arange(y.shape[0])
    e = axis.energy_ev
    de = axis.scale_ev
    idx = np.arange(e.size)[None, :]
    nan = np.full(y.shape[0], np.nan)
    centre, imax = zlp_centre(y, axis)
    fwhm = np.nan_to_num(zlp_fwhm(y, axis, imax), nan=1.0)
    pre = e[None, :] < (centre - np.maximum(PEDESTAL_GAP_EV, PEDESTAL_FWHM * fwhm))[:, None]
    n_pre = pre.sum(1)
    has = n_pre * de >= PEDESTAL_MIN_EV
    if not has.any():
        return y, LowLossFloor(np.zeros(y.shape[0]), nan, nan, np.zeros(y.shape[0]))
    # mean and variance of the channels within 4 sd of the row's (twice): a few spikes (a detector edge's first
    # channels, cosmic rays) move neither; medians would not do on quantised counts (a median of -1 for a
    # readout noise of 1-2 counts about 0 in simulated images)
    use = pre
    for _ in range(3):
        n_use = np.maximum(use.sum(1), 1)
        b = np.sum(np.where(use, y, 0.0), 1) / n_use
        v = np.sum(np.where(use, (y - b[:, None]) ** 2, 0.0), 1) / np.maximum(n_use - 1, 1)
        use = pre & (np.abs(y - b[:, None]) <= 4.0 * np.sqrt(v)[:, None])
    # the half of the channels nearer to the ZLP against the farther half (the channels below the gap are contiguous)
    far = use & (np.cumsum(pre, 1) <= (n_pre // 2)[:, None])
    near = use & ~far
    n_far, n_near = np.maximum(far.sum(1), 1), np.maximum(near.sum(1), 1)
    rise = np.sum(np.where(near, y, 0.0), 1) / n_near - np.sum(np.where(far, y, 0.0), 1) / n_far
    flat = rise < np.maximum(3.0 * np.sqrt(v * (1.0 / n_far + 1.0 / n_near)), 0.1 * np.abs(b))
    # ... and that matters: over the channels above the ZLP at least PEDESTAL_MIN_FRACTION of the row's counts
    above_zlp = np.sum(e[None, :] > centre[:, None], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        matters = np.abs(b) * above_zlp > PEDESTAL_MIN_FRACTION * np.abs(np.sum(y, 1))
    sub = has & flat & matters & (np.abs(b) > PEDESTAL_Z * np.sqrt(v / n_use))
    if not sub.any():
        return y, LowLossFloor(np.zeros(y.shape[0]), nan, nan, np.zeros(y.shape[0]))
    ped = np.where(sub, b, 0.0)
    y = y - ped[:, None]
    # each such row's signal end: its smoothed counts below FLOOR_Z of their noise, above its plasmon maximum
    k = max(1, int(round(FLOOR_SMOOTH_EV / de)))
    ms = uniform_filter1d(y, k, axis=1, mode="nearest")
    above = e[None, :] > (centre + np.maximum(3.0, 3.0 * fwhm))[:, None]
    d1 = np.diff(y, axis=1)
    dm = np.where(above[:, 1:], d1, np.nan)
    mad = np.nanmedian(np.abs(dm - np.nanmedian(dm, 1, keepdims=True)), 1) if above[:, 1:].any() else nan
    sig = 1.4826 * mad / np.sqrt(2.0 * k)
    ep = e[np.argmax(np.where(above, ms, -np.inf), 1)]
    low = (e[None, :] > (ep + FLOOR_MARGIN_EV)[:, None]) & (ms < FLOOR_Z * sig[:, None]) & (idx < e.size - k)
    cut = sub & low.any(1) & (sig > 0)
    end = np.where(cut, np.argmax(low, 1), e.size)
    resid, syst = nan.copy(), np.zeros(y.shape[0])
    if cut.any():
        n20 = max(2, int(round(20.0 / de)))
        lo = np.maximum(end - n20, 0)
        mid = (lo + end) // 2
        first, second = (idx >= lo[:, None]) & (idx < mid[:, None]), (idx >= mid[:, None]) & (idx < end[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            g1 = np.sum(np.where(first, y, 0.0), 1) / first.sum(1)
            g2 = np.sum(np.where(second, y, 0.0), 1) / second.sum(1)
            e1 = np.sum(np.where(first, e, 0.0), 1) / first.sum(1)
            e2 = np.sum(np.where(second, e, 0.0), 1) / second.sum(1)
            r = np.log(g1 / g2) / np.log(e2 / e1)
        r = np.where(np.isfinite(r) & (g1 > 0) & (g2 > 0), np.clip(r, FLOOR_R_MIN, 8.0), FLOOR_R_DEFAULT)
        j = np.clip(end - 1, 0, e.size - 1)
        level = np.maximum(ms[rows, j], 0.0)
        e_end = np.maximum(e[j], 1e-3)
        beyond = cut[:, None] & (idx >= end[:, None])
        far = cut[:, None] & (idx >= (end + 4 * k)[:, None])
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            resid = np.where(far.sum(1) > 0, np.sum(np.where(far, y, 0.0), 1) / far.sum(1), np.nan)
            y = np.where(beyond, level[:, None] * (np.maximum(e, 1e-3)[None, :] / e_end[:, None]) ** (-r[:, None]), y)
            total = y.sum(1)
            # the pedestal under the signal may differ from the one subtracted by what is left beyond the end
            syst = np.where(cut & np.isfinite(resid) & (total > 0), np.abs(np.nan_to_num(resid)) * end / total, 0.0)
    return y, LowLossFloor(ped, np.where(cut, e[np.clip(end, 0, e.size - 1)], np.nan), np.where(cut, resid, np.nan),
                           syst)


#: the private columns a Dask fit's blocks return :class:`LowLossFloor` in (per row), for :func:`low_loss_floor_note`
FLOOR_COLUMNS = {"pedestal": "_ll_pedestal", "signal_end_ev": "_ll_signal_end_ev", "residual": "_ll_residual",
                 "t_over_lambda_syst": "_ll_t_over_lambda_syst"}


def low_loss_floor_note(source, floor: LowLossFloor) -> str:
    """The note of :func:`low_loss_floor` ("" when it changed nothing)."""
    sub = floor.pedestal != 0
    if not sub.any():
        return ""
    text = (f"low-loss window {source}: a pedestal subtracted in {int(sub.sum())} of {sub.size} rows (median "
            f"{np.median(floor.pedestal[sub]):.3g} counts per channel, read below the ZLP where no electron scatters)")
    cut = np.isfinite(floor.signal_end_ev)
    if cut.any():
        text += (f"; in {int(cut.sum())} of them the signal sinks into the noise at {np.median(floor.signal_end_ev[cut]):.0f}"
                 " eV (median, stored axis), beyond which a power law continues it")
        if np.isfinite(floor.residual).any():
            text += (f" (the channels there average {np.nanmedian(floor.residual):+.3g} counts: pedestal the subtraction "
                     "did not remove; its effect on I_t up to the end is in t_over_lambda_err, median "
                     f"{np.median(floor.t_over_lambda_syst[cut]):.3f})")
    return text + ". Check the dark reference of short low-loss exposures"


def read_zlp(counts, axis: EnergyAxis, gain=1.0, readout=0.0):
    """Each row's ZLP maximum (eV), FWHM (eV), elastic threshold (channel), t/lambda and its error."""
    y = np.asarray(counts, dtype=float)
    centre, imax = zlp_centre(y, axis)
    fwhm = zlp_fwhm(y, axis, imax)
    thr = elastic_threshold(y, axis, centre, fwhm)
    c0 = int(np.searchsorted(axis.energy_ev, SCATTER_FROM_EV))
    return (centre, fwhm, thr, *log_ratio_thickness(y, thr, gain, readout, scatter_from=c0))


def _log_ratio_excess(jf, zf, g, eps2=0.0):
    """g (q - 1 - ln q) with q = jf / zf, every row and frequency at once, in real arithmetic (the
    principal logarithm, ln|q| + i atan2(Im q, Re q), as numpy's complex log, at a third of its cost);
    0 where g <= 1e-8 or the value is not finite.

    ``eps2`` (rows, 1): the white-noise power of the transforms (the low loss's variance summed over its
    channels).  Where |zf|^2 does not stand above it, q is noise and so is its logarithm: the single
    scattering s = ln q is then taken as W s, W = |zf|^2 / (|zf|^2 + eps2) (a Wiener guard, as the Fourier
    ratio's), and the excess is exp(W s) - 1 - W s (the same where W = 1).  It matters where the
    reconvolution g is not far narrower in frequency than the ZLP's transform: at a 1.5 eV resolution
    (g of 1.5 eV) the tails' noise was ~10x that at 0.5 eV (g of 1 eV) and the rows' principal components
    drowned in it (c_Li of whole images 15 % low, measured)."""
    a, b, c, d = jf.real, jf.imag, zf.real, zf.imag
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        den = c * c + d * d
        qr = (a * c + b * d) / den
        qi = (b * c - a * d) / den
        lnm = 0.5 * np.log(qr * qr + qi * qi)      # ln|q|
        ang = np.arctan2(qi, qr)                   # arg q
        if np.any(eps2):
            w = den / (den + eps2)
            lnm, ang = w * lnm, w * ang
            mag = np.exp(lnm)
            re = g * (mag * np.cos(ang) - 1.0 - lnm)
            im = g * (mag * np.sin(ang) - ang)
        else:
            re = g * (qr - 1.0 - lnm)
            im = g * (qi - ang)
    ok = (g > 1e-8) & np.isfinite(re) & np.isfinite(im)
    out = np.empty(jf.shape, np.result_type(jf.dtype, np.complex64))  # (single transforms: single precision)
    out.real = np.where(ok, re, 0.0)
    out.imag = np.where(ok, im, 0.0)
    return out


def plural_kernel(counts, axis: EnergyAxis, centre_ev, threshold_ev, scale_ev: float, span_ev: float,
                  total=None, fwhm_ev: float = TAIL_FWHM_EV, noise_gain: float = 0.0):
    """What plural scattering does to a core-loss window of channel spacing ``scale_ev`` that starts
    inside the low-loss range, per row: (unscattered, tail).

    With J = Z exp(S / I_0) (Poisson; Z the zero-loss peak of area I_0, S the single-scattering
    distribution of everything, plasmons and shallow edges alike; Egerton 2011, Sec. 4.2) a window
    above the ZLP records I_0 [S + M] / I_t per incident electron, M = exp(S/I_0) - 1 - S/I_0 the
    multiple scattering.  So the fit takes the single-scattering references times
    ``unscattered`` = I_0 / I_t = exp(-t/lambda), (rows, 1), plus the row's ``tail`` = I_0 M
    (counts of the low-loss window, (rows, lags) on lags m dE from the row's ZLP) times one exposure
    ratio.  M comes from the row's low loss by the Fourier log, ln(J / Z) = S / I_0 (Egerton 2011,
    Eq. 4.10), reconvolved with a Gaussian of ``fwhm_ev`` (1 eV by default).  The single part S, which the short low-loss exposure
    measures poorly, cancels exactly; its shot noise still reaches M at first order (dM ~ dS (*) S / I_0,
    smoothed by the plasmon's width), which :func:`apply_low_loss` carries into the errors by replicas.

    ``total`` (rows,): I_t, every electron of the row, as the Fourier ratio of the windows above normalises
    (:func:`.deconvolve.extended_low_loss`: the whole low-loss window and its power-law extension); None:
    the counts up to ``span_ev`` + 10 eV, which miss the plasmon and inner-shell tails beyond (1.2 % of
    the electrons at t/lambda 0.54, measured: the Li-K amplitude read that much low against Ti-L2,3).
    """
    return plural_unscattered(*plural_tails(counts, axis, centre_ev, threshold_ev, scale_ev, span_ev, fwhm_ev,
                                            noise_gain), total)


def plural_tails(counts, axis: EnergyAxis, centre_ev, threshold_ev, scale_ev: float, span_ev: float,
                 fwhm_ev: float = TAIL_FWHM_EV, noise_gain: float = 0.0, dtype=float, per_i0=False):
    """:func:`plural_kernel`'s per-row part: (tail, I_t to the taper's end, I_0), each row from its own counts.
    ``noise_gain``: the counts' variance per count (the detector gain), for the Fourier log's noise guard (0: none)
    (:func:`_log_ratio_excess`).  ``dtype``: of the transforms and the logarithm (np.float32 for the noise
    replicas of :func:`apply_low_loss`, whose tails only give the spread about the row's own; returned as float64).
    ``per_i0``: the tail per unit I_0 (M) in ``dtype`` (:func:`scaled_tails` gives ``tail`` from it, the same numbers)."""
    from ..forward.lowloss import zlp_tf

    ll, ax = _resample(np.asarray(counts, dtype=float), axis, scale_ev)
    e = ax.energy_ev
    thr = np.asarray(threshold_ev, dtype=float)
    # J up to span + 10 eV above the ZLP (the tail at loss L needs J below L only), a 10 eV cosine taper
    # at the end (an abrupt end would ring through the logarithm)
    end = np.minimum(e[-1], np.asarray(centre_ev, dtype=float) + span_ev + 10.0)  # per row
    keep = int(np.searchsorted(e, end.max(), side="right"))  # e ascends: a prefix, taken as a view
    ll, e = ll[:, :keep], e[:keep]
    # the ratio J / Z is independent of where the ZLP sits: its inverse transform starts at loss 0
    n = sfft.next_fast_len(2 * e.size, real=True)
    f = sfft.rfftfreq(n, d=scale_ev)
    g = zlp_tf(f, fwhm_ev)[None, :].astype(dtype)
    m = int(np.ceil(span_ev / scale_ev)) + 1
    rows = ll.shape[0]
    tail, it, i0 = np.empty((rows, min(m, n)), dtype if per_i0 else float), np.empty(rows), np.empty(rows)
    fw = fft_workers()
    for b0 in range(0, rows, ROW_BATCH):  # every row on its own: batches bound the temporaries
        sl = slice(b0, min(b0 + ROW_BATCH, rows))
        # the taper is 1 (exactly) up to 10 eV below the earliest row's end: only the channels after that
        c0 = int(np.searchsorted(e, end[sl].min() - 10.0))
        # J and Z written zero-padded to the transform's length (the transforms then copy nothing)
        jp, zp = np.zeros((sl.stop - sl.start, n), dtype), np.zeros((sl.stop - sl.start, n), dtype)
        j, z = jp[:, :e.size], zp[:, :e.size]
        j[...] = ll[sl]
        t = np.clip((end[sl, None] - e[None, c0:]) / 10.0, 0.0, 1.0)
        j[:, c0:] *= 0.5 - 0.5 * np.cos(np.pi * t)
        np.copyto(z, j, where=e[None, :] <= thr[sl, None])
        it[sl] = j.sum(1)
        i0[sl] = z.sum(1)
        mult = _log_ratio_excess(sfft.rfft(jp, axis=1, workers=fw), sfft.rfft(zp, axis=1, workers=fw), g,
                                 (noise_gain * it[sl, None]).astype(dtype))
        mult = sfft.irfft(mult, n=n, axis=1, workers=fw)[:, :m]
        if per_i0:
            tail[sl] = mult
        else:
            np.multiply(mult, i0[sl, None], out=tail[sl])
    return tail, it, i0


def scaled_tails(per_i0, i0, out=None):
    """:func:`plural_tails`' tails from its ``per_i0`` ones: times each row's I_0, in float64 (the numbers
    ``per_i0=False`` gives); ``out``: a float64 array to write them into."""
    return np.multiply(per_i0, np.asarray(i0, float)[:, None], out=out, dtype=float)


def plural_unscattered(tail, it, i0, total=None):
    """:func:`plural_kernel`'s (unscattered, tail) from :func:`plural_tails`' parts: ``tail`` itself with its rows
    that are not finite, or whose unscattered fraction is not, set to 0 (in place: the callers' tails are their own)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        unscattered = (i0 / (it if total is None else np.asarray(total, float)))[:, None]
    bad = ~(np.all(np.isfinite(tail), axis=1) & np.isfinite(unscattered[:, 0]))
    tail[bad] = 0.0
    unscattered[bad] = 1.0
    return unscattered, tail


def _row_key(row) -> int:
    """A 64-bit key of a row's values (its replicas' seed, whichever block it is fitted in)."""
    import hashlib
    return int.from_bytes(hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=8).digest(), "little")


def _replicas(counts, coarse, sd):
    """The rows' noise replicas coarse + z sd, (TAIL_REPLICAS, rows, lags): each row's standard normals z drawn from
    its own generator (seeded by TAIL_SEED and the row's counts, :func:`_row_key`).  The draws of
    :data:`REPLICA_ROWS` rows at a time are written into one small buffer, then scaled and shifted into the
    replicas' array together: the same numbers as stacking each row's draws and computing ``coarse + z * sd``
    (tests/inference/test_lowloss.py), without per-row arrays or temporaries of the replicas' size (the first
    touch of fresh memory was most of this step's CPU time)."""
    rows, lags = coarse.shape
    reps = np.empty((TAIL_REPLICAS, rows, lags))
    z = np.empty((min(REPLICA_ROWS, rows), TAIL_REPLICAS, lags))
    for b0 in range(0, rows, REPLICA_ROWS):
        b1 = min(b0 + REPLICA_ROWS, rows)
        for i in range(b0, b1):  # (a generator per row: the loop is over the draws' seeds)
            np.random.default_rng([TAIL_SEED, _row_key(counts[i])]).standard_normal((TAIL_REPLICAS, lags), out=z[i - b0])
        out = reps[:, b0:b1]
        np.multiply(z[:b1 - b0].transpose(1, 0, 2), sd[None, b0:b1], out=out)
        out += coarse[None, b0:b1]
    return reps


#: rows whose replicas' draws are scaled together (:func:`_replicas`; the buffer, 64 x 8 replicas x ~300 lags, in cache)
REPLICA_ROWS = 64


def denoise_rows(a, k: int = TAIL_COMPONENTS):
    """Rows (rows, n) projected on the ``k`` leading principal components of the image's rows about their mean
    (mean and covariance over n from a sample of the image's rows, :func:`.deconvolve.sampled_moments`, so an image
    fitted in blocks gets the whole image's, :class:`.deconvolve.ImageStats`; every row of an image of up to
    COVARIANCE_ROWS rows): the multiple-scattering tails vary across an image in level and slowly in shape, while the
    low loss's shot noise in them is independent from row to row."""
    from .deconvolve import averages_given, collecting, per_image, sampled_moments

    if collecting():  # the image's sample is taken; the projection is not used
        sampled_moments(a)
        return a
    mu, cov = sampled_moments(a)
    comps = lambda: _leading_components(cov, k)  # noqa: E731
    # the image's averages given: a Dask worker's blocks share them (9 eigen decompositions a block, 2.7 ms each on
    # a 283-lag tail, computed once per worker)
    v = per_image(_COMPONENTS, (cov, mu), k, comps) if averages_given() else comps()
    # row by row (stacked products): a 2-D BLAS product's rows depend on how many rows it is given
    return mu + ((a - mu)[:, None, :] @ v @ v.T)[:, 0]


_COMPONENTS: dict = {}


def _leading_components(cov, k: int) -> np.ndarray:
    """The leading principal components (n, j <= k) of a covariance."""
    from scipy.linalg import eigh

    n = cov.shape[0]
    # the k + 1 largest eigenpairs only (LAPACK's evr: ~2x faster than all of them)
    val, vec = eigh(cov, subset_by_index=[max(n - k - 1, 0), n - 1], driver="evr")
    # cut at a clear gap (eigenvalue ratio >= TAIL_GAP): a subspace that rounding cannot rotate (the covariance
    # is the same bits in blocks and whole: deconvolve.sampled_moments)
    gaps = val[-k - 1:][1:] / np.maximum(val[-k - 1:][:-1], 1e-300)   # ascending: (k+1)/k ... top/next
    ok = np.flatnonzero(gaps[::-1] >= TAIL_GAP)                          # gaps[::-1][j]: top j+1 vs the next
    return vec[:, -(int(ok[-1]) + 1 if ok.size else 1):]


def _exposure(w):
    """Exposure (s) of a window from sreels or HyperSpy metadata, None when the file does not say."""
    md = w.metadata if isinstance(w.metadata, dict) else {}
    v = (md.get("sreels") or {}).get("exposure_s")
    if v is None:
        v = (((md.get("Acquisition_instrument") or {}).get("TEM") or {}).get("Detector") or {}).get(
            "EELS", {}).get("exposure")
    return float(v) if v else None


def _exposure_ratio(w, ll):
    """Core-loss over low-loss exposure (the splice's scale), None when either is unknown."""
    a, b = _exposure(w), _exposure(ll)
    return a / b if a and b else None


def saturation_level(w):
    """The stored value of a saturated pixel, from sreels metadata (ADC maximum less the dark
    offset when it was subtracted); None when the file does not say."""
    md = w.metadata if isinstance(w.metadata, dict) else {}
    det = (md.get("sreels") or {}).get("detector") or {}
    if "adc_max_counts" not in det:
        return None
    return det["adc_max_counts"] - (det.get("dark_offset_counts", 0.0) if det.get("dark_subtracted", True) else 0.0)


def noise_counts_of(w, s, counts=None) -> np.ndarray:
    """The histogram whose median is the noise scale of a window whose gain is unknown
    (:func:`.okpeaks.noise_ratio_counts`): its counts (or ``counts``) against the variance model of gain 1 and
    its readout noise."""
    c = np.asarray(w.counts if counts is None else counts, float)
    return noise_ratio_counts(c, variance_model(c, 1.0, readout_noise(w, s)))


def readout_noise(w, s) -> float:
    """The readout noise (counts rms) of one pixel of a window's rows: one read's (the setting, else the
    file's, else 0) times sqrt(``w.rows_summed``), since a row summed from N recorded rows (``--bin N``) was
    read N times independently (its readout variance N r^2; the gain, counts per electron, is a sum's too)."""
    rd = s.readout_noise_counts if s.readout_noise_counts is not None else (w.readout_noise_counts or 0.0)
    return float(rd) * float(np.sqrt(w.rows_summed))


def saturated_pixels(w, s):
    """(rows, channels) bool: the pixels at or above the saturation level (the setting, else
    :func:`saturation_level`), None when neither gives one.  For summed rows (``--bin``) the mask made
    before the sum (``w.saturated``): a sum of N unsaturated reads may exceed one read's level, and a
    sum holding one saturated read may not reach it."""
    if w.saturated is not None:
        return w.saturated
    sat = s.saturation_counts if s.saturation_counts is not None else saturation_level(w)
    return None if sat is None else np.asarray(w.counts) >= sat


def _detector(w, s):
    """Gain, readout noise and PSF decay of a window: the settings first, then the file's metadata."""
    md = w.metadata if isinstance(w.metadata, dict) else {}
    det = md.get("sreels", {}).get("detector", {}) if isinstance(md.get("sreels", {}), dict) else {}
    g = s.gain_counts_per_e or w.gain_counts_per_e or 1.0
    rd = readout_noise(w, s)
    decay = s.psf_decay if s.psf_decay is not None else det.get("psf_decay", 0.0)
    return float(g), float(rd), float(decay or 0.0)


#: a low-loss window removes plural scattering only if it reaches this many plasmon energies: the
#: n-fold plasmons sit at ~n E_p with Poisson weights, so a window to 3 E_p holds all but the n >= 3
#: terms, 1 - e^-t (1 + t + t^2/2) of the counts at t = t/lambda: 1.4 % at 0.5, 8 % at 1
PLURAL_COVER = 3.0
#: the plasmon energy taken is at least this (eV): oxides' bulk plasmons lie near 20-30 eV (measured on
#: the pairs in ../shared/data: lisp 22.5, LSMO 30-31; the study's LASGTP ~24 eV by the free-electron
#: formula, :mod:`sreels.forward.lowloss`); a lower maximum above the ZLP is an interband transition
#: (TiO2: 14.6 eV, with its plasmon near 25 eV)
PLASMON_MIN_EV = 20.0


#: the clipped top of a ZLP is rebuilt from its unclipped channels at or above this fraction of the clip level
#: (the Gaussian core, where ln counts is a parabola in energy), up to ZLP_CORE_CHANNELS either side
ZLP_CORE_FRACTION = 0.2
ZLP_CORE_CHANNELS = 12


def clipped_zlp(counts, level=None) -> np.ndarray:
    """Rows (bool) whose ZLP is clipped: a channel at or above ``level`` (the stored value of a saturated
    pixel, when the file gives it), or else three or more channels equal to the row's maximum (a flat top;
    three equal counts at a ~1e4-count peak by chance: ~1e-4)."""
    y = np.asarray(counts, dtype=float)
    if level is not None:
        return np.any(y >= level, axis=1)
    return np.sum(y == y.max(axis=1, keepdims=True), axis=1) >= 3


def repair_clipped_zlp(counts, clipped) -> np.ndarray:
    """The rows' counts with the clipped top of their ZLP rebuilt: per row, a parabola in ln(counts) fitted
    (weights = counts, the Poisson weights of a log) to the unclipped channels of the core
    (>= :data:`ZLP_CORE_FRACTION` of the clip, within :data:`ZLP_CORE_CHANNELS` of the peak) replaces the clipped
    channels where it lies above the clip.  A saturated ZLP otherwise loses its top: at 4x the default
    low-loss exposure (ZLP 52 000 e, 905 pixels at the ADC's maximum) I_0 read low, and c_Li max -1.8 sigma,
    Ti3+ -0.21 sigma on every row (3 seeds).  Rows not clipped are returned as they are."""
    y = np.array(counts, dtype=float)
    rows = np.flatnonzero(clipped)
    if rows.size == 0:
        return y
    sub = y[rows]
    top = sub.max(axis=1, keepdims=True)
    flat = sub >= top                                      # the clipped channels (at the row's clip value)
    imax = np.argmax(sub, axis=1)
    k = np.arange(-ZLP_CORE_CHANNELS, ZLP_CORE_CHANNELS + 1)
    idx = np.clip(imax[:, None] + k[None, :], 0, sub.shape[1] - 1)
    v = np.take_along_axis(sub, idx, 1)
    use = (v >= ZLP_CORE_FRACTION * top) & ~np.take_along_axis(flat, idx, 1)
    x = k.astype(float)
    w = np.where(use, v, 0.0)
    ln = np.log(np.maximum(v, 1.0))
    A = np.stack([np.ones_like(x), x, x * x], -1)                      # (n, 3), one design for every row
    ata = np.einsum("rn,ni,nj->rij", w, A, A)
    atb = np.einsum("rn,ni,rn->ri", w, A, ln)
    ok = use.sum(1) >= 4
    coef = np.zeros((rows.size, 3))
    coef[ok] = np.linalg.solve(ata[ok], atb[ok][..., None])[..., 0]
    ok &= coef[:, 2] < 0                                   # a peak, not a valley
    model = np.exp(np.einsum("rk,nk->rn", coef, A))  # (a row's own numbers whatever the rows: not a 2-D BLAS product)
    fill = np.take_along_axis(flat, idx, 1) & ok[:, None]
    rebuilt = np.where(fill, np.maximum(model, v), v)
    np.put_along_axis(sub, idx, rebuilt, 1)
    y[rows] = sub
    return y


def plural_coverage(counts, axis: EnergyAxis, threshold_idx) -> str:
    """Why a low-loss window is too short to remove plural scattering ("" if it is not): it must reach
    PLURAL_COVER x E_p, E_p the image-mean spectrum's maximum above the elastic threshold (+ 2 eV) but
    at least :data:`PLASMON_MIN_EV`."""
    e = axis.energy_ev
    mean = _row_mean(np.asarray(counts, float))
    m = e > float(np.median(e[np.asarray(threshold_idx)])) + 2.0
    if m.sum() < 20:
        return f"it records only {m.sum()} channels above the ZLP"
    ep = max(float(e[m][np.argmax(mean[m])]), PLASMON_MIN_EV)
    if e[-1] < PLURAL_COVER * ep:
        return (f"it ends at {e[-1]:.0f} eV, below {PLURAL_COVER:.0f} x the plasmon energy taken, {ep:.1f} eV: "
                "the double and triple plasmons are cut")
    return ""


def widest_zlp_fwhm(fwhm) -> float:
    """The image-wide ZLP width the deconvolution reconvolves with when it exceeds the fit's
    resolution: the 95th percentile of the rows' FWHMs (a reduction over the whole image)."""
    return float(np.nanpercentile(np.asarray(fwhm, float), 95))


def low_loss_note(source, centre, fwhm, tl) -> str:
    """The low-loss window's summary note (medians over the image's rows)."""
    return (f"low-loss window {source}: energy scale referenced to the ZLP maximum (median "
            f"{np.nanmedian(centre):+.3f} eV on the stored axis, distortion {np.nanmax(centre) - np.nanmin(centre):.3f} "
            f"eV peak-to-peak); resolution {np.nanmedian(fwhm):.2f} eV FWHM; t/lambda {np.nanmedian(tl):.2f} (median)")


def collecting_image_stats() -> bool:
    """Whether image-wide averages are in use (:class:`.deconvolve.ImageStats`, a Dask block's pass)."""
    return _IMAGE.get() is not None


#: the energies (eV) a window holds when it records the Li-K edge
LI_K_EV = (50.0, 66.0)


def li_k_in_low_loss_only(windows: dict) -> bool:
    """Whether the low-loss window records the Li-K edge and no other window does: it is then that edge's
    measurement and its own plural source (:func:`apply_low_loss`)."""
    ll = windows.get(LOWLOSS_NAME)
    return ll is not None and ll.energy.contains(*LI_K_EV) and not any(
        w.energy.contains(*LI_K_EV) for k, w in windows.items() if k != LOWLOSS_NAME)


def apply_low_loss(windows: dict, settings, deconvolve: bool = True, wide_fwhm_ev: float | None = None,
                   plural: bool = True, threads: bool = False):
    """The fast path's low-loss step: read the low-loss window, deconvolve the others.

    Parameters
    ----------
    windows : dict of WindowData
        A measurement (already dark-subtracted and binned); the low-loss window is the one named
        :data:`~sreels.config.LOWLOSS_NAME` (the loader names a window by its ZLP).
    settings : FitSettings
        Resolution (``resolution_fwhm_ev``, the reconvolution's FWHM), gain, readout, PSF.
    deconvolve : bool
        Fourier-ratio deconvolution of the core-loss windows (else only the ZLP reference).
    wide_fwhm_ev : float, optional
        The whole image's :func:`widest_zlp_fwhm` when ``windows`` hold a block of its rows
        (:mod:`.daskfit`); None: from these rows.
    plural : bool
        The multiple scattering of the windows that start inside the low-loss range (False: they are
        returned as recorded, for a pass that needs only the deconvolved windows, :mod:`.daskfit`).
    threads : bool
        The core-loss windows in two threads (:func:`sreels.resources.run_concurrently`; not while
        image-wide averages are in use).  Same results.

    Returns
    -------
    windows : dict
        The core-loss windows, deconvolved and referenced to each row's ZLP (the low-loss window
        removed); ``variance_factor`` holds each row's noise inflation.
    columns : dict
        Per row: ``zlp_shift_ev`` (ZLP maximum on the stored axis), ``resolution_ev`` (ZLP FWHM),
        ``t_over_lambda`` and ``t_over_lambda_err``; empty without a low-loss window.
    notes : list of str
    """
    if LOWLOSS_NAME not in windows:
        return windows, {}, ["no low-loss window: energy scale not referenced to the ZLP, plural scattering "
                             "not removed (t/lambda unknown)"]
    ll = windows[LOWLOSS_NAME]
    counts = np.asarray(ll.counts, dtype=float)
    # summed rows (--bin): clipped where any row summed had a saturated ZLP channel (the mask made before the sum)
    clipped = ll.saturated.any(1) if ll.saturated is not None else clipped_zlp(counts, saturation_level(ll))
    if clipped.any():  # every step below reads the rebuilt ZLP
        counts = repair_clipped_zlp(counts, clipped)
    # a pedestal and the channels beyond the signal's end (image averages: not a held step)
    counts, floor = low_loss_floor(counts, ll.energy)
    recorded, ll = ll, dataclasses.replace(ll, counts=counts)
    g, rd, decay = _detector(ll, settings)
    centre, fwhm, thr, tl, tl_err = held_step("read_zlp", lambda: read_zlp(counts, ll.energy, g, rd), True)
    tl_err = np.hypot(tl_err, floor.t_over_lambda_syst)
    cols = {"zlp_shift_ev": centre, "resolution_ev": fwhm, "t_over_lambda": tl, "t_over_lambda_err": tl_err,
            "zlp_clipped": clipped.astype(int)}
    from .deconvolve import averages_given
    if averages_given():  # a block of a Dask fit: its rows' floor, for the image's note (daskfit._assemble)
        cols.update({FLOOR_COLUMNS[f.name]: getattr(floor, f.name) for f in dataclasses.fields(floor)})
    notes = [low_loss_note(ll.source, centre, fwhm, tl)] + [n for n in (low_loss_floor_note(ll.source, floor),) if n]
    if clipped.any():
        notes.append(f"the ZLP is clipped (saturated) in {int(clipped.sum())} of {clipped.size} rows of {ll.source}: its "
                     "top rebuilt from a parabola in ln(counts) through the unclipped core (zlp_clipped = 1); t/lambda, the "
                     "unscattered fraction and the deconvolution rest on it: record the low loss with a shorter exposure")
    out, forward = {}, []
    inst = settings.instrument()
    short = plural_coverage(counts, ll.energy, thr) if deconvolve else ""
    if short:
        deconvolve = False
        notes.append(f"the low-loss window is too short to remove plural scattering ({short}): the core-loss "
                     "windows are fitted as recorded, with the residual tests of a fit without a low loss; the "
                     "energy reference and resolution still come from the ZLP, and t/lambda is a lower bound")
    # reconvolve with the fit's resolution, or with the measured one where that is wider: sharpening
    # the ZLP would amplify the noise without bound (a 1.1 eV ZLP to 0.5 eV: x 1000 in variance, measured)
    res_ev = settings.resolution_fwhm_ev
    wide = widest_zlp_fwhm(fwhm) if wide_fwhm_ev is None else float(wide_fwhm_ev)  # the widest rows too
    if wide > res_ev * 1.3:  # (the camera's PSF alone widens a 0.5 eV ZLP to ~0.55 eV)
        res_ev = wide
        notes.append(f"the measured ZLP (up to {res_ev:.2f} eV FWHM) is wider than the fit's resolution "
                     f"({settings.resolution_fwhm_ev:.2f} eV): deconvolved windows reconvolved with {res_ev:.2f} eV "
                     "(give the resolution to the fit to match its references)")
    def one(k, w):
        """A core-loss window deconvolved, or its plural scattering from the low loss: (window, forward)."""
        with stats_scope(k):  # this window's image averages (a pass may leave it out)
            gw, rdw, dw = _detector(w, settings)
            if w.energy.offset_ev < MIN_DECONVOLVE_EV:  # the plural source below it: the low loss itself
                span = max(min(w.energy.end_ev, settings.li_fit_ev[1] + TAIL_MARGIN_EV), w.energy.offset_ev + 10.0)
                step = max(w.energy.scale_ev, TAIL_STEP_EV)
                # the tail's noise from the low loss's: parametric replicas (extra noise of the counts' own
                # variance), each through the same steps; each row's draws seeded by TAIL_SEED and its own
                # counts, so that a block of rows gets the draws the whole image would
                # (drawn on the tail's lag grid, where a lag sums step / dE channels: the same Gaussian law as
                # drawing per channel and summing, at a fifth of the cost)
                the = ll.energy.energy_ev[thr]

                def replica_tails():
                    coarse, cax = _resample(counts, ll.energy, step)
                    per = step / ll.energy.scale_ev
                    sd = np.sqrt(g * np.maximum(coarse, 0.0) + per * rd**2)
                    reps = _replicas(counts, coarse, sd)
                    # the rows' own tails in double precision, the replicas' (their spread about those) in single:
                    # the spread is ~1e-2 of a tail, single precision's rounding ~1e-6 of it (measured below); the
                    # replicas' held per unit I_0 as their transforms give them (4 bytes a lag, not 8: what a Dask fit
                    # holds from its first pass to the second), scaled where they are used (the same numbers)
                    fw = max(TAIL_FWHM_EV, res_ev)
                    own = plural_tails(coarse, cax, centre, the, step, span, fwhm_ev=fw, noise_gain=g)
                    replicas = plural_tails(reps.reshape(-1, coarse.shape[1]), cax, np.tile(centre, TAIL_REPLICAS),
                                            np.tile(the, TAIL_REPLICAS), step, span, fwhm_ev=fw, noise_gain=g,
                                            dtype=np.float32, per_i0=True)
                    return own, replicas

                def plural_window():
                    """The window's plural-scattering fields (WindowData's), from the image's averages."""
                    # the rows' own (no image average): a Dask fit holds them from its first pass over the block
                    own, (rep, rep_it, rep_i0) = held_step("plural_tails", replica_tails, while_collecting=True)
                    # the replicas' written after the rows' own (as concatenated), not copied there
                    rows = own[0].shape[0]
                    tails = np.empty((rows * (TAIL_REPLICAS + 1), own[0].shape[1]))
                    tails[:rows] = own[0]
                    scaled_tails(rep, rep_i0, out=tails[rows:])
                    # I_t as the Fourier ratio of the windows above has it (one scale for Li-K and Ti-L2,3); the
                    # replicas' unscattered fractions are not used
                    total, total_mean = low_loss_total(counts, ll.energy, w.energy.scale_ev)
                    unsc, tails = plural_unscattered(tails, np.concatenate((own[1], rep_it)),
                                                     np.concatenate((own[2], rep_i0)), np.tile(total, TAIL_REPLICAS + 1))
                    tails *= w.energy.scale_ev / step  # counts per channel of the window
                    n_rows = counts.shape[0]
                    zmean = float(_row_mean(centre[:, None])[0])  # the image's mean ZLP position
                    tail_mean = _row_mean(tails[:n_rows])[None, :]  # = the denoised rows' mean (the projection keeps it)
                    # each replica denoised on its own: the components are estimated from noisy rows too
                    tails = [denoise_rows(t) for t in tails.reshape(TAIL_REPLICAS + 1, counts.shape[0], -1)]
                    # the replicas' deviations from the rows' own, each difference in double precision then stored in
                    # single (as the stacked tails' difference, cast), without stacking the tails
                    dev = np.empty((TAIL_REPLICAS,) + tails[0].shape, np.float32)
                    for k in range(TAIL_REPLICAS):
                        dev[k] = tails[k + 1] - tails[0]
                    # (copies, not views: a view held between passes would keep every replica's tail)
                    return dict(unscattered=unsc[:n_rows, 0].copy(), plural_tail=tails[0].copy(),
                                plural_tail_mean=tail_mean,
                                # mean I_0 over mean I_t (low_loss_total's mean, block-safe)
                                unscattered_mean=float(_row_mean(unsc[:n_rows] * total[:, None])[0]) / total_mean,
                                plural_tail_dev=dev,
                                row_shift_ev=centre - zmean, zlp_mean_ev=zmean)

                # after the image's averages a Dask fit holds these (~40 bytes a lag and row) for its last pass
                # instead of the replicas' tails (72 bytes)
                return dataclasses.replace(w, **held_step("plural_window", plural_window),
                                           exposure_ratio=_exposure_ratio(w, ll), tail_step_ev=step), True
            # (in the transforms' precision, which holds its values exactly: a Dask fit holds it between passes)
            d, fac = held_step("fourier_ratio", lambda: fourier_ratio(w.counts, w.energy, counts, ll.energy, res_ev,
                                                                      inst.zlp_tail_ev, dw, g, rd, dtype=None))
            # gain unknown: the noise level is measured on the counts as recorded (second differences of the
            # deconvolved channels would see the reconvolution's smoothing: 1500x too low on a measured pair)
            k_raw = w.noise_scale  # (the fast path's: the whole image's, :func:`.fast.with_noise_scales`)
            if k_raw is None and not (settings.gain_counts_per_e or w.gain_counts_per_e):
                k_raw = noise_scale_of(noise_counts_of(w, settings))
            return dataclasses.replace(w, counts=np.asarray(d, dtype=float), variance_factor=fac, noise_scale=k_raw), False

    todo = []
    for k, w in windows.items():
        if k == LOWLOSS_NAME:
            continue
        if not deconvolve:
            out[k] = w
            continue
        if not plural and w.energy.offset_ev < MIN_DECONVOLVE_EV:
            out[k] = w  # as recorded (a pass that needs only the deconvolved windows)
            continue
        out[k] = None  # (the windows' order kept)
        todo.append((k, w))
    # the windows are independent: in two threads when no image-wide averages are shared (a Dask block's are)
    for (k, _), (nw, fw) in zip(todo, run_concurrently(one, todo, threads and not collecting_image_stats())):
        out[k] = nw
        if fw:
            forward.append(k)
    if forward:
        notes.append(f"window(s) {', '.join(forward)} start below {MIN_DECONVOLVE_EV:.0f} eV, where the plural "
                     "source is the plasmon region itself: not deconvolved; the fit takes its references times the "
                     "row's unscattered fraction plus the row's multiple scattering from its low loss (Fourier log; "
                     f"its noise in the errors by {TAIL_REPLICAS} replicas)")
    if deconvolve and len(out) > len(forward):
        notes.append("core-loss windows Fourier-ratio deconvolved by each row's low loss (Egerton 2011, Sec. 4.3), "
                     f"reconvolved with a {res_ev:.2f} eV ZLP; channel variances x "
                     "exp(~2 t/lambda)")
    # a low-loss window that records the Li-K edge (DualEELS with a long low-loss range) measures it
    # where no other window does; alone, it is the measurement
    if not out or li_k_in_low_loss_only(windows):
        # (as recorded less its pedestal: the continuation beyond the signal's end is no measurement)
        own = dataclasses.replace(recorded, counts=np.asarray(recorded.counts, float)
                                  - floor.pedestal[:, None]) if floor.pedestal.any() else recorded
        if not (settings.gain_counts_per_e or own.gain_counts_per_e):
            # gain unknown: the noise level of the counts fitted (less the pedestal, which holds no shot noise), the
            # whole image's (the histogram of its ratios, an image average: a Dask block gets the image's)
            hist = row_sum_mean(lambda: noise_counts_of(own, settings), own.counts.shape[0])
            own = dataclasses.replace(own, noise_scale=noise_scale_of(hist))
        if deconvolve and plural and ll.energy.contains(*LI_K_EV):
            # its Li-K edge's plural scattering from the same spectrum: the multiple scattering by the Fourier log
            # of the row's own low loss (the multiple plasmons, the edge's plasmon replica), the single
            # scattering times its unscattered fraction, as for a Li-K window beside a low loss; one recording
            own, _ = one(LOWLOSS_NAME, own)
            own = dataclasses.replace(own, exposure_ratio=1.0)
            notes.append(f"{ll.source}: the Li-K edge in the low-loss window is fitted with the plural scattering "
                         "taken from the same spectrum (its Fourier log: multiple plasmons and the edge's plasmon "
                         f"replica; the tail's noise in the errors by {TAIL_REPLICAS} replicas)")
        out[LOWLOSS_NAME] = own
    return out, cols, notes

