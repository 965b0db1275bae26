"""Measuring the O-K threshold and the resonance peak "b" on one real spectrum for the
calibration, by the same measurement as the fast path (:mod:`sreels.inference.okpeaks`,
whose docstring states the definitions): the threshold is the inflection of the leading
edge at 1.5 eV effective resolution, peak "b" the dominant resonance 18-45 eV above it.
dE = E_b - E_th and its error hypot(s_Eb, s_Eth) are what the calibration uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SreelsInputError
from .spectra import Spectrum1D

#: The one threshold definition (kept as a tuple for the command line and reports).
THRESHOLDS = ("inflection",)


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


def measure_ok(spectrum: Spectrum1D, threshold: str = "inflection", max_ev: float | None = None,
               resolution_fwhm_ev: float = 0.5) -> OKMeasurement:
    """Measure the O-K threshold and peak "b" of one spectrum by the fast path itself
    (:func:`sreels.inference.fast.fit_image` on the spectrum as a one-row image: a Ti-L2,3
    edge in the spectrum is fitted and its contribution under O-K removed, as ``fit`` does),
    so that ``calibrate`` and ``fit`` read dE_b the same way.  A non-uniform energy axis is
    resampled linearly onto its median step; the noise level is measured from the data.

    Raises
    ------
    SreelsInputError
        No O-K edge in range, unknown threshold definition, or no peak "b".
    """
    import warnings

    from ..axes import EnergyAxis, PositionAxis
    from ..inference.fast import FitSettings, fit_image
    from ..inference.load import WindowData

    if threshold not in THRESHOLDS:
        raise SreelsInputError(f"unknown threshold definition {threshold!r}; valid: {list(THRESHOLDS)}")
    e, y, name = np.asarray(spectrum.energy_ev, float), np.asarray(spectrum.counts, float), spectrum.name
    where = spectrum.source or name
    de = float(np.median(np.diff(e)))
    axis = EnergyAxis(float(e[0]), de, int(round((e[-1] - e[0]) / de)) + 1)
    grid = axis.energy_ev
    if grid.size != e.size or not np.allclose(grid, e, atol=1e-3 * de):
        y = np.interp(grid, e, y)
    if not axis.contains(520.0, 560.0):
        raise SreelsInputError(f"{where}: no O-K edge in range: the spectrum covers {e[0]:.1f}-{e[-1]:.1f} eV, "
                               "expected 520-560 eV")
    w = WindowData("high", axis, y[None, :], PositionAxis(0.0, 1.0, 1), where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_image({"high": w}, FitSettings(resolution_fwhm_ev=resolution_fwhm_ev, o_max_ev=max_ev),
                        progress=False)
    c = {k: float(v[0]) for k, v in res.columns.items() if np.asarray(v).dtype.kind == "f"}
    flags = str(res.status[0])
    if "no_o" in flags.split("|"):
        raise SreelsInputError(f"{where}: no significant O-K edge (signal-to-noise {c['o_jump_snr']:.1f} over "
                               "20 eV above the onset; expected > 5)")
    if not np.isfinite(c["delta_e_b_ev"]):
        cut = next((n for n in res.notes if "peak-b search cut" in n), "")
        raise SreelsInputError(f"{where}: no peak b found ({flags}){'; ' + cut if cut else ''}")
    off = c["energy_offset_ev"]
    return OKMeasurement(
        name=name, threshold=threshold, threshold_ev=c["o_threshold_ev"] + off, threshold_err_ev=c["o_threshold_ev_err"],
        peak_b_ev=c["peak_b_ev"] + off, peak_b_err_ev=float(np.sqrt(max(c["delta_e_b_ev_err"] ** 2
                                                                        - c["o_threshold_ev_err"] ** 2, 0.0))),
        peak_b_fwhm_ev=c.get("peak_b_fwhm_ev", float("nan")), onset_coarse_ev=c["o_threshold_ev"] + off,
        background_r=c.get("o_background_r", float("nan")), thresholds_ev={threshold: c["o_threshold_ev"] + off})
