"""The O-K measurement shared by ``sreels fit`` and ``sreels calibrate``: threshold, peak "b"
(and peak "a") of every row at once, on the data's own energy axis.

One definition, used everywhere (energies in eV on the window's axis, which may be offset):

1. **Coarse onset** of the image: on the mean spectrum, the first local maximum of the
   derivative of the 1 eV-smoothed signal within ``onset_search_ev`` that reaches a fifth of
   the largest derivative there (so that pre-peaks belong to the edge).
2. **Background** per row: power law A E^-r, weighted least squares over
   [onset - 20, onset - 2] eV (shrunk to the data), subtracted (:mod:`.background`).
3. **Threshold** E_th per row: the inflection of the leading edge, i.e. the first local
   maximum of the derivative within [onset - 3, onset + 4] eV that reaches half of the
   largest there, of the signal smoothed to an effective resolution of
   ``EFFECTIVE_FWHM_EV`` (the data's resolution is taken into account, so E_th does not
   move with the instrument's resolution); refined to a fraction of a channel by a
   parabola.  Its error is propagated from the per-channel variances through the
   derivative filters (delta E_th = -delta d'(E_th) / d''(E_th)).
4. **Peak "b"**, the multiple-scattering resonance (Kurata et al., PRB 47 (1993) 13763):
   the largest local maximum of the 2 eV-smoothed signal in [E_th + 18, E_th + 45] eV
   (R = 0.25-0.40 nm at C ~ 2.8 eV nm^2), cut 3 eV below the onset of any other edge
   found in that range (:data:`OTHER_EDGES`), then the centre of a Gaussian on a straight
   line fitted over +-``half_width_b_ev`` around it (batched Levenberg-Marquardt).
   Peak "a": the same in [E_th + 5, E_th + 15] eV with +-3 eV (and, where a model of the
   O-K continuum is given, that continuum in the baseline).
5. **Errors** come from the variances; wherever the local model does not describe a row
   (reduced chi^2 > 1) they are scaled by sqrt(chi^2_red) and the row is flagged when the
   excess is significant.

dE_b = E_b - E_th is independent of the axis' offset: it is what converts to R_OO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import NamedTuple

import numpy as np
from scipy.ndimage import convolve1d, gaussian_filter1d

from ..axes import EnergyAxis
from ..errors import SreelsInputError
from .background import fit_power_law
from .batchfit import levenberg_marquardt

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Effective resolution (FWHM, eV) at which the threshold's inflection is read: data of
#: better resolution are smoothed to it, so that E_th does not depend on the instrument.
EFFECTIVE_FWHM_EV = 1.5
#: ... and at least this much smoothing (FWHM, eV) where the data's resolution is close to or worse than
#: EFFECTIVE_FWHM_EV: the derivative of unsmoothed 0.1 eV channels has no significance (at 1.5 eV resolution
#: every row of a noise-free image was o_threshold_low_snr and no R_OO was given).  Measured on the default
#: interface, noise-free, at 1.5 / 2.0 / 2.5 / 3.0 eV resolution: with 1 eV every row keeps its threshold,
#: per-row dE_b errors 111 / 152 / 248 / 434 meV (0.5 eV: 296 / 587 meV, 311 / 257 / 0 rows usable)
MIN_SMOOTH_FWHM_EV = 1.0
#: Where the data are smoothed beyond EFFECTIVE_FWHM_EV (a resolution above ~1.1 eV), the leading edge's
#: inflection moves down: dE_b read +100 / +221 / +307 / +324 meV high at an effective FWHM of 1.80 / 2.24 /
#: 2.69 / 3.16 eV (the rows above; electrode and parent within 10 meV of each other), i.e. up to 0.33 eV per
#: eV of effective FWHM above 1.5 eV: a systematic of dE_b common to the rows, taken as 0.35 eV per eV
#: (:func:`resolution_systematic_ev`).  On measured data C's calibration spectra carry their own.
THRESHOLD_SHIFT_PER_EV = 0.35


def threshold_smoothing_fwhm(resolution_fwhm_ev: float) -> float:
    """The Gaussian smoothing (FWHM, eV) of the threshold's derivative at a data resolution (eV)."""
    res = max(float(resolution_fwhm_ev), 0.0)
    return float(np.sqrt(max(EFFECTIVE_FWHM_EV**2 - res**2, MIN_SMOOTH_FWHM_EV**2)))


#: The threshold read on channels coarser than 0.1 eV moves down: dE_b +18 / +30 / +41 / +87 meV at 0.2 / 0.25 /
#: 0.3 / 0.5 eV per channel against +7 at 0.1 (noise-free, default interface; the derivative's Gaussian spans
#: few channels there): a systematic of 0.2 eV per eV of channel width above 0.1 eV, common to the rows.
CHANNEL_SHIFT_PER_EV = 0.2


def effective_fwhm(resolution_fwhm_ev: float) -> float:
    """The resolution (FWHM, eV) at which the threshold is read: the data's and the smoothing's in quadrature."""
    return float(np.hypot(max(float(resolution_fwhm_ev), 0.0), threshold_smoothing_fwhm(resolution_fwhm_ev)))


