"""Physical profiles along the slit from a :class:`~sreels.config.Scenario`.

All functions are pure and vectorised over rows.  y = 0 is the Pt / electrode
interface; rows with y < 0 lie in the Pt collector (no Li, Ti or O).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erfc, expit

from ..axes import PositionAxis
from ..config import Scenario
from ..errors import SreelsInputError
from ..ranges import read_profile_table
from ..structures.mapping import MODELS, r_oo_nm_from_li
from ..structures.resonance import energy_b_from_r

# erfc argument at which the Li step has fallen to 2.3 % of its height: the
# electrode edge is defined as y_mid + 2 sigma (the "2 sigma" point of the step).
_EDGE_SIGMAS = 2.0


@dataclass(frozen=True)
class Profiles:
    """Per-row truth, each an array of shape (rows,).

    li_rel        Li concentration in the Li-hosting phase, parent electrolyte = 1
    host_fraction share of the row's projected volume that is LASGTP (1 - AlPO4; 0 in Pt)
    li_areal_rel  Li atoms per area relative to the parent at the reference thickness
                  (= li_rel * host_fraction * thickness / scenario thickness): what a
                  raw Li-K integral measures
    ti3_fraction  Ti3+ / (Ti3+ + Ti4+)
    r_oo_nm       mean O-O distance (nm)
    peak_a_ev, peak_a_rel   O-K peak "a" position (eV) and relative intensity
    peak_b_ev     O-K resonance peak "b" position, 529.0 + C / R^2 (eV)
    thickness_nm  specimen thickness (nm)
    in_pt         True in the Pt collector
    """

    y_nm: np.ndarray
    li_rel: np.ndarray
    host_fraction: np.ndarray
    li_areal_rel: np.ndarray
    ti3_fraction: np.ndarray
    r_oo_nm: np.ndarray
    peak_a_ev: np.ndarray
    peak_a_rel: np.ndarray
    peak_b_ev: np.ndarray
    thickness_nm: np.ndarray
    in_pt: np.ndarray

    def as_columns(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def position_axis(sc: Scenario) -> PositionAxis:
    return PositionAxis(sc.first_row_nm, sc.row_nm, sc.rows)


def li_step(y_nm, electrode_width_nm, rise_nm):
    """Normalised Li excess g(y): 1 at y = 0, 0.023/g0 at the electrode edge, -> 0 beyond.

    g(y) = erfc((y - y_mid) / (sqrt(2) sigma)) / erfc(-y_mid / (sqrt(2) sigma)),
    y_mid = W - 2 sigma.
    """
    y_mid = electrode_width_nm - _EDGE_SIGMAS * rise_nm
    s = np.sqrt(2.0) * rise_nm
    return erfc((np.asarray(y_nm) - y_mid) / s) / erfc(-y_mid / s)


def ti3_fraction(sc: Scenario, y_nm, li_rel):
    """Ti3+ fraction: logistic in c_Li ("threshold") or an erfc step in y ("position")."""
    if sc.ti3_mode == "threshold":
        return expit((li_rel - sc.ti3_li_threshold_rel) / sc.ti3_li_width_rel)
    return 0.5 * erfc((np.asarray(y_nm) - sc.ti3_boundary_nm) / (np.sqrt(2.0) * sc.ti3_width_nm))


def electrode_membership(li_rel):
    """0 in the parent, -> 1 where Li has risen: 1 - exp(-(c - 1) / 0.5), clipped at 0.

    Peak "a" starts to shift where the Li concentration increases (Yamamoto 2014, Sec. 3.3).
    """
    return np.clip(1.0 - np.exp(-(np.asarray(li_rel) - 1.0) / 0.5), 0.0, 1.0)


def alpo4_fraction(sc: Scenario, y_nm):
    y = np.asarray(y_nm, dtype=float)
    f = np.zeros_like(y)
    for g in sc.grains:  # a handful of grains: a loop over grains, not rows
        sig = g.width_nm / 2.3548
        f = 1.0 - (1.0 - f) * (1.0 - g.fraction * np.exp(-0.5 * ((y - g.center_nm) / sig) ** 2))
    return f


def _table(sc: Scenario, y):
    data = read_profile_table(sc.profile_table)  # checked column by column
    if "y_nm" not in data or "li_rel" not in data:
        raise SreelsInputError(f"profile table {sc.profile_table} needs columns y_nm and li_rel, "
                               f"has {list(data)}")
    ty = data["y_nm"]
    if np.any(np.diff(ty) <= 0):
        i = int(np.argmax(np.diff(ty) <= 0))
        raise SreelsInputError(f"profile table {sc.profile_table}: y_nm must increase strictly, but row "
                               f"{i + 2} has {ty[i + 1]} after {ty[i]}")
    inside = y[y >= 0]
    if inside.size and (inside.min() < ty[0] or inside.max() > ty[-1]):
        raise SreelsInputError(f"profile table {sc.profile_table} covers y = {ty[0]}..{ty[-1]} nm but the "
                               f"image covers {max(inside.min(), 0):.1f}..{inside.max():.1f} nm")
    out = {}
    for k, v in data.items():
        if k == "y_nm":
            continue
        if not np.all(np.isfinite(v)):
            raise SreelsInputError(f"profile table {sc.profile_table}: column {k} has non-finite values")
        out[k] = np.interp(y, ty, v)
    if np.any(out["li_rel"] < 0):
        raise SreelsInputError(f"profile table {sc.profile_table}: li_rel must be >= 0")
    if "ti3_fraction" in out and (np.any(out["ti3_fraction"] < 0) or np.any(out["ti3_fraction"] > 1)):
        raise SreelsInputError(f"profile table {sc.profile_table}: ti3_fraction must lie in [0, 1]")
    return out


def build_profiles(sc: Scenario) -> Profiles:
    """Evaluate every profile on the row centres."""
    if sc.r_oo_model not in MODELS:
        raise SreelsInputError(f"Scenario.r_oo_model = {sc.r_oo_model!r}: expected one of {MODELS}")
    y = position_axis(sc).y_nm
    in_pt = y < 0
    table = _table(sc, y) if sc.profile_table else {}
    li = table.get("li_rel", 1.0 + (sc.li_max_rel - 1.0) * li_step(y, sc.electrode_width_nm, sc.li_rise_nm))
    thickness = table.get("thickness_nm", sc.thickness_nm * (1.0 + sc.thickness_slope_per_um * y * 1e-3))
    if np.any(thickness <= 0):
        raise SreelsInputError("thickness must stay > 0 nm on every row")
    f3 = table.get("ti3_fraction", ti3_fraction(sc, y, li))
    if "r_oo_nm" in table:
        r = table["r_oo_nm"]
    elif sc.r_oo_model == "linear":
        r = r_oo_nm_from_li(li, model="linear", r_parent_nm=sc.r_oo_parent_nm, li_max_rel=8.5,
                            r_max_nm=sc.r_oo_parent_nm + 7.5 * sc.r_oo_slope_nm)
    else:
        r = r_oo_nm_from_li(li, model=sc.r_oo_model)
    host = 1.0 - table.get("alpo4_fraction", alpo4_fraction(sc, y))
    member = electrode_membership(li)
    a_shift = sc.peak_a_shift_electrode_ev * member * (1 - f3) + sc.peak_a_shift_ti3_ev * f3
    a_rel = 1.0 + sc.peak_a_gain_electrode * member * (1 - f3) + sc.peak_a_gain_ti3 * f3
    nan = np.where(in_pt, np.nan, 1.0)
    zero = np.where(in_pt, 0.0, 1.0)
    li = li * zero
    host = host * zero
    r = np.asarray(r, dtype=float) * nan
    return Profiles(
        y_nm=y, li_rel=li, host_fraction=host,
        li_areal_rel=li * host * thickness / sc.thickness_nm,
        ti3_fraction=f3 * zero, r_oo_nm=r,
        peak_a_ev=(sc.peak_a_ev + a_shift) * nan, peak_a_rel=a_rel * zero,
        peak_b_ev=np.where(in_pt, np.nan, energy_b_from_r(np.where(in_pt, 1.0, r))),
        thickness_nm=thickness, in_pt=in_pt,
    )
