"""The study's structural comparison, made row by row.

Yamamoto et al. (2014, Sect. 3.3) measured R_OO from peak "b" (dE R^2 = C), found it rising by
~30 pm from the parent (0.280 nm) into the electrode, compared that with the 17 pm between
LiTi2(PO4)3 and Li3Ti2(PO4)3 and concluded that "Li ions with much more than three times higher
concentration" entered the electrode.  Here the two sides are put on one axis, Li per formula
unit:

* **measured**: R_OO per row from dE R^2 = C (``r_oo_nm``, ``r_oo_nm_err``);
* **predicted**: R_OO from the computed Li(1+x)Ti2(PO4)3 series (:mod:`.nasicon`) at the row's
  measured Li per formula unit (``li_per_fu``, x = li_per_fu - 1), anchored at the measured
  parent: R_pred = R_parent + [R_s(x_row) - R_s(x_parent)], so the constant offset between the
  ΔE R² scale and the octahedral edge cancels and only the expansion is compared.

Its error combines the parent's mean, the expansion's model error (:func:`.nasicon.expansion`)
and the Li per formula unit error (statistical, cross sections and composition) through the
slope dR/dx.  :func:`verdict` gives the Li per formula unit that the maximum measured expansion
needs according to the structures, next to the Li per formula unit measured there.

Which Li per formula unit (``route``): ``"ti"`` (default) the Li-K / Ti-L2,3 ratio (``li_per_fu``,
cross sections 22 % and the parent's Ti per formula unit 9 %), or ``"o"`` the Li-K / O-K ratio
(``li_per_fu_o``, cross sections 14 %, no composition term, rows with a second O phase withheld);
the text says which.  The validation (``validation/15_structures_li_per_fu.py``) shows both.
"""

from __future__ import annotations

import numpy as np

from . import nasicon


def _weighted_mean(v, e):
    ok = np.isfinite(v) & np.isfinite(e) & (e > 0)
    if not ok.any():
        return np.nan, np.nan
    w = 1.0 / e[ok] ** 2
    return float(np.sum(w * v[ok]) / w.sum()), float(1.0 / np.sqrt(w.sum()))


ROUTES = {"ti": "Li-K / Ti-L2,3", "o": "Li-K / O-K"}


def route_columns(cols, route: str = "ti") -> dict:
    """``cols`` with ``li_per_fu`` and its errors taken from the chosen route (``"o"``: ``li_per_fu_o``,
    ``li_per_fu_o_err``, ``li_per_fu_o_xs_err`` and no composition error)."""
    if route not in ROUTES:
        raise ValueError(f"route {route!r}: expected one of {sorted(ROUTES)}")
    if route == "ti":
        return cols
    out = dict(cols)
    v = np.asarray(cols["li_per_fu_o"], float)
    out.update({"li_per_fu": v, "li_per_fu_err": np.asarray(cols["li_per_fu_o_err"], float),
                "li_per_fu_xs_err": np.asarray(cols["li_per_fu_o_xs_err"], float), "li_per_fu_comp_err": np.zeros_like(v)})
    return out


def li_total_err(cols) -> np.ndarray:
    """Li per formula unit's total error: statistical, cross sections and composition in quadrature."""
    z = np.zeros_like(np.asarray(cols["li_per_fu"], float))
    return np.sqrt(sum(np.nan_to_num(np.asarray(cols.get(k, z), float)) ** 2
                       for k in ("li_per_fu_err", "li_per_fu_xs_err", "li_per_fu_comp_err")))