def resolution_systematic_ev(resolution_fwhm_ev: float, channel_ev: float = 0.1) -> float:
    """Systematic of dE_b (eV, common to the rows) from reading the threshold at an effective resolution
    above EFFECTIVE_FWHM_EV (:data:`THRESHOLD_SHIFT_PER_EV`; 0 at resolutions up to ~1.1 eV) and on channels
    wider than 0.1 eV (:data:`CHANNEL_SHIFT_PER_EV`), in quadrature."""
    return float(np.hypot(THRESHOLD_SHIFT_PER_EV * max(effective_fwhm(resolution_fwhm_ev) - EFFECTIVE_FWHM_EV, 0.0),
                          CHANNEL_SHIFT_PER_EV * max(float(channel_ev) - 0.1, 0.0)))
#: Edge onsets (eV) that fall in or near the O-K window, from exspy's element database
#: (``exspy._misc.elements``, binding energies after the EELS Atlas, Ahn & Krivanek 1983).
#: Edges above the O-K onset cut the peak-"b" search; those below it sit under the pre-edge.
OTHER_EDGES = (
    ("Sc-L3", 402.0), ("Ti-L3", 456.0), ("Sn-M5", 485.0), ("V-L3", 513.0), ("Sb-M5", 528.0),
    ("Te-M5", 572.0), ("Cr-L3", 575.0), ("I-M5", 620.0), ("Mn-L3", 640.0), ("F-K", 685.0),
    ("Fe-L3", 708.0), ("Cs-M5", 726.0), ("Co-L3", 779.0), ("Ba-M5", 781.0), ("La-M5", 832.0),
    ("Ni-L3", 855.0), ("Ce-M5", 883.0),
)
#: Elements of :data:`OTHER_EDGES` seldom met in oxide electrodes and electrolytes: where one of
#: their edges and a common one explain the same rise, the common one is named.
RARE_IN_OXIDES = {"Te", "Sb", "I", "Cs", "Sn"}
#: Smallest signal-to-noise ratio of a row's threshold (the derivative's peak over its noise) at
#: which it is taken as measured: below it the threshold pulls of simulated images grow tails
#: (sd 1.0-1.15 at 5-12, 1.4 below 5; 1/30 and 1/100 of the default dose); peak "a" (its
#: amplitude over its error) likewise (pull sd 2.2 at 1/20 dose with readout noise without it).
MIN_SNR = {"threshold": 5.0, "peak_a": 5.0}
#: Nominal O-K onset (eV) on a calibrated axis; other edges are placed relative to it.
O_K_ONSET_EV = 529.0


@dataclass(frozen=True)
class OKRows:
    """Per-row O-K measurement (energies on the window's own axis, eV).

    ``flags`` maps a status tag (``no_o``, ``o_poor_fit``, ``o_b_at_bound``, ``o_b_no_peak``)
    to a boolean row mask.  ``other_edges`` names the edges found in the image that cut the
    peak-"b" search (``cut_ev`` is where).  ``noise_scale`` is the factor applied to the
    given variances (1 when the detector gain is known)."""

    onset_coarse_ev: float
    threshold_ev: np.ndarray
    threshold_err_ev: np.ndarray
    peak_b_ev: np.ndarray
    peak_b_err_ev: np.ndarray
    peak_b_fwhm_ev: np.ndarray
    b_chi2_red: np.ndarray
    peak_a_ev: np.ndarray
    peak_a_err_ev: np.ndarray
    jump_snr: np.ndarray
    background_r: np.ndarray
    cut_ev: float
    other_edges: tuple
    noise_scale: float
    flags: dict = field(default_factory=dict)
    fit: object = None   # an edgefits.EdgeFit view of the measurement, for figures

    @property
    def delta_e_b_ev(self) -> np.ndarray:
        return self.peak_b_ev - self.threshold_ev

    @property
    def delta_e_b_err_ev(self) -> np.ndarray:
        return np.hypot(self.peak_b_err_ev, self.threshold_err_ev)


def _sigma_ch(sigma_ev, de):
    return max(sigma_ev / de, 0.3)


def coarse_onset(e, mean, de, search_ev=(515.0, 545.0), where="spectrum"):
    """Coarse O-K onset (eV) of a mean spectrum (step 1 of the module docstring)."""
    m = (e >= search_ev[0]) & (e <= search_ev[1])
    if m.sum() < 8:
        raise SreelsInputError(
            f"{where}: no O-K edge in range: the spectrum covers {e[0]:.1f}-{e[-1]:.1f} eV, "
            f"the O-K onset is searched in {search_ev[0]:.0f}-{search_ev[1]:.0f} eV")
    d = gaussian_filter1d(np.asarray(mean, float), _sigma_ch(1.0, de), order=1, mode="nearest")[m]
    if not np.isfinite(d).all() or d.max() <= 0:
        raise SreelsInputError(f"{where}: no rising O-K edge found in {search_ev[0]:.0f}-{search_ev[1]:.0f} eV")
    loc = np.flatnonzero((d[1:-1] >= 0.2 * d.max()) & (d[1:-1] >= d[:-2]) & (d[1:-1] >= d[2:])) + 1
    return float(e[m][loc[0] if loc.size else int(np.argmax(d))])


