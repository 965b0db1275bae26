"""Parameters of the joint model and the row profiles they imply (vectorised over walkers).

The physical parameters carry the names of the :class:`~sreels.config.Scenario` fields
they stand for, so a scenario is a point in parameter space and the forward model's
profile formulas (:mod:`sreels.forward.profiles`) are reused, not re-derived:

c_Li(y)   = 1 + (li_max_rel - 1) g(y; electrode_width_nm, li_rise_nm)        (erfc step)
f3(y)     = expit((c_Li - ti3_li_threshold_rel) / ti3_li_width_rel)    ("threshold", the study's claim)
          = erfc((y - ti3_boundary_nm) / (sqrt 2 ti3_width_nm)) / 2     ("position")
R_OO(y)   = r_oo_parent_nm + r_oo_slope_nm (c_Li - 1)                     (linear law, Yamamoto 2014 Fig. 6b)
E_b(y)    = 529.0 eV + C / R_OO^2,  C = 2.820 eV nm^2                     (Yamamoto 2014, Eq. 1)
E_a(y), a_rel(y): peak "a" shifts and gains in the Ti4+ electrode and the Ti3+ region.

Nuisance parameters shared by all rows: ``drift_ev`` (global energy shift), ``bow_ev``
(peak-to-peak bow of the zero-loss line, the shape of
:func:`sreels.forward.instrument.energy_distortion`), ``resolution_fwhm_ev``,
``background_r_<window>`` (power-law exponent per window) and ``edge_scale_<window>``
(edge intensity of a window relative to the reference window, which holds Ti-L2,3).
Per-row amplitudes (background level, host and AlPO4 amounts) are not parameters:
:mod:`.likelihood` marginalises them analytically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfc, expit

from ...config import Instrument, Scenario
from ...forward.instrument import energy_distortion
from ...forward.profiles import electrode_membership, li_step
from ...structures.resonance import energy_b_from_r

#: Physical parameters per Ti3+ mode, in order (names = Scenario fields).
PHYSICAL = {
    "threshold": ("electrode_width_nm", "li_max_rel", "li_rise_nm", "ti3_li_threshold_rel",
                  "ti3_li_width_rel", "r_oo_parent_nm", "r_oo_slope_nm", "peak_a_ev",
                  "peak_a_shift_electrode_ev", "peak_a_shift_ti3_ev", "peak_a_gain_electrode",
                  "peak_a_gain_ti3"),
    "position": ("electrode_width_nm", "li_max_rel", "li_rise_nm", "ti3_boundary_nm", "ti3_width_nm",
                 "r_oo_parent_nm", "r_oo_slope_nm", "peak_a_ev", "peak_a_shift_electrode_ev",
                 "peak_a_shift_ti3_ev", "peak_a_gain_electrode", "peak_a_gain_ti3"),
}

#: Derived numbers (the fast path's summary keys, issue 4).
DERIVED = ("electrode_width_nm", "ti_boundary_nm", "li_max_rel", "li_at_ti_boundary_rel",
           "r_oo_parent_nm", "r_oo_max_nm", "r_oo_change_nm")


@dataclass(frozen=True)
class ParameterSet:
    """Names of the sampled parameters and of those held fixed, with their fixed values.

    Attributes
    ----------
    names : tuple of str
        Free parameters in sampling order.
    fixed : dict
        Parameters held at a value (name -> value).
    ti3_mode : {"threshold", "position"}
    windows : tuple of str
        Window names; ``reference`` is the one whose edge scale is 1.
    reference : str
    """

    names: tuple
    fixed: dict
    ti3_mode: str
    windows: tuple
    reference: str

    @property
    def all_names(self) -> tuple:
        return self.names + tuple(self.fixed)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def as_dict(self, theta) -> dict:
        """(B, P) or (P,) array -> {name: (B,) or scalar}, fixed values broadcast."""
        theta = np.asarray(theta, dtype=float)
        out = {n: theta[..., i] for i, n in enumerate(self.names)}
        shape = theta.shape[:-1]
        for n, v in self.fixed.items():
            out[n] = np.full(shape, float(v)) if shape else float(v)
        return out


def reference_window(instrument: Instrument) -> str:
    """The first window with Ti-L2,3 (else the first window): its edge scale is fixed at 1."""
    for w in instrument.windows:
        if "Ti-L23" in w.edges:
            return w.name
    return instrument.windows[0].name


def nuisance_names(instrument: Instrument) -> tuple:
    ref = reference_window(instrument)
    names = ["drift_ev", "bow_ev", "resolution_fwhm_ev"]
    names += [f"background_r_{w.name}" for w in instrument.windows]
    names += [f"edge_scale_{w.name}" for w in instrument.windows if w.name != ref]
    return tuple(names)


def default_values(scenario: Scenario, instrument: Instrument) -> dict:
    """Every parameter's value in a scenario + instrument (the truth of a simulation)."""
    v = {n: float(getattr(scenario, n)) for n in set(PHYSICAL["threshold"]) | set(PHYSICAL["position"])}
    v.update(drift_ev=instrument.drift_ev, bow_ev=instrument.energy_distortion_ev,
             resolution_fwhm_ev=instrument.resolution_fwhm_ev)
    for w in instrument.windows:
        v[f"background_r_{w.name}"] = w.background_r
        v[f"edge_scale_{w.name}"] = 1.0
    return v


