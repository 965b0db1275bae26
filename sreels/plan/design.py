"""A design of the experiment and the changes ``sreels plan --vary`` makes to it.

A design is what the simulator and the fits are given: a :class:`~sreels.config.Scenario`,
an :class:`~sreels.config.Instrument` and a :class:`~sreels.config.Detector`.  Row binning
is binning on the chip: ``n`` rows of ``row_nm`` become one row of ``n row_nm`` that
receives ``n`` times the electrons per second and is read out once (one readout noise).
A new dispersion keeps every window's energy range (the channel count changes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import Detector, Instrument, Scenario
from ..errors import SreelsInputError


@dataclass(frozen=True)
class Design:
    scenario: Scenario
    instrument: Instrument
    detector: Detector

    def exposures_s(self) -> dict:
        """Exposure (s) of every core-loss window, and of the low-loss window (``lowloss``) if recorded."""
        out = {w.name: w.exposure_s for w in self.instrument.windows}
        if self.instrument.lowloss_window:
            out["lowloss"] = self.instrument.lowloss_exposure_s
        return out


def scale_exposures(d: Design, factors, lowloss: float | None = None) -> Design:
    """Every window's exposure times its factor (a scalar or one per window); the low-loss window's (DualEELS)
    times ``lowloss``, by default the factor itself when it is a scalar (a dose factor: every exposure, so the
    ratio core loss / low loss, which sets the Li-K multiple-scattering tail's noise, is kept) and 1 for one
    factor per window (a split of the core-loss time)."""
    scalar = np.ndim(factors) == 0
    f = np.broadcast_to(np.asarray(factors, float), (len(d.instrument.windows),))
    wins = tuple(dataclasses.replace(w, exposure_s=float(w.exposure_s * k)) for w, k in zip(d.instrument.windows, f))
    ll = (float(factors) if scalar else 1.0) if lowloss is None else float(lowloss)
    inst = dataclasses.replace(d.instrument, windows=wins, lowloss_exposure_s=float(d.instrument.lowloss_exposure_s * ll))
    return dataclasses.replace(d, instrument=inst)


def scale_dose(d: Design, factor: float) -> Design:
    """``sreels plan``'s dose factor: every core-loss window's exposure times ``factor``, the low-loss window's kept.
    The low loss's exposure is set by its zero-loss peak's counts (just short of saturation), not by the dose budget:
    its dose is 7e-5 of the total on the default DualEELS design.  Scaled with the core loss it would leave the
    Li-K window's multiple-scattering tail, the low loss's noise times the exposure ratio, larger than the core
    loss's own noise at low dose (at x0.005: a whitened variance above 1 in 330 directions of the Li-K window,
    against 30 at the design's dose; measured)."""
    return scale_exposures(d, factor, lowloss=1.0)


def bin_rows(d: Design, n: int) -> Design:
    """On-chip binning of ``n`` rows (the image keeps its extent; an incomplete last group dropped)."""
    n = int(n)
    if n < 1:
        raise SreelsInputError(f"bin_rows = {n}: expected an integer >= 1")
    if n == 1:
        return d
    sc = d.scenario
    rows = sc.rows // n
    if rows < 8:
        raise SreelsInputError(f"bin_rows = {n} leaves {rows} rows of the scenario's {sc.rows}; expected >= 8")
    first = sc.first_row_nm + 0.5 * (n - 1) * sc.row_nm
    sc = dataclasses.replace(sc, rows=rows, row_nm=sc.row_nm * n, first_row_nm=first)
    inst = dataclasses.replace(d.instrument, dose_e_per_row_s=d.instrument.dose_e_per_row_s * n)
    return Design(sc, inst, d.detector)


def set_dispersion(d: Design, scale_ev: float) -> Design:
    """Every window (and the low-loss window) at ``scale_ev`` eV per channel over the same energy range."""
    if not scale_ev > 0:
        raise SreelsInputError(f"dispersion_ev = {scale_ev}: expected > 0")
    wins = tuple(dataclasses.replace(w, scale_ev=float(scale_ev),
                                     channels=int(round((w.channels - 1) * w.scale_ev / scale_ev)) + 1)
                 for w in d.instrument.windows)
    ref = d.instrument.windows[0].scale_ev
    inst = dataclasses.replace(d.instrument, windows=wins,
                               lowloss_channels=int(round(d.instrument.lowloss_channels * ref / scale_ev)))
    return dataclasses.replace(d, instrument=inst)


def set_exposure_split(d: Design, share: float) -> Design:
    """The first window gets ``share`` of the total exposure time; the others keep their ratios."""
    wins = d.instrument.windows
    if len(wins) < 2:
        raise SreelsInputError("exposure_split needs at least two energy windows")
    if not 0 < share < 1:
        raise SreelsInputError(f"exposure_split = {share}: expected a share of the total time in (0, 1)")
    total = sum(w.exposure_s for w in wins)
    rest = total - wins[0].exposure_s
    f = [share * total / wins[0].exposure_s] + [(1 - share) * total / rest] * (len(wins) - 1)
    return scale_exposures(d, f)


def exposure_share(d: Design) -> float:
    wins = d.instrument.windows
    return wins[0].exposure_s / sum(w.exposure_s for w in wins)


#: --vary keys: (what it changes, unit, integer-valued, is it "cheap" (no model rebuild))
VARY = {
    "dose": ("every core-loss window's exposure times this factor (the low loss's kept)", "x", False, True),
    "exposure_split": ("share of the total exposure time given to the first (low-energy) window", "", False, True),
    "dispersion_ev": ("energy per channel, every window (same energy range)", "eV/channel", False, False),
    "resolution_fwhm_ev": ("energy resolution (ZLP FWHM)", "eV", False, False),
    "bin_rows": ("rows binned on the chip", "rows", True, False),
    "thickness_nm": ("lamella thickness", "nm", False, False),
    "gain_counts_per_e": ("detector conversion gain", "counts/e", False, True),
    "readout_noise_counts": ("detector readout noise", "counts", False, True),
}


def apply(d: Design, key: str, value: float) -> Design:
    """``d`` with one ``--vary`` key set to ``value``."""
    if key == "dose":
        return scale_dose(d, value)
    if key == "exposure_split":
        return set_exposure_split(d, value)
    if key == "dispersion_ev":
        return set_dispersion(d, value)
    if key == "resolution_fwhm_ev":
        return dataclasses.replace(d, instrument=dataclasses.replace(d.instrument, resolution_fwhm_ev=float(value)))
    if key == "bin_rows":
        return bin_rows(d, int(round(value)))
    if key == "thickness_nm":
        return dataclasses.replace(d, scenario=dataclasses.replace(d.scenario, thickness_nm=float(value)))
    if key in ("gain_counts_per_e", "readout_noise_counts"):
        return dataclasses.replace(d, detector=dataclasses.replace(d.detector, **{key: float(value)}))
    raise SreelsInputError(f"--vary {key!r}: unknown key; accepted: {', '.join(VARY)}")


def base_value(d: Design, key: str) -> float:
    """The design's own value of a ``--vary`` key."""
    return {"dose": 1.0, "exposure_split": exposure_share(d) if len(d.instrument.windows) > 1 else np.nan,
            "dispersion_ev": d.instrument.windows[0].scale_ev, "resolution_fwhm_ev": d.instrument.resolution_fwhm_ev,
            "bin_rows": 1.0, "thickness_nm": d.scenario.thickness_nm,
            "gain_counts_per_e": d.detector.gain_counts_per_e,
            "readout_noise_counts": d.detector.readout_noise_counts}[key]