def _filter_on(x, ok, reach, fn):
    """``fn(x)``, a filter along the last axis whose kernel reaches ``reach`` channels either side
    (``mode="nearest"``), on the channels where any row of ``ok`` holds and one channel either side,
    computed on those channels widened by the reach only: there the values are those of the filter over
    the whole rows (every tap inside the slice, or the slice ends where the rows do); 0 elsewhere."""
    n = x.shape[-1]
    cols = np.flatnonzero(np.asarray(ok).reshape(-1, n).any(0))
    if cols.size == 0:
        return np.zeros(x.shape)
    a, b = max(cols[0] - 1, 0), min(cols[-1] + 2, n)
    wa, wb = max(a - reach, 0), min(b + reach, n)
    out = np.zeros(x.shape)
    out[..., a:b] = fn(x[..., wa:wb])[..., a - wa:b - wa]
    return out


def _gauss_reach(sigma_ch):
    """How far scipy's gaussian_filter1d reaches (channels; its default truncation at 4 sigma)."""
    return int(4.0 * float(sigma_ch) + 0.5)


def _first_peak(v, ok):
    """Per row, the index of the first local maximum of ``v`` (rows, n) where ``ok`` holds
    and v reaches half of the row's maximum over ``ok``; argmax where there is none."""
    vm = np.where(ok, v, -np.inf)
    top = vm.max(1, keepdims=True)
    loc = np.zeros_like(ok)
    loc[:, 1:-1] = (vm[:, 1:-1] >= vm[:, :-2]) & (vm[:, 1:-1] >= vm[:, 2:]) & ok[:, 1:-1]
    cand = loc & (vm >= 0.5 * top)
    return np.where(cand.any(1), np.argmax(cand, 1), np.argmax(vm, 1))


def _largest_peak(v, ok):
    """Per row, the index of the largest interior local maximum of ``v`` over ``ok`` (argmax
    where there is none) and whether one exists.  Read on the columns where any row of ``ok`` holds and one either
    side only (a peak search over ~300 or ~40 of ~1700 channels): the same indices as over the whole rows
    (:func:`_largest_peak_rows`, tests/inference/test_okpeaks.py)."""
    ok = np.broadcast_to(ok, np.shape(v))
    cols = np.flatnonzero(ok.any(0))
    if cols.size == 0:
        return _largest_peak_rows(v, ok)
    a, b = max(cols[0] - 1, 0), min(cols[-1] + 2, ok.shape[1])
    i, has = _largest_peak_rows(v[:, a:b], ok[:, a:b])
    vm = np.where(ok[:, a:b], v[:, a:b], -np.inf)
    # where a row's values over the columns are all -inf (no ok column: argmax 0 of the whole row), its index is 0
    return np.where((vm > -np.inf).any(1) | np.isnan(vm).any(1), i + a, 0), has


def _largest_peak_rows(v, ok):
    """:func:`_largest_peak` over the whole rows."""
    vm = np.where(ok, v, -np.inf)
    loc = np.zeros_like(ok)
    loc[:, 1:-1] = (vm[:, 1:-1] >= vm[:, :-2]) & (vm[:, 1:-1] > vm[:, 2:]) & ok[:, 1:-1] & ok[:, :-2] & ok[:, 2:]
    has = loc.any(1)
    return np.where(has, np.argmax(np.where(loc, vm, -np.inf), 1), np.argmax(vm, 1)), has


def _gauss_kernel(sigma_ch, order):
    r = int(np.ceil(4 * sigma_ch)) + 1
    x = np.arange(-r, r + 1, dtype=float)
    g = np.exp(-0.5 * (x / sigma_ch) ** 2)
    g /= g.sum()
    if order == 1:
        return -x / sigma_ch**2 * g
    if order == 2:
        return (x**2 / sigma_ch**4 - 1 / sigma_ch**2) * g
    return g


def threshold_rows(e, s, var, onset, de, resolution_fwhm_ev, around_ev=None):
    """Threshold E_th per row, its error and the significance of the derivative's peak (step 3 of
    the module docstring).  ``around_ev``: search only within +-2 eV of this (the image's own
    threshold), where rows differ by SR distortion and chemical shifts, so that noise far from
    the edge cannot be taken for it."""
    sig = _sigma_ch(threshold_smoothing_fwhm(resolution_fwhm_ev) * FWHM_TO_SIGMA, de)
    lo, hi = (onset - 3.0, onset + 4.0) if around_ev is None else (around_ev - 2.0, around_ev + 2.0)
    win = np.broadcast_to((e >= lo) & (e <= hi), s.shape)
    # the derivative and its noise are read within the window only (and one channel either side)
    d1 = _filter_on(s, win, _gauss_reach(sig), lambda x: gaussian_filter1d(x, sig, axis=-1, order=1, mode="nearest"))
    i = np.clip(_first_peak(d1, win) if around_ev is None else np.argmax(np.where(win, d1, -np.inf), 1),
                1, e.size - 2)
    r = np.arange(s.shape[0])
    ym, y0, yp = d1[r, i - 1], d1[r, i], d1[r, i + 1]
    curv = ym - 2 * y0 + yp                      # d'' * de^2 (per channel^2)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(curv < 0, np.clip(0.5 * (ym - yp) / curv, -0.5, 0.5), 0.0)
        # noise of d' at the peak: the second-derivative filter applied to the variances
        k2, k1 = _gauss_kernel(sig, 2)[::-1] ** 2, _gauss_kernel(sig, 1)[::-1] ** 2
        v_d2 = _filter_on(var, win, k2.size, lambda x: convolve1d(x, k2, axis=-1, mode="nearest"))[r, i]
        err = np.sqrt(v_d2) / np.abs(curv) * de
        v_d1 = _filter_on(var, win, k1.size, lambda x: convolve1d(x, k1, axis=-1, mode="nearest"))[r, i]
        snr = y0 / np.sqrt(v_d1)
    err = np.where(curv < 0, err, np.nan)
    return e[i] + frac * de, err, snr


