"""From detector counts to data the likelihood can use: whitening, fit regions, binning.

The camera's point spread correlates the shot noise of neighbouring pixels: a
readout is d = g K n + e, with n Poisson electrons (variance lambda), K the PSF
operator, g the gain and e readout noise.  A diagonal Gaussian likelihood with the
PSF-reduced per-pixel variance g^2 sum(k^2) lambda would claim 1 / sum(k^2) times more
information than the image holds (k = 0.3^|n|: x2.9 along one axis) and give
intervals far too narrow.  Instead the data are whitened once: K^-1 d / g = n + K^-1 e / g
has independent Poisson noise plus a small, nearly white readout term, and the
model is compared in electrons before the PSF.  K is taken from
:func:`sreels.forward.detector.apply_psf` itself (probed with unit impulses), so the
inversion follows whatever PSF the forward model applies.

Fit regions and binning per window (default :data:`DEFAULT_REGIONS`): the whole low
window (41-243 eV: Li-K on the Ti-M / Ge-M tails, with Al-L, Si-L and P-L, which pin
the background and the host amount; cutting it to 44-100 eV doubles the Cramer-Rao bound
of c_Li) in 0.4 eV bins, and 430-600 eV (Ti-L2,3 and O-K with their pre-edges) in 0.2 eV
bins.  Measured on the default image (Cramer-Rao bounds): 0.1 -> 0.2 eV bins change no
bound by more than 0.3 %, 0.4 eV bins in the high window would cost 1 % on the Ti3+
boundary; 600-625 eV adds < 1 %.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_banded
from scipy.ndimage import uniform_filter

from ...config import Config, Detector, Instrument, Window
from ...errors import SreelsInputError
from ...forward.detector import apply_psf

#: Default fit region (eV) and channels per bin of a window, keyed by the edge that identifies it.
DEFAULT_REGIONS = {"Ti-L23": (430.0, 600.0, 2), "O-K": (430.0, 600.0, 2), "Li-K": (41.0, 243.0, 4)}
#: Variance of uniform quantisation (counts^2).
QUANTISATION_VAR = 1.0 / 12.0


@dataclass(frozen=True)
class WindowData:
    """One window, whitened, cropped and binned.  Arrays are (rows, bins).

    data        electrons per bin (PSF removed)
    readout_var readout + quantisation variance per bin (electrons^2)
    mask        True where a bin may be used (False near saturated pixels)
    energy_ev   (bins, bin) centres of the channels summed into each bin (eV)
    """

    window: Window
    i0: int
    bin: int
    energy_ev: np.ndarray
    data: np.ndarray
    readout_var: np.ndarray
    mask: np.ndarray

    @property
    def nbins(self) -> int:
        return self.energy_ev.shape[0]


@dataclass(frozen=True)
class PreparedData:
    """Everything the likelihood needs; ``variance`` (per window, (rows, bins)) in electrons^2."""

    windows: tuple
    y_nm: np.ndarray
    row_nm: float
    instrument: Instrument
    detector: Detector
    variance: tuple
    variance_source: str
    source: str = ""
    #: plural scattering per window from a DualEELS input (:mod:`.plural`), aligned with ``windows``; () without
    plural: tuple = ()

    def window(self, name):
        for w in self.windows:
            if w.window.name == name:
                return w
        raise KeyError(name)

    def with_variance(self, expected: tuple, source: str) -> "PreparedData":
        """Variance = expected electrons + readout, e.g. from the MAP prediction."""
        var = tuple(np.maximum(e, 1.0) + w.readout_var for e, w in zip(expected, self.windows))
        return dataclasses.replace(self, variance=var, variance_source=source)


# ------------------------------------------------------------------ PSF
def psf_matrices(n_rows: int, n_channels: int, decay: float):
    """The PSF as two matrices (y, energy) probed from :func:`apply_psf` with impulses."""
    ky = apply_psf(np.eye(n_rows)[:, :, None], decay)[:, :, 0]          # axis 0 only
    ke = apply_psf(np.eye(n_channels)[None, :, :], decay)[0]            # axis -1 only: rows = impulses
    return ky, ke.T


def _banded(mat: np.ndarray):
    n = mat.shape[0]
    nz = np.nonzero(np.abs(mat) > 0)
    h = int(np.max(np.abs(nz[0] - nz[1]))) if nz[0].size else 0
    ab = np.zeros((2 * h + 1, n))
    for k in range(-h, h + 1):
        d = np.diagonal(mat, k)
        if k >= 0:
            ab[h - k, k:] = d
        else:
            ab[h - k, :n + k] = d
    return h, ab


@functools.lru_cache(maxsize=8)
def _axis_band(n: int, decay: float, axis: str):
    """(is_identity, band half-width, banded K, banded K') of the PSF along one axis."""
    ky, ke = psf_matrices(n if axis == "y" else 1, n if axis == "e" else 1, decay)
    k = ky if axis == "y" else ke
    d = np.diagonal(k)
    # np.allclose(k, I) without its (n, n) temporaries (~0.5 s for 2048 channels): the diagonal within rtol 1e-5 +
    # atol 1e-8 of 1 and every element off it within 1e-8 of 0
    if np.all(np.abs(d - 1.0) <= 1e-8 + 1e-5) and not np.any(np.abs(k - np.diag(d)) > 1e-8):
        return True, 0, None, None
    h, ab = _banded(k)
    return False, h, ab, _banded(k.T)[1]


@functools.lru_cache(maxsize=8)
def _axis_operator(n: int, decay: float, axis: str):
    """(is_identity, band half-width, banded K, K^-1) of the PSF along one axis."""
    ident, h, ab, _ = _axis_band(n, decay, axis)
    if ident:
        return True, 0, None, None
    # K^-1 from the banded LU (O(n^2 h)) instead of a dense inverse (O(n^3): ~1 s for 2048 channels)
    return False, h, ab, solve_banded((h, h), ab, np.eye(n))


@functools.lru_cache(maxsize=16)
def _binned_inverse_norms(n: int, decay: float, i0: int, nbins: int, bin: int) -> np.ndarray:
    """(nbins,) the squared row norms of S K^-1 (S: channels i0 ... summed in groups of ``bin``) of the PSF along
    energy: K' X = S' solved for the bins only (nbins right-hand sides, not K^-1's n: 0.27 s for 2048 channels)."""
    _, h, _, abt = _axis_band(n, decay, "e")
    st = np.zeros((n, nbins))
    st[i0 + np.arange(nbins * bin), np.repeat(np.arange(nbins), bin)] = 1.0
    return np.sum(solve_banded((h, h), abt, st) ** 2, axis=0)


def deconvolve(counts: np.ndarray, decay: float, sl: slice, bin: int, factors: bool = True):
    """K^-1 counts for the PSF of ``decay``; the variance factor of white noise after
    whitening and summing channels ``sl`` in groups of ``bin`` (rows, bins), which keeps
    the (negative) covariance of neighbouring channels; the band half-widths (y, energy).
    ``factors=False``: the variance factor is not computed (None)."""
    rows, ch = counts.shape
    out = np.asarray(counts, dtype=float)
    ident_e, he, ab_e, _ = _axis_band(ch, float(decay), "e")
    ident_y, hy, ab_y, _ = _axis_band(rows, float(decay), "y")
    n = sl.stop - sl.start
    if not ident_e:
        out = solve_banded((he, he), ab_e, out.T).T
    if not ident_y:
        out = solve_banded((hy, hy), ab_y, out)
    if not factors:
        return out, None, (hy, he)
    if not ident_e:
        fac_e = _binned_inverse_norms(ch, float(decay), sl.start, n // bin, bin)
    else:
        fac_e = np.full(n // bin, float(bin))
    fac_y = np.sum(_axis_operator(rows, float(decay), "y")[3] ** 2, axis=1) if not ident_y else np.ones(rows)
    return out, fac_y[:, None] * fac_e[None, :], (hy, he)


def _saturation_mask(saturated, hy, he):
    """False where a saturated pixel reaches through the whitening operator (its band)."""
    if saturated is None or not np.any(saturated):
        return None
    from scipy.ndimage import binary_dilation
    return ~binary_dilation(saturated, structure=np.ones((2 * hy + 1, 2 * he + 1), bool))


def default_region(window: Window) -> tuple:
    """(lo_ev, hi_ev, bin) of a window."""
    for edge, reg in DEFAULT_REGIONS.items():
        if edge in window.edges:
            return reg
    return (window.offset_ev, window.end_ev, 2)


def prepare(counts: dict, config: Config, y_nm, row_nm: float, saturated: dict | None = None,
            regions: dict | None = None, bin: int | None = None, source: str = "",
            lowloss: dict | None = None) -> PreparedData:
    """Whiten, crop and bin dark-subtracted counts of every window.

    Parameters
    ----------
    counts : dict
        window name -> counts (rows, channels), dark subtracted, on the window's axis in ``config``.
    config : Config
        Instrument (windows, exposures) and detector (gain, readout noise, PSF).
    y_nm : array (rows,)
        Row centres (nm).
    regions : dict, optional
        window name -> (lo_ev, hi_ev) or (lo_ev, hi_ev, bin); default :data:`DEFAULT_REGIONS`.
    bin : int, optional
        Channels summed per bin in every window (overrides the regions' bins).
    lowloss : dict, optional
        A DualEELS input's low-loss window: ``counts`` (rows, channels, dark subtracted like the others),
        ``axis`` (:class:`~sreels.axes.EnergyAxis`) and ``exposure_ratio`` (window name -> core-loss over
        low-loss exposure, needed for a window starting below 150 eV).  The model then carries each row's
        plural scattering (:mod:`.plural`); the Li-K window's region ends where its tail is known.  Its optional
        ``tail_row_step`` (the plan's, on a noise-free image only): the Li-K tail's covariance on every so many rows,
        the others' from their neighbours' (:func:`.plural.tail_window`).
    """
    det = config.detector
    if not det.dark_subtracted:
        counts = {k: np.asarray(v, float) - det.dark_offset_counts for k, v in counts.items()}
    if bin is not None and (int(bin) != bin or bin < 1):
        raise SreelsInputError(f"bin = {bin!r}: expected an integer >= 1")
    regions = dict(regions or {})
    ll = None
    if lowloss is not None:
        from .plural import read_lowloss, tail_end_ev
        from ...inference.lowloss import MIN_DECONVOLVE_EV
        lc = np.asarray(lowloss["counts"], dtype=float)
        if not det.dark_subtracted:
            lc = lc - det.dark_offset_counts
        if lc.ndim != 2 or lc.shape[0] != len(y_nm):
            raise SreelsInputError(f"low-loss window: counts of shape {lc.shape}, expected ({len(y_nm)}, channels)")
        white = deconvolve(lc, det.psf_decay, slice(0, lc.shape[1]), 1, factors=False)[0] / det.gain_counts_per_e
        # the readout and quantisation noise per channel in electrons^2, as it reaches the slowly varying Li-K
        # tail: the inverse PSF has unit gain at low frequencies (its per-pixel factor is high-frequency noise)
        rv = (det.readout_noise_counts ** 2 + (QUANTISATION_VAR if det.quantise else 0.0)) / det.gain_counts_per_e ** 2
        ll = read_lowloss(white, lowloss["axis"], rv)
    out = []
    for w in config.instrument.windows:
        if w.name not in counts:
            raise SreelsInputError(f"no counts for window {w.name!r}; have {sorted(counts)}")
        c = np.asarray(counts[w.name], dtype=float)
        if c.ndim != 2 or c.shape[1] != w.channels:
            raise SreelsInputError(f"window {w.name!r}: counts of shape {c.shape}, expected (rows, {w.channels})")
        if c.shape[0] != len(y_nm):
            raise SreelsInputError(f"window {w.name!r} has {c.shape[0]} rows, the position axis {len(y_nm)}")
        if not np.all(np.isfinite(c)):
            raise SreelsInputError(f"window {w.name!r}: {int(np.sum(~np.isfinite(c)))} non-finite counts")
        reg = tuple(regions.get(w.name, default_region(w)))
        lo, hi = reg[:2]
        b = int(bin if bin is not None else (reg[2] if len(reg) > 2 else default_region(w)[2]))
        lo, hi = max(lo, w.offset_ev + 1.0), min(hi, w.end_ev - 1.0)
        if ll is not None and w.offset_ev < MIN_DECONVOLVE_EV:
            hi = min(hi, tail_end_ev(ll.axis))
        i0 = int(np.ceil((lo - w.offset_ev) / w.scale_ev))
        n = (int(np.floor((hi - w.offset_ev) / w.scale_ev)) - i0) // b * b
        if n < 20 * b:
            raise SreelsInputError(f"window {w.name!r}: fit region {lo:.1f}-{hi:.1f} eV holds {n} channels "
                                   f"inside {w.offset_ev:.1f}-{w.end_ev:.1f} eV; expected >= {20 * b}")
        sl = slice(i0, i0 + n)
        white, fac, (hy, he) = deconvolve(c, det.psf_decay, sl, b)
        white /= det.gain_counts_per_e
        rv = (det.readout_noise_counts ** 2 + (QUANTISATION_VAR if det.quantise else 0.0)) * fac \
            / det.gain_counts_per_e ** 2
        rows = c.shape[0]
        summed = white[:, sl].reshape(rows, n // b, b).sum(-1)
        mask = np.ones(summed.shape, bool)
        sat = _saturation_mask(None if saturated is None else saturated.get(w.name), hy, he)
        if sat is not None:
            mask = sat[:, sl].reshape(rows, n // b, b).all(-1)
        e = (w.offset_ev + w.scale_ev * np.arange(i0, i0 + n)).reshape(n // b, b)
        out.append(WindowData(w, i0, int(b), e, summed, rv, mask))
    # first-pass variance: the data smoothed over 7 bins x 3 rows (replaced by the MAP model later)
    var = tuple(np.maximum(uniform_filter(wd.data, size=(3, 7), mode="nearest"), 1.0) + wd.readout_var
                for wd in out)
    plural = ()
    if ll is not None:
        from .plural import mixed_rows, plural_windows
        ratio = dict(lowloss.get("exposure_ratio") or {})
        missing = [wd.window.name for wd in out if wd.window.offset_ev < MIN_DECONVOLVE_EV and not ratio.get(wd.window.name)]
        if missing:
            raise SreelsInputError(f"window(s) {missing}: the exposure ratio to the low-loss window is not known "
                                   "(needed to scale the multiple scattering under Li-K)")
        plural = plural_windows(out, ll, ratio, lowloss.get("tail_row_step"))
        if any(p.tail_var is not None for p in plural):  # the tail's own noise, independent per row and bin
            out = [wd if p.tail_var is None else dataclasses.replace(wd, readout_var=wd.readout_var + p.tail_var)
                   for wd, p in zip(out, plural)]
            var = tuple(np.maximum(uniform_filter(wd.data, size=(3, 7), mode="nearest"), 1.0) + wd.readout_var
                        for wd in out)
        mixed = mixed_rows(ll.unscattered)
        if mixed.any():  # those rows' kernels are not the ones their edges see: left out of the fit
            out = [dataclasses.replace(wd, mask=wd.mask & ~mixed[:, None]) for wd in out]
    return PreparedData(tuple(out), np.asarray(y_nm, float), float(row_nm), config.instrument, det, var,
                        "smoothed data", source, plural)


def from_simulation(sim, plural: bool = False, tail_row_step: int | None = None, **kw) -> PreparedData:
    """Prepare a :class:`~sreels.forward.simulate.Simulation` (its recorded configuration); with
    ``plural=True`` a simulation with a low-loss window is prepared as a DualEELS input (the model then
    carries plural scattering, :mod:`.plural`; validation/16's pulls within target on 52 images per t/lambda
    0.31 / 0.59 / 0.92; ``sreels fit --method bayes`` uses it by default for a DualEELS input).  ``tail_row_step``:
    the plan's sampled Li-K tail covariance (``prepare``'s ``lowloss``), for a noise-free simulation only."""
    from ...config import LOWLOSS_NAME
    counts = {k: w.counts for k, w in sim.windows.items() if k != LOWLOSS_NAME}
    sat = {k: w.saturated for k, w in sim.windows.items() if k != LOWLOSS_NAME}
    inst = sim.config.instrument
    if plural and LOWLOSS_NAME in sim.windows:
        ll = sim.windows[LOWLOSS_NAME]
        kw["lowloss"] = {"counts": ll.counts, "axis": ll.energy,
                         "exposure_ratio": {w.name: w.exposure_s / inst.lowloss_exposure_s for w in inst.windows},
                         "tail_row_step": tail_row_step}
    return prepare(counts, sim.config, sim.position.y_nm, sim.position.scale_nm, saturated=sat,
                   source=kw.pop("source", "simulation"), **kw)