def make_parameter_set(instrument: Instrument, ti3_mode: str = "threshold", fixed: dict | None = None
                       ) -> ParameterSet:
    """All physical + nuisance parameters, minus those in ``fixed``."""
    from ...errors import SreelsInputError

    if ti3_mode not in PHYSICAL:
        raise SreelsInputError(f"ti3_mode = {ti3_mode!r}: expected one of {list(PHYSICAL)}")
    everything = PHYSICAL[ti3_mode] + nuisance_names(instrument)
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(everything)
    if unknown:
        raise SreelsInputError(f"cannot fix unknown parameter(s) {sorted(unknown)}; known: {list(everything)}")
    names = tuple(n for n in everything if n not in fixed)
    return ParameterSet(names, fixed, ti3_mode, tuple(w.name for w in instrument.windows),
                        reference_window(instrument))


# ------------------------------------------------------------------- profiles
def li_profile(p: dict, y_nm) -> np.ndarray:
    """c_Li(y), shape (B, rows) for (B,) parameters."""
    w = np.asarray(p["electrode_width_nm"])[..., None]
    s = np.asarray(p["li_rise_nm"])[..., None]
    return 1.0 + (np.asarray(p["li_max_rel"])[..., None] - 1.0) * li_step(y_nm, w, s)


def ti3_profile(p: dict, mode: str, y_nm, li) -> np.ndarray:
    if mode == "threshold":
        return expit((li - np.asarray(p["ti3_li_threshold_rel"])[..., None])
                     / np.asarray(p["ti3_li_width_rel"])[..., None])
    b = np.asarray(p["ti3_boundary_nm"])[..., None]
    return 0.5 * erfc((y_nm - b) / (np.sqrt(2.0) * np.asarray(p["ti3_width_nm"])[..., None]))


def row_profiles(p: dict, mode: str, y_nm) -> dict:
    """Profiles of every row (Pt rows included: the formulas are continued into the
    collector, where the marginalised host amount is zero), each (B, rows).

    Returns li_rel, ti3_fraction, r_oo_nm, peak_a_ev, peak_a_rel, peak_b_ev, shift_ev.
    """
    y = np.asarray(y_nm, dtype=float)
    li = li_profile(p, y)
    f3 = ti3_profile(p, mode, y, li)
    r = np.asarray(p["r_oo_parent_nm"])[..., None] + np.asarray(p["r_oo_slope_nm"])[..., None] * (li - 1.0)
    member = electrode_membership(li)
    g = lambda k: np.asarray(p[k])[..., None]  # noqa: E731
    a_shift = g("peak_a_shift_electrode_ev") * member * (1 - f3) + g("peak_a_shift_ti3_ev") * f3
    a_rel = 1.0 + g("peak_a_gain_electrode") * member * (1 - f3) + g("peak_a_gain_ti3") * f3
    shape = energy_distortion(y, 1.0, 0.0)  # bow of unit peak-to-peak
    shift = g("drift_ev") + g("bow_ev") * shape
    with np.errstate(divide="ignore", invalid="ignore"):
        pb = energy_b_from_r(np.where(r > 0, r, np.nan))
    return {"li_rel": li, "ti3_fraction": f3, "r_oo_nm": r, "peak_a_ev": g("peak_a_ev") + a_shift,
            "peak_a_rel": a_rel, "peak_b_ev": pb, "shift_ev": shift * np.ones_like(li)}


def derived(p: dict, mode: str, y_nm=None) -> dict:
    """The study's derived numbers from parameters (vectorised; each (B,)).

    ti_boundary_nm is where f3 = 1/2: in "threshold" mode where c_Li(y) equals the
    threshold, found by inverting the erfc step analytically; c_Li there is the threshold.
    r_oo_max_nm is R_OO at the maximum c_Li (y = 0); r_oo_change_nm = r_oo_max_nm - r_oo_parent_nm.
    """
    from scipy.special import erfcinv

    lmax = np.asarray(p["li_max_rel"], dtype=float)
    w = np.asarray(p["electrode_width_nm"], dtype=float)
    s = np.asarray(p["li_rise_nm"], dtype=float)
    y_mid = w - 2.0 * s
    if mode == "threshold":
        thr = np.asarray(p["ti3_li_threshold_rel"], dtype=float)
        g0 = erfc(-y_mid / (np.sqrt(2.0) * s))
        with np.errstate(divide="ignore", invalid="ignore"):
            gb = (thr - 1.0) / (lmax - 1.0)
            arg = np.where((gb > 0) & (gb < 1), gb * g0, np.nan)
            yb = y_mid + np.sqrt(2.0) * s * erfcinv(arg)
        li_b = thr
    else:
        yb = np.asarray(p["ti3_boundary_nm"], dtype=float)
        li_b = 1.0 + (lmax - 1.0) * li_step(yb, w, s)
    r0 = np.asarray(p["r_oo_parent_nm"], dtype=float)
    return {"electrode_width_nm": w, "ti_boundary_nm": yb, "li_max_rel": lmax,
            "li_at_ti_boundary_rel": li_b, "r_oo_parent_nm": r0,
            "r_oo_max_nm": r0 + np.asarray(p["r_oo_slope_nm"], dtype=float) * (lmax - 1.0),
            "r_oo_change_nm": np.asarray(p["r_oo_slope_nm"], dtype=float) * (lmax - 1.0)}