class _Columns(NamedTuple):
    """A (rows, n) array's columns start:stop (``values``, (rows, stop - start)): what :func:`_peak_fit` reads."""

    start: int
    stop: int
    values: np.ndarray


def _peak_columns(i0, half_width, e):
    """The columns (start, stop) that :func:`_peak_fit` reads around channels ``i0`` of energies ``e`` (its
    windows, clipped; its own channel count)."""
    n = e.size
    k = int(np.ceil(half_width / (e[1] - e[0])))
    i0 = np.asarray(i0)
    return int(np.clip(i0.min() - k, 0, n - 1)), int(np.clip(i0.max() + k, 0, n - 1)) + 1


def _peak_fit(e, s, var, i0, half_width, hi_ev, sigma0, basis=None, fixed_sigma=None, whole_axis=True):
    """A Gaussian on a quadratic (plus ``basis`` times a free amplitude, if given) over
    [c0 - hw, min(c0 + hw, hi)] around channel ``i0`` of every row (batched LM on a window of
    fixed width per row, so a row's result does not depend on the other rows); the Gaussian's
    sigma is free (start ``sigma0``) or held at ``fixed_sigma`` (rows,).  Returns the centre, its
    error (scaled by sqrt(chi2_red) where > 1), FWHM, chi2_red, at_bound, dof, and the local model
    and its window mask over the whole axis (rows, n).  ``basis``: (rows, n), or :class:`_Columns` holding the
    columns the windows read (:func:`_peak_columns`; a shifted reference interpolated there only).  ``whole_axis``
    False: the local model and window mask are not spread over the whole axis (None, None: for callers that do not
    use them)."""
    rows, n = s.shape
    de = e[1] - e[0]
    k = int(np.ceil(half_width / de))
    cols_idx = np.asarray(i0)[:, None] + np.arange(-k, k + 1)[None, :]
    inwin = (cols_idx >= 0) & (cols_idx < n)
    ci = np.clip(cols_idx, 0, n - 1)
    r_ = np.arange(rows)[:, None]
    x, y, v = e[ci], s[r_, ci], var[r_, ci]
    inwin &= x <= np.asarray(hi_ev)
    bsel = None if basis is None else basis.values[r_, ci - basis.start] if isinstance(basis, _Columns) else basis[r_, ci]
    centre0 = e[np.asarray(i0)]
    w = np.where(inwin, 1.0 / np.maximum(v, 1e-30), 0.0)
    n_used = inwin.sum(1)
    # start: the straight line through the window's ends, the peak height above it
    first, last = np.argmax(inwin, 1), inwin.shape[1] - 1 - np.argmax(inwin[:, ::-1], 1)
    idx = np.arange(rows)
    x_lo, x_hi, y_lo, y_hi = x[idx, first], x[idx, last], y[idx, first], y[idx, last]
    slope0 = (y_hi - y_lo) / np.maximum(x_hi - x_lo, 1e-9)
    base0 = y_lo + slope0 * (centre0 - x_lo)
    free_sigma = fixed_sigma is None
    sig_fixed = None if free_sigma else np.broadcast_to(np.asarray(fixed_sigma, float), (rows,))
    p0 = np.column_stack([np.maximum(y[:, k] - base0, 1e-12 + 0 * base0), centre0]
                         + ([np.full(rows, sigma0)] if free_sigma else []) + [base0, slope0, np.zeros(rows)]
                         + ([np.zeros(rows)] if basis is not None else []))
    npar = p0.shape[1]
    j = 3 if free_sigma else 2          # index of the baseline's constant term
    lower = np.array([-np.inf, -np.inf] + ([0.5] if free_sigma else []) + [-np.inf] * (npar - j))
    upper = np.array([np.inf, np.inf] + ([8.0] if free_sigma else []) + [np.inf] * (npar - j))
    lo_c, hi_c = centre0 - half_width, np.minimum(centre0 + half_width, hi_ev)

    def model(p, ii):
        xx = x[ii]
        sg = p[:, 2:3] if free_sigma else sig_fixed[ii, None]
        u = (xx - p[:, 1:2]) / sg
        g = np.exp(-0.5 * u * u)
        dx = xx - centre0[ii, None]
        m = p[:, 0:1] * g + p[:, j:j + 1] + p[:, j + 1:j + 2] * dx + p[:, j + 2:j + 3] * dx * dx
        # the Jacobian's columns written where it holds them (rows, parameters, channels), as they were stacked
        jac = np.empty((ii.size, npar, xx.shape[1]))
        jac[:, 0] = g
        ag = p[:, 0:1] * g
        np.multiply(ag, u, out=jac[:, 1])
        if free_sigma:
            np.multiply(jac[:, 1], u, out=jac[:, 2])
            jac[:, 2] /= sg
        jac[:, 1] /= sg
        jac[:, j] = 1.0
        jac[:, j + 1] = dx
        np.multiply(dx, dx, out=jac[:, j + 2])
        if bsel is not None:
            m = m + p[:, j + 3:j + 4] * bsel[ii]
            jac[:, j + 3] = bsel[ii]
        return m, jac

    res = levenberg_marquardt(model, p0, y, w, lower, upper, transposed=True)
    dof = np.maximum(n_used - npar, 1)
    chi2_red = res.chi2_red * max(y.shape[1] - npar, 1) / dof
    c = res.params[:, 1]
    err = res.stderr[:, 1] * np.sqrt(np.maximum(chi2_red, 1.0))
    at_bound = (c <= lo_c + 0.05 * half_width) | (c >= hi_c - 0.05 * half_width) | (res.params[:, 0] <= 0) \
        | ~res.converged
    full_model = full_win = None
    if whole_axis:
        full_model, full_win = np.zeros(s.shape), np.zeros(s.shape, bool)
        full_model[r_, ci] = np.where(inwin, res.model, 0.0)  # (the model at the parameters, as the fit evaluated it)
        full_win[r_, ci] = inwin
    sigma = res.params[:, 2] if free_sigma else sig_fixed
    with np.errstate(divide="ignore", invalid="ignore"):
        amp_snr = res.params[:, 0] / (res.stderr[:, 0] * np.sqrt(np.maximum(chi2_red, 1.0)))
    return c, err, sigma / FWHM_TO_SIGMA, chi2_red, at_bound, dof, full_model, full_win, amp_snr