def predicted_r(cols, parent, series=None, route: str = "ti") -> dict:
    """Per-row predicted R_OO (nm) and error, and the parent's measured R and Li per f.u.

    Parameters
    ----------
    cols : mapping of arrays (rows,)
        ``li_per_fu`` (+ its three errors), ``r_oo_nm``, ``r_oo_nm_err``.
    parent : array of bool (rows,)
        Rows of the parent electrolyte.
    route : "ti" or "o"
        Which Li per formula unit (module docstring).
    """
    s = series or nasicon.load_series()
    cols = route_columns(cols, route)
    lpf = np.asarray(cols["li_per_fu"], float)
    lpf_e = li_total_err(cols)
    r, r_e = np.asarray(cols["r_oo_nm"], float), np.asarray(cols["r_oo_nm_err"], float)
    parent = np.asarray(parent, bool)
    rp, rp_e = _weighted_mean(r[parent], r_e[parent])
    lp, lp_e = _weighted_mean(lpf[parent], np.asarray(cols["li_per_fu_err"], float)[parent])
    x, x0 = lpf - 1.0, lp - 1.0
    finite = np.isfinite(x)
    d = np.full(x.shape, np.nan)
    de = np.full(x.shape, np.nan)
    if finite.any() and np.isfinite(x0):
        d[finite], de[finite] = nasicon.expansion(x[finite], x0, s)
        h = 1e-3
        slope = (nasicon.expansion(x[finite] + h, x0, s)[0] - nasicon.expansion(x[finite] - h, x0, s)[0]) / (2 * h)
        de[finite] = np.sqrt(de[finite] ** 2 + (slope * lpf_e[finite]) ** 2)
    pred = rp + d
    pred_e = np.sqrt(de ** 2 + rp_e ** 2)
    with np.errstate(invalid="ignore"):
        pull = (r - pred) / np.hypot(r_e, pred_e)
    return {"r_oo_pred_nm": pred, "r_oo_pred_nm_err": pred_e, "r_oo_pull": pull,
            "r_parent_nm": rp, "r_parent_nm_err": rp_e, "li_per_fu_parent": lp, "li_per_fu_parent_err": lp_e}


def verdict(cols, parent, top_rows: int = 5, series=None, route: str = "ti") -> dict:
    """The study's claim tested: at the rows of the largest measured expansion (the ``top_rows``
    rows of largest R_OO, averaged), the Li per formula unit the structures need for that
    expansion against the Li per formula unit measured there.

    Returns a dict of numbers and a one-line ``text``.
    """
    s = series or nasicon.load_series()
    cols = route_columns(cols, route)
    p = predicted_r(cols, parent, s)
    r, r_e = np.asarray(cols["r_oo_nm"], float), np.asarray(cols["r_oo_nm_err"], float)
    lpf = np.asarray(cols["li_per_fu"], float)
    ok = np.isfinite(r) & np.isfinite(r_e) & np.isfinite(lpf) & ~np.asarray(parent, bool)
    if ok.sum() < 1 or not np.isfinite(p["r_parent_nm"]):
        return {"text": "no comparison: no row with both R_OO and Li per formula unit, or no parent", **p}
    idx = np.flatnonzero(ok)[np.argsort(r[ok])[-top_rows:]]
    rm, rm_e = _weighted_mean(r[idx], r_e[idx])
    li_m = float(np.mean(lpf[idx]))
    li_m_e = float(np.sqrt(np.mean(li_total_err(cols)[idx] ** 2)))
    li_m_stat = float(np.sqrt(np.sum(np.asarray(cols["li_per_fu_err"], float)[idx] ** 2)) / idx.size)
    delta, delta_e = rm - p["r_parent_nm"], float(np.hypot(rm_e, p["r_parent_nm_err"]))
    x_need, x_need_e = nasicon.x_for_expansion(delta, delta_e, p["li_per_fu_parent"] - 1.0, s)
    li_need, li_need_e = float(x_need) + 1.0, float(x_need_e)
    z = (li_m - li_need) / np.hypot(li_m_e, li_need_e)
    text = (f"largest measured expansion {delta * 1e3:.1f} ± {delta_e * 1e3:.1f} pm over the parent "
            f"({p['r_parent_nm']:.4f} nm); the computed Li(1+x)Ti2(PO4)3 series needs "
            f"{li_need:.1f} ± {li_need_e:.1f} Li per formula unit for it; measured there ({ROUTES[route]}): "
            f"{li_m:.1f} ± {li_m_e:.1f} (stat. {li_m_stat:.2f}); "
            f"above 3 Li per f.u. by {(li_need - 3) / li_need_e:.1f} sigma (structures) and "
            f"{(li_m - 3) / li_m_e:.1f} sigma (measured); their difference {z:+.1f} sigma")
    return {"text": text, "route": route, "expansion_nm": delta, "expansion_nm_err": delta_e, "li_per_fu_needed": li_need,
            "li_per_fu_needed_err": li_need_e, "li_per_fu_measured": li_m, "li_per_fu_measured_err": li_m_e,
            "li_per_fu_measured_stat_err": li_m_stat, "difference_sigma": float(z),
            "sigma_above_3_structures": float((li_need - 3) / li_need_e),
            "sigma_above_3_measured": float((li_m - 3) / li_m_e), "rows": idx.tolist(), **p}
