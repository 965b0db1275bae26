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
- Fourier-ratio deconvolution (:func:`fourier_ratio`; Egerton 2011, Sec. 4.3, Eq. 4.11):
  the single-scattering core loss S = FT^-1[ Z(f) J_k(f) I_l / J_l(f) ] with J_k, J_l the
  core-loss and low-loss rows, I_l = J_l(0) the low loss's total and Z the reconvolution
  function, here the inversion's own resolution (the model ZLP times the camera's PSF), so that
  the deconvolved rows have exactly the resolution the fit's references assume, and the ZLP
  position (the row's energy shift) is removed with the plural scattering.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import uniform_filter1d

from ..axes import EnergyAxis
from ..config import LOWLOSS_NAME
from ..errors import SreelsInputError
from ..forward.detector import psf_kernel
from ..forward.lowloss import zlp_tf

#: the ZLP is searched within this distance of 0 eV on the stored axis (uncalibrated axes: a few eV)
ZLP_SEARCH_EV = 10.0
#: windows starting below this energy (eV) are continued below their start by the low loss before the
#: deconvolution (an extrapolation would have to cross the plasmon region); without a low loss that
#: reaches into them they are scaled by exp(t/lambda) instead
MIN_DECONVOLVE_EV = 150.0
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
    imax = np.argmax(np.where(near[None, :], y, -np.inf), axis=1)
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


def zlp_fwhm(counts, axis: EnergyAxis, imax):
    """FWHM (eV) of the ZLP per row: half-maximum crossings interpolated between channels."""
    y = np.asarray(counts, dtype=float)
    rows = np.arange(y.shape[0])
    idx = np.arange(y.shape[1])[None, :]
    half = 0.5 * y[rows, imax][:, None]
    below = y < half
    jl = np.max(np.where(below & (idx < imax[:, None]), idx, -1), 1)
    jr = np.min(np.where(below & (idx > imax[:, None]), idx, y.shape[1]), 1)
    jl, jr = np.clip(jl, 0, y.shape[1] - 2), np.clip(jr, 1, y.shape[1] - 1)
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


def log_ratio_thickness(counts, threshold_idx, gain=1.0, readout=0.0):
    """t/lambda = ln(I_t / I_0) per row and its standard error.

    Error propagation with I_t = I_0 + I_in and Var(I) = g I + n rd^2 for a sum of n channels
    of counts (gain g counts/electron; the camera's PSF does not change a broad sum's variance):
        Var(t/lambda) = Var(I_in) / I_t^2 + Var(I_0) (1/I_t - 1/I_0)^2,
    which is I_in / (I_t I_0) electrons^-1 for pure shot noise.  The threshold's own
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
    vin = gain * np.maximum(iin, 0.0) + (y.shape[1] - n0) * readout**2
    with np.errstate(divide="ignore", invalid="ignore"):
        tl = np.log(it / i0)
        err = np.sqrt(vin / it**2 + v0 * (1.0 / it - 1.0 / i0) ** 2)
    return tl, err


def _resample(ll, axis: EnergyAxis, scale_ev: float):
    """Low-loss rows onto channels of ``scale_ev`` (counts conserved: cumulative-sum interpolation)."""
    if abs(axis.scale_ev - scale_ev) < 1e-6 * scale_ev:
        return np.asarray(ll, float), axis
    edges = axis.offset_ev - 0.5 * axis.scale_ev + axis.scale_ev * np.arange(axis.size + 1)
    n = int(np.floor((edges[-1] - edges[0]) / scale_ev))
    new = EnergyAxis(edges[0] + 0.5 * scale_ev, scale_ev, n)
    cum = np.concatenate([np.zeros((ll.shape[0], 1)), np.cumsum(ll, 1)], 1)
    ne = edges[0] + scale_ev * np.arange(n + 1)
    c = np.stack([np.interp(ne, edges, r) for r in cum])  # rows x (n+1); small loop over rows of 1-D interp
    return np.diff(c, axis=1), new


def _power_law_pad(y, e, n_lo, n_hi, n_fit):
    """Extend rows below and above by power laws fitted to ``n_fit`` channels at each end
    (two-area estimate), then a cosine taper to zero over the outer half of each pad."""
    def law(block_e, block_y):
        h = block_e.size // 2
        m1, m2 = block_y[:, :h].mean(1), block_y[:, h:].mean(1)
        e1, e2 = block_e[:h].mean(), block_e[h:].mean()
        ok = (m1 > 0) & (m2 > 0) & (e1 > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(ok, np.log(m1 / m2) / np.log(e2 / e1), 0.0)
        return np.clip(np.nan_to_num(r), -2.0, 8.0), np.where(ok, np.sqrt(m1 * m2), block_y.mean(1)), np.sqrt(e1 * e2)

    de = e[1] - e[0]
    r0, a0, ea = law(e[:n_fit], y[:, :n_fit])
    r1, a1, eb = law(e[-n_fit:], y[:, -n_fit:])
    elo = e[0] - de * np.arange(n_lo, 0, -1)
    ehi = e[-1] + de * np.arange(1, n_hi + 1)
    floor = 0.25 * max(abs(e[0]), de)
    lo = a0[:, None] * (np.maximum(elo, floor)[None, :] / ea) ** (-r0[:, None])
    hi = a1[:, None] * (ehi[None, :] / eb) ** (-r1[:, None])

    def taper(n):
        t = np.ones(n)
        k = n // 2
        t[:k] = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / max(k, 1))
        return t
    return np.concatenate([lo * taper(n_lo)[None, :], y, hi * taper(n_hi)[::-1][None, :]], 1)


def _splice(core, core_axis: EnergyAxis, ll, ll_axis: EnergyAxis, n_hi: int, n_fit: int, ratio=None):
    """Core rows continued below their start by the low loss (on the core's channel grid, scaled over
    the first 10 eV they share) and above by a tapered power law; returns the rows and the number of
    channels put below."""
    de = core_axis.scale_ev
    n_lo = int(np.floor((core_axis.offset_ev - ll_axis.offset_ev) / de))
    if n_lo < 1 or ll_axis.end_ev < core_axis.offset_ev + 10.0:
        raise SreelsInputError(f"the low-loss window ({ll_axis.offset_ev:.1f}-{ll_axis.end_ev:.1f} eV) does not "
                               f"reach 10 eV into the core-loss window starting at {core_axis.offset_ev:.1f} eV")
    e = core_axis.offset_ev + de * np.arange(-n_lo, int(round(10.0 / de)))
    el = ll_axis.energy_ev
    low = np.stack([np.interp(e, el, r) for r in ll])  # rows x channels: 1-D interpolation per row
    ov = slice(n_lo, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = core[:, :low.shape[1] - n_lo].sum(1) / low[:, ov].sum(1)
    k = np.where(np.isfinite(k), k, 0.0) if ratio is None else np.full(core.shape[0], float(ratio))
    ext = _power_law_pad(core, core_axis.energy_ev, 0, n_hi, n_fit)
    return np.concatenate([low[:, :n_lo] * k[:, None], ext], 1), n_lo


def _psf_tf(psf_decay, n):
    k = psf_kernel(psf_decay)
    kk = np.zeros(n)
    kk[(np.arange(k.size) - k.size // 2) % n] = k
    return sfft.rfft(kk).real


def mean_zlp_tf(counts, axis: EnergyAxis, centre_ev, threshold_ev, n: int):
    """The image's mean ZLP shape as a unit-area transform on an ``n``-point grid of the axis's
    spacing, centred at 0 eV: each row's counts up to its threshold, moved by its centre (Fourier
    shift) and divided by its area, then averaged over rows (noise / sqrt(rows))."""
    y = np.asarray(counts, dtype=float)
    e = axis.energy_ev
    zl = np.where(e[None, :] <= np.asarray(threshold_ev)[:, None], y, 0.0)
    f = sfft.rfftfreq(n, d=axis.scale_ev)
    zf = sfft.rfft(zl, n=n, axis=1) * np.exp(2j * np.pi * f[None, :] * (np.asarray(centre_ev)[:, None] - e[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        zf = zf / zf[:, :1].real
    good = np.all(np.isfinite(zf), axis=1)
    return zf[good].mean(0)


def fourier_log(core, core_axis: EnergyAxis, ll, ll_axis: EnergyAxis, centre_ev, threshold_ev, fwhm_ev: float,
                tail_ev: float = 0.0, psf_decay: float = 0.0, smooth_ev: float = 1.0, ratio=None):
    """Single scattering of a core-loss window that starts inside the low-loss range (Li-K at 40 eV)
    by the Fourier-log method (Egerton 2011, Sec. 4.2, Eq. 4.10) on the spliced spectrum.

    J = the row's low loss below the window's start (scaled to the window over the first 10 eV they
    share: the exposure ratio), the window itself, a tapered power law above.  Its ZLP (up to
    ``threshold_ev``) is replaced by Z = I_0 z(E - centre), z the image's mean ZLP shape
    (:func:`mean_zlp_tf`), and the plasmon region below the window is smoothed by a Gaussian of
    ``smooth_ev`` sigma: scaled by the exposure ratio, the low loss's shot noise would otherwise
    dominate.  With N = J(0) the total,
        D(f) = N G(f) K(f) ln[ J(f) / Z(f) ],       G = model ZLP (fwhm, tail), K = PSF;
    since J = Z exp(S / I_0) (Poisson), D is the single-scattering distribution (single plasmon and
    single core losses) per N incident electrons, reconvolved: the normalisation of
    :func:`fourier_ratio` and of the forward model without plural scattering.  A Fourier ratio
    cannot be used here: its kernel (the low loss) would hold the window's own edges.  The row's ZLP
    shift cancels in J / Z: D is on the ZLP-referenced scale.  Noise: H = N G K / J as in
    :func:`fourier_ratio`; ``factor`` is its mean |H|^2 over 0.1-1 cycles/eV.
    """
    core = np.asarray(core, dtype=float)
    ll, ll_axis = _resample(np.asarray(ll, dtype=float), ll_axis, core_axis.scale_ev)
    de = core_axis.scale_ev
    padded, n_lo = _splice(core, core_axis, ll, ll_axis, int(round(64.0 / de)), min(64, core.shape[1] // 4), ratio)
    e0 = core_axis.offset_ev - n_lo * de   # energy of padded[:, 0]
    ep = e0 + de * np.arange(padded.shape[1])
    thr, centre = np.asarray(threshold_ev)[:, None], np.asarray(centre_ev, dtype=float)
    zero = ep[None, :] <= thr
    i0 = np.sum(np.where(zero, padded, 0.0), 1)
    below = (ep[None, :] > thr) & (ep[None, :] < core_axis.offset_ev)
    if smooth_ev > 0:
        from scipy.ndimage import gaussian_filter1d
        padded = np.where(below, gaussian_filter1d(np.where(zero, 0.0, padded), smooth_ev / de, axis=1), padded)
    n = sfft.next_fast_len(2 * padded.shape[1], real=True)
    f = sfft.rfftfreq(n, d=de)
    zshape = mean_zlp_tf(ll, ll_axis, centre, np.asarray(threshold_ev), n)
    z = i0[:, None] * zshape[None, :] * np.exp(-2j * np.pi * f[None, :] * (centre[:, None] - e0))
    j = sfft.rfft(np.where(zero, 0.0, padded), n=n, axis=1) + z
    ntot = j[:, :1].real
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(j / z)
    lr = np.where(np.isfinite(lr), lr, 0.0)
    gk = (zlp_tf(f, fwhm_ev, tail_ev) * _psf_tf(psf_decay, n))[None, :]
    d = ntot * gk * lr
    # D at lag m is the loss m dE above the ZLP; the window's channel j (loss offset + j dE) is at lag
    # offset / dE + j (the fraction by a phase)
    c0 = core_axis.offset_ev / de
    c_int = int(np.floor(c0))
    d = d * np.exp(2j * np.pi * f * (c0 - c_int) * de)[None, :]
    out = sfft.irfft(d, n=n, axis=1)[:, c_int:c_int + core.shape[1]]
    band = (f >= 0.1) & (f <= 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.mean(np.abs(ntot * gk[:, band] / j[:, band]) ** 2, axis=1)
    return out, factor


def fourier_ratio(core, core_axis: EnergyAxis, ll, ll_axis: EnergyAxis, fwhm_ev: float, tail_ev: float = 0.0,
                  psf_decay: float = 0.0, gain=1.0, readout=0.0, pad_ev: float = 128.0):
    """Fourier-ratio deconvolution of core-loss rows by their low-loss rows.

    S(f) = Z(f) J_k(f) conj(J_l(f)) I_l / (|J_l(f)|^2 + eps^2),   Z = ZLP(fwhm, tail) x PSF,
    eps^2 = g I_l + n rd^2 the white-noise power of J_l per frequency (a Wiener guard that acts
    only where the low loss's own noise dominates).  The core rows are extended by power laws
    (fitted to the first and last 64 channels) over ``pad_ev`` below (at most half the window's
    start energy) and 64 eV above, tapered to zero, so that the circular convolution neither
    wraps nor truncates.  The low loss is placed with 0 eV of its stored axis at lag 0, so the
    row's ZLP shift is removed along with the plural scattering.

    Noise: S = J_k (*) h with h = FT^-1[Z I_l / J_l] ~ e^(t/lambda) delta - (smooth terms): the noise
    spectrum is multiplied by |H(f)|^2, ~1 for structures broader than the plasmon (f -> 0) and
    ~exp(2 t/lambda) for the 1-10 eV structures the edge fits resolve.  ``factor`` is the mean
    |H(f)|^2 over 0.1-1 cycles/eV, the band of those structures: it scales the fit's per-channel
    variances (white-noise weights), so errors of edge shapes and peak positions are right and
    those of broad amplitudes somewhat conservative.  The low loss's own shot noise is not
    propagated: replacing it by its noise-free expectation changes no pull statistic of the
    default image by more than 0.05 (measured).

    Returns
    -------
    deconvolved : (rows, channels) on ``core_axis``
    factor : (rows,) variance inflation of a channel
    """
    core = np.asarray(core, dtype=float)
    ll, ll_axis = _resample(np.asarray(ll, dtype=float), ll_axis, core_axis.scale_ev)
    de = core_axis.scale_ev
    n_lo = int(round(min(pad_ev, 0.5 * max(core_axis.offset_ev, 0.0)) / de))
    n_hi = int(round(64.0 / de))
    n_fit = min(64, core.shape[1] // 4)
    padded = _power_law_pad(core, core_axis.energy_ev, n_lo, n_hi, n_fit)
    n = sfft.next_fast_len(padded.shape[1] + ll.shape[1] + 16, real=True)
    f = sfft.rfftfreq(n, d=de)
    # low loss: channel j at lag j + o (o = offset in channels), wrapped; the fractional part as a phase
    o = ll_axis.offset_ev / de
    o_int = int(np.floor(o))
    lag = (np.arange(ll.shape[1]) + o_int) % n
    kern = np.zeros((ll.shape[0], n))
    kern[:, lag] = ll
    jl = sfft.rfft(kern, axis=1) * np.exp(-2j * np.pi * f * (o - o_int) * de)[None, :]
    il = jl[:, :1].real
    eps2 = gain * np.abs(il) + ll.shape[1] * readout**2
    z = zlp_tf(f, fwhm_ev, tail_ev)
    k = psf_kernel(psf_decay)
    kk = np.zeros(n)
    kk[(np.arange(k.size) - k.size // 2) % n] = k
    kf = sfft.rfft(kk).real
    h = (z * kf)[None, :] * np.conj(jl) * il / (np.abs(jl) ** 2 + eps2)
    jk = sfft.rfft(padded, n=n, axis=1)
    out = sfft.irfft(jk * h, n=n, axis=1)[:, n_lo:n_lo + core.shape[1]]
    band = (f >= 0.1) & (f <= 1.0)
    factor = np.mean(np.abs(h[:, band]) ** 2, axis=1)
    return out, factor


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


def _detector(w, s):
    """Gain, readout noise and PSF decay of a window: the settings first, then the file's metadata."""
    md = w.metadata if isinstance(w.metadata, dict) else {}
    det = md.get("sreels", {}).get("detector", {}) if isinstance(md.get("sreels", {}), dict) else {}
    g = s.gain_counts_per_e or w.gain_counts_per_e or 1.0
    rd = s.readout_noise_counts if s.readout_noise_counts is not None else (w.readout_noise_counts or 0.0)
    decay = s.psf_decay if s.psf_decay is not None else det.get("psf_decay", 0.0)
    return float(g), float(rd), float(decay or 0.0)


def apply_low_loss(windows: dict, settings, deconvolve: bool = True):
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
    g, rd, decay = _detector(ll, settings)
    centre, imax = zlp_centre(counts, ll.energy)
    fwhm = zlp_fwhm(counts, ll.energy, imax)
    thr = elastic_threshold(counts, ll.energy, centre, fwhm)
    tl, tl_err = log_ratio_thickness(counts, thr, g, rd)
    cols = {"zlp_shift_ev": centre, "resolution_ev": fwhm, "t_over_lambda": tl, "t_over_lambda_err": tl_err}
    notes = [f"low-loss window {ll.source}: energy scale referenced to the ZLP maximum (median "
             f"{np.nanmedian(centre):+.3f} eV on the stored axis, distortion {np.nanmax(centre) - np.nanmin(centre):.3f} "
             f"eV peak-to-peak); resolution {np.nanmedian(fwhm):.2f} eV FWHM; t/lambda {np.nanmedian(tl):.2f} (median)"]
    out, scaled, logs = {}, [], []
    inst = settings.instrument()
    for k, w in windows.items():
        if k == LOWLOSS_NAME:
            continue
        if not deconvolve:
            out[k] = w
            continue
        gw, rdw, dw = _detector(w, settings)
        if w.energy.offset_ev < MIN_DECONVOLVE_EV:  # the plural source below it: the low loss itself
            if not (ll.energy.offset_ev < 0 and ll.energy.end_ev >= w.energy.offset_ev + 10.0):
                e_tl = np.exp(np.nan_to_num(tl, nan=0.0))  # Var(c J) = c^2 Var(J): the weights' model sees c J
                out[k] = dataclasses.replace(w, counts=w.counts * e_tl[:, None], variance_factor=e_tl)
                scaled.append(k)
                continue
            d, fac = fourier_log(w.counts, w.energy, counts, ll.energy, centre, ll.energy.energy_ev[thr],
                                 settings.resolution_fwhm_ev, inst.zlp_tail_ev, dw, ratio=_exposure_ratio(w, ll))
            logs.append(k)
        else:
            d, fac = fourier_ratio(w.counts, w.energy, counts, ll.energy, settings.resolution_fwhm_ev,
                                   inst.zlp_tail_ev, dw, g, rd)
        out[k] = dataclasses.replace(w, counts=d, variance_factor=fac)
    if scaled:
        notes.append(f"window(s) {', '.join(scaled)} start below {MIN_DECONVOLVE_EV:.0f} eV beyond the low-loss "
                     "window's reach: not deconvolved (what scatters into them comes from the plasmon region below), "
                     "scaled per row by I_t/I_0 = exp(t/lambda) instead (amplitudes per unscattered electron)")
    if logs:
        notes.append(f"window(s) {', '.join(logs)} start inside the low-loss range: single scattering by the "
                     "Fourier-log method on the low loss spliced below them (Egerton 2011, Sec. 4.2)")
    if deconvolve and len(out) > len(scaled) + len(logs):
        notes.append("core-loss windows Fourier-ratio deconvolved by each row's low loss (Egerton 2011, Sec. 4.3), "
                     f"reconvolved with a {settings.resolution_fwhm_ev:.2f} eV ZLP; channel variances x "
                     "exp(~2 t/lambda)")
    return out, cols, notes