#: The ratios of :func:`noise_scale` binned on log10 r from -12 to 12 in 0.002-decade bins (0.46 % wide): the median
#: from the histogram (linear within its bin) is the pixels' median within 4e-7 (8 M Poisson pixels), 5e-5 to 5e-4
#: (the measured line scans and maps of ../shared/data) and 1e-3 (single measured spectra, 2000 ratios, whose
#: median's own scatter is ~3 %), and histograms add over blocks of rows: an image fitted in blocks (:mod:`.daskfit`)
#: gets the whole image's scale, which the blocks' own medians did not give (6-8 % of the rows' flags differed from
#: the in-memory fit on two measured DualEELS line scans, gain unknown, in blocks of 16 rows).
NOISE_LOG10_RANGE = (-12.0, 12.0)
NOISE_BINS = 12000


def noise_ratio_counts(y, var) -> np.ndarray:
    """The histogram (:data:`NOISE_BINS` counts) of :func:`noise_scale`'s ratios over every pixel of ``y``
    (rows, channels): summed over blocks of rows, the histogram of the whole image."""
    d2 = np.asarray(y, float)
    d2 = d2[:, :-2] - 2 * d2[:, 1:-1] + d2[:, 2:]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.square(d2, out=d2)
        r /= 6.0
        r /= np.asarray(var, float)[:, 1:-1]
        r = r[np.isfinite(r) & (r >= 0)]
        x = np.log10(np.maximum(r, 1e-300))
    lo, hi = NOISE_LOG10_RANGE
    idx = np.clip(((x - lo) * (NOISE_BINS / (hi - lo))).astype(np.int64), 0, NOISE_BINS - 1)
    return np.bincount(idx, minlength=NOISE_BINS)


def noise_scale_of(counts) -> float:
    """:func:`noise_scale` from a histogram of :func:`noise_ratio_counts` (one block's or an image's sum): its
    median, linear within its bin, over 0.4549.  1 where there are no ratios or the median is not inside the range
    (e.g. more than half the second differences exactly zero)."""
    counts = np.asarray(counts, float)  # (an image average's: the counts over the rows)
    n = float(counts.sum())
    if not n > 0:
        return 1.0
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, 0.5 * n))  # the bin that holds the median
    if i <= 0 or i >= NOISE_BINS - 1:
        return 1.0
    lo, hi = NOISE_LOG10_RANGE
    x = lo + (i + (0.5 * n - cum[i - 1]) / counts[i]) * (hi - lo) / NOISE_BINS
    k = 10.0**x / 0.4549
    return float(k) if np.isfinite(k) and k > 0 else 1.0


def noise_scale(y, var) -> float:
    """The factor k that makes ``var`` the data's noise variance, measured from the data
    themselves: second differences of neighbouring channels, (y[i-1] - 2 y[i] + y[i+1])^2 / 6,
    estimate the variance of white noise; the median of their ratio to ``var`` over every
    pixel (:func:`noise_scale_of` its histogram), divided by 0.4549 (the median of a chi^2 with one degree of
    freedom), is k.  Smooth signal adds little at the sampling of EELS data; a detector PSF that correlates
    neighbouring channels makes k low, and the fits' chi^2 then scales the errors up."""
    return noise_scale_of(noise_ratio_counts(y, var))


