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
    """Measure the O-K threshold and peak "b" of one spectrum with the fast path's own
    measurement (:func:`sreels.inference.okpeaks.measure_o_k`), so that ``calibrate`` and
    ``fit`` read dE_b the same way.  A non-uniform energy axis is resampled linearly onto
    its median step.  The noise level is measured from the data (the files' gains are unknown).

    Raises
    ------
    SreelsInputError
        No O-K edge in range, unknown threshold definition, or no peak "b" window.
    """
    from ..axes import EnergyAxis
    from ..inference.okpeaks import measure_o_k

    if threshold not in THRESHOLDS:
        raise SreelsInputError(f"unknown threshold definition {threshold!r}; valid: {list(THRESHOLDS)}")
    e, y, name = np.asarray(spectrum.energy_ev, float), np.asarray(spectrum.counts, float), spectrum.name
    de = float(np.median(np.diff(e)))
    axis = EnergyAxis(float(e[0]), de, int(round((e[-1] - e[0]) / de)) + 1)
    grid = axis.energy_ev
    if grid.size != e.size or not np.allclose(grid, e, atol=1e-3 * de):
        y = np.interp(grid, e, y)
    m = measure_o_k(axis, y[None, :], None, resolution_fwhm_ev, gain_known=False, max_ev=max_ev,
                    where=spectrum.source or name)
    if m.flags["no_o"][0]:
        raise SreelsInputError(f"{spectrum.source or name}: no significant O-K edge (signal-to-noise "
                               f"{m.jump_snr[0]:.1f} over 20 eV above the onset; expected > 5)")
    if not np.isfinite(m.peak_b_ev[0]):
        why = [k for k, v in m.flags.items() if v[0]]
        raise SreelsInputError(f"{spectrum.source or name}: no peak b found ({', '.join(why)}; search cut at "
                               f"{m.cut_ev:.1f} eV{' by ' + ', '.join(m.other_edges) if m.other_edges else ''})")
    return OKMeasurement(
        name=name, threshold=threshold, threshold_ev=float(m.threshold_ev[0]),
        threshold_err_ev=float(m.threshold_err_ev[0]), peak_b_ev=float(m.peak_b_ev[0]),
        peak_b_err_ev=float(m.peak_b_err_ev[0]), peak_b_fwhm_ev=float(m.peak_b_fwhm_ev[0]),
        onset_coarse_ev=m.onset_coarse_ev, background_r=float(m.background_r[0]),
        thresholds_ev={threshold: float(m.threshold_ev[0])})
