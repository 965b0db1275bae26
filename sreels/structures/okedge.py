"""Measuring the O-K threshold and the resonance peak "b" on one real spectrum.

Steps (all energies on the file's own axis, which may be offset by several eV):

1. **Coarse onset**: in ``search_ev`` (default 515-545 eV) the first local maximum
   of the derivative of the Gaussian-smoothed spectrum that reaches half of the
   largest derivative in that window.
2. **Background**: power law A E^-r fitted (lmfit, least squares) to the pre-edge
   window [onset - 20, onset - 2] eV and subtracted; the noise level is taken
   from the fit residuals.
3. **Threshold** E_th, three definitions (``THRESHOLDS``):
   ``"inflection"`` (default) the first local maximum of the derivative of the
   background-subtracted signal within [onset - 3, onset + 4] eV that reaches half
   of the largest derivative there (the onset inflection); ``"half_rise"`` the first energy where
   the signal reaches half of the first O-K maximum; ``"first_peak"`` the first
   O-K maximum (the pre-peak in transition-metal oxides).  Its error combines the
   spread over smoothing widths 0.5-1.5 eV and the channel width / sqrt(12).
4. **Peak "b"**: the largest maximum of the smoothed signal in
   [E_th + b_min_ev, E_th + b_max_ev] (default 18-45 eV, cut at ``max_ev`` to
   keep other edges out), then an lmfit Gaussian + linear model on +-``half_width_ev``
   around it; the centre error is lmfit's standard error rescaled by the reduced
   chi^2 (the noise of these files is not Poisson).

dE = E_b - E_th and its error hypot(s_Eb, s_Eth) are what the calibration uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..errors import SreelsInputError
from .spectra import Spectrum1D

THRESHOLDS = ("inflection", "half_rise", "first_peak")


@dataclass(frozen=True)
class OKMeasurement:
    """Result of :func:`measure_ok` (energies in eV on the file's axis)."""

    name: str
    threshold: str
    threshold_ev: float
    threshold_err_ev: float
    peak_b_ev: float
    peak_b_err_ev: float
    peak_b_fwhm_ev: float
    onset_coarse_ev: float
    background_r: float
    thresholds_ev: dict

    @property
    def delta_e_ev(self) -> float:
        return self.peak_b_ev - self.threshold_ev

    @property
    def delta_e_err_ev(self) -> float:
        return float(np.hypot(self.peak_b_err_ev, self.threshold_err_ev))

    def as_dict(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "threshold_ev": self.threshold_ev,
                "threshold_err_ev": self.threshold_err_ev, "peak_b_ev": self.peak_b_ev,
                "peak_b_err_ev": self.peak_b_err_ev, "peak_b_fwhm_ev": self.peak_b_fwhm_ev,
                "delta_e_ev": self.delta_e_ev, "delta_e_err_ev": self.delta_e_err_ev,
                "onset_coarse_ev": self.onset_coarse_ev, "background_r": self.background_r,
                "thresholds_ev": self.thresholds_ev}


def _smooth(y, de, sigma_ev):
    return gaussian_filter1d(y, max(sigma_ev / de, 0.5), mode="nearest")


def _coarse_onset(e, y, de, search_ev, name):
    m = (e >= search_ev[0]) & (e <= search_ev[1])
    if m.sum() < 8:
        raise SreelsInputError(
            f"{name}: no O-K edge in range: the spectrum covers {e[0]:.1f}-{e[-1]:.1f} eV, "
            f"the O-K onset is searched in {search_ev[0]:.0f}-{search_ev[1]:.0f} eV")
    d = np.gradient(_smooth(y, de, 1.0), e)
    dm, em = d[m], e[m]
    if dm.max() <= 0:
        raise SreelsInputError(f"{name}: no rising O-K edge found in {search_ev[0]:.0f}-{search_ev[1]:.0f} eV")
    thr = 0.5 * dm.max()
    for i in range(1, dm.size - 1):
        if dm[i] >= thr and dm[i] >= dm[i - 1] and dm[i] >= dm[i + 1]:
            return float(em[i])
    return float(em[np.argmax(dm)])


def _powerlaw_background(e, y, lo, hi, name):
    import lmfit

    m = (e >= lo) & (e <= hi) & (y > 0)
    if m.sum() < 6:
        raise SreelsInputError(
            f"{name}: pre-edge window {lo:.1f}-{hi:.1f} eV has too few channels for the power-law "
            f"background (spectrum starts at {e[0]:.1f} eV)")
    x, yy = e[m], y[m]
    slope, icpt = np.polyfit(np.log(x), np.log(yy), 1)
    p = lmfit.Parameters()
    p.add("A", value=np.exp(icpt))
    p.add("r", value=-slope)
    res = lmfit.minimize(lambda p: yy - p["A"].value * x ** (-p["r"].value), p)
    a, r = res.params["A"].value, res.params["r"].value
    return a * e ** (-r), float(r)


def _thresholds(e, s, de, onset, sigma_ev):
    ss = _smooth(s, de, sigma_ev)
    win = (e >= onset - 3) & (e <= onset + 4)
    d = np.gradient(ss, e)
    dw, ew = d[win], e[win]
    cand = [i for i in range(1, dw.size - 1)
            if dw[i] >= 0.5 * dw.max() and dw[i] >= dw[i - 1] and dw[i] >= dw[i + 1]]
    infl = float(ew[cand[0]] if cand else ew[np.argmax(dw)])
    # first maximum after the inflection, within 8 eV
    after = (e >= infl) & (e <= infl + 8)
    ea, sa = e[after], ss[after]
    ipk = next((i for i in range(1, sa.size - 1) if sa[i] >= sa[i - 1] and sa[i] >= sa[i + 1]), int(np.argmax(sa)))
    first_peak = float(ea[ipk])
    half = 0.5 * sa[ipk]
    rise = (e >= onset - 3) & (e <= first_peak)
    er, sr = e[rise], ss[rise]
    k = np.flatnonzero(sr >= half)
    if k.size and k[0] > 0:
        i = k[0]
        half_rise = float(er[i - 1] + (half - sr[i - 1]) * (er[i] - er[i - 1]) / (sr[i] - sr[i - 1]))
    else:
        half_rise = float(er[k[0]]) if k.size else infl
    return {"inflection": infl, "half_rise": half_rise, "first_peak": first_peak}


def measure_ok(spectrum: Spectrum1D, threshold: str = "inflection", search_ev=(515.0, 545.0),
               b_min_ev: float = 18.0, b_max_ev: float = 45.0, max_ev: float | None = None,
               half_width_ev: float = 8.0) -> OKMeasurement:
    """Measure the O-K threshold and peak "b" on ``spectrum`` (see module docstring).

    Raises
    ------
    SreelsInputError
        No O-K edge in range, unknown threshold definition, or no peak "b" window.
    """
    import lmfit

    if threshold not in THRESHOLDS:
        raise SreelsInputError(f"unknown threshold definition {threshold!r}; valid: {list(THRESHOLDS)}")
    e, y, name = np.asarray(spectrum.energy_ev, float), np.asarray(spectrum.counts, float), spectrum.name
    de = float(np.median(np.diff(e)))
    onset = _coarse_onset(e, y, de, search_ev, spectrum.source or name)
    bg, r_bg = _powerlaw_background(e, y, onset - 20.0, onset - 2.0, spectrum.source or name)
    s = y - bg
    runs = [_thresholds(e, s, de, onset, w) for w in (0.5, 1.0, 1.5)]
    ths = {k: float(np.median([t[k] for t in runs])) for k in THRESHOLDS}
    th_err = {k: float(np.hypot(np.ptp([t[k] for t in runs]) / 2, de / np.sqrt(12))) for k in THRESHOLDS}
    e_th = ths[threshold]

    hi = e_th + b_max_ev if max_ev is None else min(e_th + b_max_ev, max_ev)
    win = (e >= e_th + b_min_ev) & (e <= hi)
    if win.sum() < 5:
        raise SreelsInputError(
            f"{spectrum.source or name}: no peak-b window: {e_th + b_min_ev:.1f}-{hi:.1f} eV "
            f"is outside the spectrum ({e[0]:.1f}-{e[-1]:.1f} eV)")
    ss = _smooth(s, de, 1.5)
    ew, sw = e[win], ss[win]
    interior = [i for i in range(1, sw.size - 1) if sw[i] >= sw[i - 1] and sw[i] >= sw[i + 1]]
    i0 = max(interior, key=lambda i: sw[i]) if interior else int(np.argmax(sw))
    e0 = float(ew[i0])
    fw = (e >= e0 - half_width_ev) & (e <= e0 + half_width_ev)
    if max_ev is not None:
        fw &= e <= max_ev
    x, yy = e[fw], s[fw]
    model = lmfit.models.GaussianModel() + lmfit.models.LinearModel()
    pars = model.make_params(center=e0, sigma=3.0, amplitude=max(float(sw[i0]) * 3.0 * 2.5, 1e-12),
                             slope=0.0, intercept=float(np.min(yy)))
    pars["center"].set(min=e0 - half_width_ev, max=e0 + half_width_ev)
    pars["sigma"].set(min=0.5, max=12.0)
    fit = model.fit(yy, pars, x=x)
    c = fit.params["center"]
    cerr = c.stderr if c.stderr is not None and np.isfinite(c.stderr) else half_width_ev / 2
    # lmfit's default scale_covar=True already rescales by reduced chi^2 (unknown noise level)
    cerr = float(np.hypot(cerr, de / np.sqrt(12)))
    return OKMeasurement(
        name=name, threshold=threshold, threshold_ev=e_th, threshold_err_ev=th_err[threshold],
        peak_b_ev=float(c.value), peak_b_err_ev=cerr, peak_b_fwhm_ev=float(fit.params["fwhm"].value),
        onset_coarse_ev=onset, background_r=r_bg, thresholds_ev=ths)