def other_edges_in(e, mean, noise, onset, lo_ev, hi_ev):
    """Edges of :data:`OTHER_EDGES` whose onset (moved with the O-K onset) lies in [lo, hi]
    and that show a rise in the mean spectrum ``mean`` (background included): the mean over
    the 8 eV after the onset exceeds both the straight line through the 10 eV before it and
    their mean by 5 noise units and by 10 % of the spectrum's level there (a white line or a
    sharp edge; the broad O-K resonances rise by a few per cent).  Returns [(name, onset on this axis)]."""
    e = np.asarray(e, float)
    mean, noise = np.asarray(mean, float), np.asarray(noise, float)
    # every edge's candidate onsets at once: onsets move with the material's O-K onset by a few eV,
    # so the rise is looked for within +-5 eV of each tabulated one
    names, ex0s = [], []
    for name, e_x in OTHER_EDGES:
        ex0 = e_x + (onset - O_K_ONSET_EV)
        if not (ex0 + 5.0 < lo_ev or ex0 - 5.0 > hi_ev):
            names.append(name)
            ex0s.append(ex0)
    found = []
    if names:
        ex0s = np.array(ex0s)
        ex = ex0s[:, None] + np.arange(-5.0, 5.01, 0.5)[None, :]            # (edges, shifts)
        valid = (lo_ev <= ex) & (ex <= hi_ev) & (ex + 8 <= e[-1])
        near = (e >= ex.min() - 11.0) & (e <= ex.max() + 9.0)              # the channels any of them uses
        e, mean, noise = e[near], mean[near], noise[near]
        d = e[None, None, :] - ex[:, :, None]                                 # (edges, shifts, channels)
        pre, post = (d >= -10) & (d <= -1), (d >= 0) & (d <= 8)
        n_pre, n_post = pre.sum(2), post.sum(2)
        with np.errstate(invalid="ignore", divide="ignore"):
            # the straight line through the pre-edge (least squares, abscissa centred on its mean)
            xm = np.sum(pre * e, 2) / n_pre
            ym = pre @ mean / n_pre
            xc = np.where(pre, e[None, None, :] - xm[:, :, None], 0.0)
            k = np.sum(xc * mean, 2) / np.sum(xc * xc, 2)
            line_post = k * (post @ e / n_post - xm) + ym  # its mean over the post-edge channels
            rise = post @ mean / n_post - np.maximum(line_post, ym)
            nse = np.sqrt((post @ noise / n_post) / n_post + (pre @ noise / n_pre) / n_pre)
        hit = valid & (n_pre >= 3) & (n_post >= 3) & (rise > 5 * nse) & (rise > 0.1 * np.abs(ym))
        for i in np.flatnonzero(hit.any(1)):
            j = int(np.argmax(np.where(hit[i], rise[i], -np.inf)))  # the largest rise (the first of equals)
            found.append((names[i], float(ex[i, j]), float(rise[i, j]), abs(float(ex[i, j]) - ex0s[i])))
    return one_edge_per_rise(found)


def one_edge_per_rise(found) -> list:
    """Detections [(name, onset, rise, distance from its tabulated onset)] reduced to one edge per
    rise: of detections within 6 eV of each other, a transition-metal or rare-earth edge (common in
    oxides) before others, then the one closest to its tabulated onset, is kept, unless another
    rises 20 % more.  Returns [(name, onset)] by onset."""
    kept = []
    for name, ex, rise, dist in sorted(found, key=lambda t: (t[0].split("-")[0] in RARE_IN_OXIDES, t[3])):
        near = [k for k in kept if abs(ex - k[1]) <= 6.0]
        if not near:
            kept.append((name, ex, rise))
        elif all(rise > 1.2 * k[2] for k in near):
            kept = [k for k in kept if k not in near] + [(name, ex, rise)]
    return sorted(((n, ex) for n, ex, _ in kept), key=lambda t: t[1])


def measure_o_k(energy: EnergyAxis, counts, variance=None, resolution_fwhm_ev=0.5, gain_known=True,
                onset_search_ev=(515.0, 545.0), b_range_ev=(18.0, 45.0), a_range_ev=(5.0, 15.0),
                half_width_b_ev=8.0, half_width_a_ev=3.0, max_ev=None, threshold_ev=None,
                continuum=None, image_mean=None, chi2_scale=1.0, where="O-K window", figures=True,
                image_noise=None) -> OKRows:
    """Measure the O-K threshold, peak "b" and peak "a" of every row (module docstring).

    Parameters
    ----------
    energy : EnergyAxis of ``counts`` (rows, channels).
    variance : per-pixel variances (rows, channels); default the counts (gain 1).
    resolution_fwhm_ev : the data's energy resolution (eV), for the threshold's smoothing.
    gain_known : if False, the variances are scaled by :func:`noise_scale`: the noise level
        is measured from the data, not assumed.
    max_ev : an upper limit for the peak-"b" search (e.g. to keep a known edge out).
    threshold_ev : optional fixed threshold per row on this axis (the study's convention:
        529.0 eV on a calibrated axis); default: measured per row.
    continuum : optional (energy grid, shape) of the O-K continuum with its threshold at
        :data:`O_K_ONSET_EV`: moved to each row's threshold, it is the baseline under peak "a"
        (with the quadratic), which sits just above the continuum's rise.
    figures : the measurement's :class:`.edgefits.EdgeFit` view for figures (``OKRows.fit``; False: None, for
        fits whose figures are not drawn, e.g. a Dask fit's blocks: ~5 % of their CPU time).
    image_mean, image_noise : the whole image's mean spectrum and its variance per channel, where ``counts`` are a
        block of its rows: edges other than O-K are looked for in it (default: these rows' mean and its variance).
    """
    e = energy.energy_ev
    de = energy.scale_ev
    y = np.asarray(counts, float)
    rows = y.shape[0]
    var = np.maximum(np.asarray(variance, float) if variance is not None else np.maximum(y, 1.0), 1e-30)
    mean = y.mean(0) if image_mean is None else np.asarray(image_mean, float)
    noise = var.mean(0) / rows if image_noise is None else np.asarray(image_noise, float)
    onset = coarse_onset(e, mean, de, onset_search_ev, where)
    # pre-edge: up to 40 eV, starting 30 eV above any edge found below the O-K onset (Ti-L, V-L ...)
    below = other_edges_in(e, mean, noise, onset, e[0] + 10.0, onset - 12.0)
    lo = max([onset - 40.0, e[0]] + [ex + 30.0 for _, ex in below])
    hi = onset - 2.0
    if hi - lo < 4.0 or ((e >= lo) & (e <= hi)).sum() < 6:
        raise SreelsInputError(
            f"{where}: the O-K pre-edge window {lo:.1f}-{hi:.1f} eV is too short for the background "
            f"(the window starts at {e[0]:.1f} eV, the O-K onset is at {onset:.1f} eV); expected >= 4 eV "
            "and 6 channels before the onset")
    scale = 1.0 if gain_known else noise_scale(y, var)
    if scale != 1.0:  # (a known gain: the variances as given, not copied)
        var = var * scale
    pl = fit_power_law(energy, y, lo, hi, var)
    bg = pl.evaluate(e)
    s = y - bg
    # threshold
    # the image's mean spectrum, background-subtracted on its own (independent of a block of rows)
    s_mean = mean[None, :] - fit_power_law(energy, mean[None, :], lo, hi).evaluate(e)
    th_img = None
    if threshold_ev is None:
        th_img = threshold_rows(e, s_mean, np.maximum(mean, 1.0)[None, :], onset, de, resolution_fwhm_ev)[0][0]
        th, th_err, th_snr = threshold_rows(e, s, var, onset, de, resolution_fwhm_ev,
                                            th_img if np.isfinite(th_img) else None)
    else:
        th = np.broadcast_to(np.asarray(threshold_ev, float), (rows,)).copy()
        th_err, th_snr = np.zeros(rows), np.full(rows, np.inf)
    # presence: the O-K signal over [onset + 5, onset + 25] against its noise and the background's error
    sig_win = (e >= onset + 5.0) & (e <= onset + 25.0)
    if sig_win.sum() < 3:
        raise SreelsInputError(f"{where}: the window ends at {e[-1]:.1f} eV, within 25 eV of the O-K onset "
                               f"({onset:.1f} eV); expected data to at least {onset + 25:.0f} eV")
    _, b_int_err = pl.integral(e[sig_win], 1.0)
    b_int_err = b_int_err * np.sqrt(scale)
    jump = s[:, sig_win].sum(1)
    jump_snr = jump / np.sqrt(var[:, sig_win].sum(1) + b_int_err**2)
    no_o = ~(jump_snr > 5.0)
    # other edges cut the peak-"b" search
    hi_b = onset + b_range_ev[1]
    edges = other_edges_in(e, mean, var.mean(0) / rows if image_noise is None else noise * scale, onset, onset + 5.0,
                           hi_b + 3.0)
    cut = min([hi_b, e[-1]] + [ex - 3.0 for _, ex in edges] + ([max_ev] if max_ev is not None else []))
    # peak "b"
    ok_b = (e[None, :] >= th[:, None] + b_range_ev[0]) & (e[None, :] <= np.minimum(th[:, None] + b_range_ev[1], cut))
    sg_b = _sigma_ch(2.0, de)
    sm = _filter_on(s, ok_b, _gauss_reach(sg_b), lambda x: gaussian_filter1d(x, sg_b, axis=-1, mode="nearest"))
    if ok_b.sum(1).max() < 5:
        raise SreelsInputError(f"{where}: no peak-b window: {onset + b_range_ev[0]:.1f}-{cut:.1f} eV holds "
                               f"fewer than 5 channels (the data end at {e[-1]:.1f} eV)")
    ib, has_b = _largest_peak(sm, ok_b)
    # the width of peak b from the image's mean spectrum, held in every row: with it free, a
    # noisy row trades width for position and its error is no longer the spread (low dose)
    th0 = th_img if th_img is not None and np.isfinite(th_img) else (
        float(np.nanmedian(th)) if np.isfinite(th).any() else onset)
    ok_m = (e >= th0 + b_range_ev[0]) & (e <= min(th0 + b_range_ev[1], cut))
    im, _ = _largest_peak(gaussian_filter1d(s_mean, _sigma_ch(2.0, de), axis=-1, mode="nearest"), ok_m[None, :])
    fw_img = _peak_fit(e, s_mean, np.maximum(mean, 1.0)[None, :], im, half_width_b_ev, cut, 3.0, whole_axis=False)[2][0]
    sig_b = np.clip(fw_img * FWHM_TO_SIGMA, 1.0, 8.0) if np.isfinite(fw_img) else 3.0
    cb, cb_err, fwhm_b, chi_b, bound_b, dof_b, m_b, win_b, _ = _peak_fit(e, s, var, ib, half_width_b_ev, cut, 3.0,
                                                                         fixed_sigma=sig_b, whole_axis=figures)
    # peak "a": located on the image's mean spectrum, looked for in each row within 2 eV of it
    from .edgefits import Shifted
    basis = basis_m = ref = None
    if continuum is not None:
        ref = np.asarray(continuum[1], float)
        ref = Shifted.build(continuum[0], ref / np.max(np.abs(ref)))
        basis_m = ref.interpolate(ref.index(e, np.array([th0 - O_K_ONSET_EV])), slopes=False)
    ok_am = (e >= th0 + a_range_ev[0]) & (e <= th0 + a_range_ev[1])
    iam, _ = _largest_peak(gaussian_filter1d(s_mean, _sigma_ch(0.5, de), axis=-1, mode="nearest"), ok_am[None, :])
    ca_m, _, fw_a = _peak_fit(e, s_mean, np.maximum(mean, 1.0)[None, :], iam, half_width_a_ev, e[-1], 1.3,
                              basis_m, whole_axis=False)[:3]
    sig_a = np.clip(fw_a[0] * FWHM_TO_SIGMA, 0.5, 8.0) if np.isfinite(fw_a[0]) else 1.3
    ca0 = ca_m[0] if np.isfinite(ca_m[0]) else e[iam[0]]
    ok_a = np.broadcast_to((e >= ca0 - 2.0) & (e <= ca0 + 2.0), s.shape)
    sg_a = _sigma_ch(1.0, de)
    ia, _ = _largest_peak(_filter_on(s, ok_a, _gauss_reach(sg_a),
                                     lambda x: gaussian_filter1d(x, sg_a, axis=-1, mode="nearest")), ok_a)
    if ref is not None:  # the continuum at each row's threshold, on the channels the rows' peak-a fits read only
        c0, c1 = _peak_columns(ia, half_width_a_ev, e)
        basis = _Columns(c0, c1, ref.interpolate(ref.index(e[c0:c1], np.nan_to_num(th - O_K_ONSET_EV)), slopes=False))
    ca, ca_err, _, _, bound_a, _, _, _, a_snr = _peak_fit(e, s, var, ia, half_width_a_ev, e[-1], 1.3, basis,
                                                          fixed_sigma=sig_a, whole_axis=False)
    bound_a = bound_a | ~(a_snr >= MIN_SNR["peak_a"])  # a faint peak a: withheld
    # noise-free, these definitions sit within 0.006 eV (b, rms; 0.010 max), 0.009 eV (threshold)
    # and 0.003 eV (a) of the forward model's truth over three scenarios: statistical errors only
    poor = chi_b / chi2_scale > 1.0 + 5.0 * np.sqrt(2.0 / dof_b)
    # a pre-edge that is not a power law: plural scattering of the edges below (their replica one
    # plasmon higher) or an unmodelled edge; the background under O-K, and so peak b, is biased
    n_pre = ((e >= lo) & (e <= hi)).sum()
    bg_poor = pl.chi2_red / chi2_scale > 1.0 + 5.0 * np.sqrt(2.0 / max(n_pre - 2, 1))
    # the linear error propagation holds only for clear features: below these signal-to-noise
    # ratios the threshold or the peak can jump to a noise feature (pull tails at 1/100 dose)
    low_th = ~(th_snr >= MIN_SNR["threshold"])
    flags = {"no_o": no_o, "o_poor_fit": poor & ~no_o, "o_b_no_peak": ~has_b & ~no_o,
             "o_b_at_bound": bound_b & has_b & ~no_o, "o_threshold_low_snr": low_th & ~no_o,
             "o_background_poor": bg_poor & ~no_o}
    bad_b = no_o | ~has_b | bound_b | low_th
    nan = np.full(rows, np.nan)
    return OKRows(
        onset_coarse_ev=onset, threshold_ev=np.where(no_o | low_th, nan, th),
        threshold_err_ev=np.where(no_o | low_th, nan, th_err),
        peak_b_ev=np.where(bad_b, nan, cb), peak_b_err_ev=np.where(bad_b, nan, cb_err),
        peak_b_fwhm_ev=np.where(bad_b, nan, fwhm_b), b_chi2_red=chi_b,
        peak_a_ev=np.where(no_o | bound_a, nan, ca), peak_a_err_ev=np.where(no_o | bound_a, nan, ca_err),
        jump_snr=jump_snr, background_r=pl.r, cut_ev=float(cut), other_edges=tuple(n for n, _ in edges),
        noise_scale=scale, flags=flags,
        fit=_edge_fit(e, y, var, pl, bg, m_b, win_b, chi_b, ~bound_b, lo, cut) if figures else None)


def _edge_fit(e, y, var, pl, bg, m_b, win_b, chi_b, converged, lo, hi):
    """The O-K measurement as an :class:`.edgefits.EdgeFit` over [pre-edge start, end of the
    peak-"b" search] for figures: background parameters, model = background + the local
    peak-"b" model, weights only where that model was fitted (its residuals)."""
    from .batchfit import BatchResult
    from .edgefits import EdgeFit

    sl = (e >= lo) & (e <= hi)
    res = BatchResult(np.column_stack([pl.log_a, pl.r]), pl.cov, chi_b, converged, 0)
    # (on the columns kept only: the same values as computing over the whole axis and cutting)
    w = np.where(win_b[:, sl], 1.0 / var[:, sl], 0.0)
    return EdgeFit(res, ("log_a", "r"), pl.e_ref_ev, e[sl], bg[:, sl] + m_b[:, sl], y[:, sl], w)
