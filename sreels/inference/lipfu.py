"""Absolute Li per formula unit from the Li-K to Ti-L2,3 (and Li-K to O-K) intensity ratios.

The fast path's MLLS fits give, per row, the Li-K amplitude ``a`` and the number of Ti atoms
``n_Ti = a(Ti4+) + a(Ti3+)`` in the units of the forward model's per-atom references
(:func:`sreels.forward.model.reference_spectra`: barn / eV per atom), i.e. counts per
(reference cross section x incident electrons x exposure).  With both windows recorded on one
detector at one dose rate, the areal-density ratio is the amplitude ratio per second:

    N_Li / N_Ti = (a / t_Li) / (n_Ti / t_Ti)

(Egerton 2011, Eq. 4.65: N_A / N_B = [I_A(beta, Delta) / I_B] [sigma_B / sigma_A], here with
whole-shape references instead of windows).  In the LASGTP main phase
Li(1+x)Al(x)Ge(y)Ti(2-x-y)P3O12 the Ti content of a formula unit does not change when Li
enters, so

    li_per_fu = (N_Li / N_Ti) * (2 - x - y).

Errors, kept apart:

``li_per_fu_err``
    statistical: the two amplitudes' fit errors (independent windows).
``li_per_fu_xs_err``
    the model's cross sections: hydrogenic Li-K and Ti-L2,3 continua (Egerton's SIGMAK3 /
    SIGMAL3) plus a parametric Ti white-line area, :data:`XS_REL_ERR`.
``li_per_fu_comp_err``
    the parent's nominal Ti per formula unit, :data:`TI_PER_FU_ERR`.

Both windows' exposures must be known (sreels or HyperSpy metadata); otherwise the columns
are NaN and a note says why.  Rows with a Li-K fit but no Ti (the Pt collector, AlPO4 grains
without host) are NaN.

From O-K (:func:`li_per_fu_o`), with the O amount of :mod:`.oamount` in place of the Ti atoms:

    li_per_fu_o = (N_Li / N_O) * 12

since the P3O12 framework holds 12 O per formula unit whatever x and y (the LASGTP formula of
:mod:`sreels.forward.material`, Yamamoto 2014, Sec. 2.1): there is no composition error, and no Ti
is needed, but every O of the row is taken as the host's: a second O-bearing phase in the row
(AlPO4 grains, 4 O per AlPO4 and no Li) makes it read low (where the row has Ti, the fast path
withholds rows whose O per Ti exceeds the parent's, flag ``second_o_phase``).  Errors:
``li_per_fu_o_err`` (the two amplitudes' fit errors) and ``li_per_fu_o_xs_err`` (the Li-K and
O-K cross sections, :data:`XS_REL_ERR`).
"""

from __future__ import annotations

import numpy as np

from ..forward.material import LASGTP_ATOMS_PER_FU

#: Ti per formula unit of the parent, 2 - x - y = 1.6 for the nominal x = 0.3, y = 0.1 of
#: :mod:`sreels.forward.material` (x: J. Fu, J. Am. Ceram. Soc. 80 (1997) 1901, the OHARA
#: glass-ceramic's composition of highest conductivity; y: illustrative, the study gives none).
TI_PER_FU = LASGTP_ATOMS_PER_FU["Ti"]
#: Its uncertainty: x in 0.3 +- 0.1 (Fu 1997 reports the conductivity maximum at 0.3 with
#: x = 0.2-0.4 close to it) and y in 0.1 +- 0.1 (not given) -> +- 0.14 in 2 - x - y.
TI_PER_FU_ERR = float(np.hypot(0.1, 0.1))
#: Li per formula unit of the parent (1 + x).
LI_PER_FU_PARENT = LASGTP_ATOMS_PER_FU["Li"]
#: Relative uncertainty of the model's cross sections.  Hydrogenic K-shell cross sections:
#: ~10 % (Egerton 2011, Sec. 4.5.1 and Table 4.3 compare SIGMAK with Hartree-Slater values
#: to 5-10 % for light elements; Li-K, Z = 3, is at the edge of that range and its
#: near-edge peak is parametric here).  Ti-L2,3: hydrogenic L (SIGMAL3, 10-20 % per
#: Egerton 2011, Sec. 4.5.1) with white lines set to 1.2 x the continuum's 50 eV integral
#: (a model choice, :data:`sreels.forward.edges.TI_WHITE_LINE_RATIO`): 20 %.
#: O-K: hydrogenic K (SIGMAK3) as Li-K, 5-10 % against Hartree-Slater for light elements (Egerton
#: 2011, Sec. 4.5.1), here over a window from 55 eV above the threshold, past the near-edge
#: structure, where the solid's remaining EXELFS modulation (a few %) averages over ~40-50 eV: 10 %.
XS_REL_ERR = {"Li-K": 0.10, "Ti-L23": 0.20, "O-K": 0.10}
#: O per formula unit of the LASGTP main phase (P3O12: independent of x and y).
O_PER_FU = LASGTP_ATOMS_PER_FU["O"]


def xs_ratio_rel_err(edge: str = "Ti-L23") -> float:
    """Relative error of the Li-K / ``edge`` cross-section ratio (quadrature of :data:`XS_REL_ERR`)."""
    return float(np.hypot(XS_REL_ERR["Li-K"], XS_REL_ERR[edge]))


def li_per_fu(a_li, a_li_err, n_ti, n_ti_err, exposure_li_s, exposure_ti_s, valid=None,
              ti_per_fu: float = TI_PER_FU, ti_per_fu_err: float = TI_PER_FU_ERR) -> dict:
    """Li per formula unit per row and its three errors (see the module docstring).

    Parameters
    ----------
    a_li, a_li_err : array_like, shape (rows,)
        Li-K amplitude and its error (per-atom reference units, counts of the Li-K window).
    n_ti, n_ti_err : array_like, shape (rows,)
        Ti atoms (sum of the Ti4+ and Ti3+ amplitudes) and its error (counts of the Ti window).
    exposure_li_s, exposure_ti_s : float or None
        Exposures of the two windows (s); None -> every column NaN.
    valid : array_like of bool, optional
        Rows where both fits hold (others NaN).
    ti_per_fu, ti_per_fu_err : float
        Ti per formula unit of the host phase and its uncertainty.

    Returns
    -------
    dict
        ``li_per_fu``, ``li_per_fu_err``, ``li_per_fu_xs_err``, ``li_per_fu_comp_err``: arrays (rows,).
    """
    a, ae = np.asarray(a_li, float), np.asarray(a_li_err, float)
    n, ne = np.asarray(n_ti, float), np.asarray(n_ti_err, float)
    ok = np.ones(a.shape, bool) if valid is None else np.asarray(valid, bool)
    if not (exposure_li_s and exposure_ti_s):
        nan = np.full(a.shape, np.nan)
        return {"li_per_fu": nan, "li_per_fu_err": nan.copy(), "li_per_fu_xs_err": nan.copy(),
                "li_per_fu_comp_err": nan.copy()}
    ok = ok & np.isfinite(a) & np.isfinite(n) & (n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (a / exposure_li_s) / (n / exposure_ti_s)
        v = ratio * ti_per_fu
        err = np.abs(v) * np.hypot(ae / a, ne / n)
        err = np.where(a == 0, ti_per_fu * (ae / exposure_li_s) / (n / exposure_ti_s), err)
    out = {"li_per_fu": v, "li_per_fu_err": err, "li_per_fu_xs_err": np.abs(v) * xs_ratio_rel_err(),
           "li_per_fu_comp_err": np.abs(ratio) * ti_per_fu_err}
    return {k: np.where(ok, x, np.nan) for k, x in out.items()}


def li_per_fu_o(a_li, a_li_err, n_o, n_o_err, exposure_li_s, exposure_o_s, valid=None,
                o_per_fu: float = O_PER_FU) -> dict:
    """Li per formula unit per row from the Li-K / O-K ratio and its two errors (module docstring).

    Parameters
    ----------
    a_li, a_li_err : array_like, shape (rows,)
        Li-K amplitude and its error (per-atom reference units, counts of the Li-K window).
    n_o, n_o_err : array_like, shape (rows,)
        O atoms (:func:`.oamount.fit_o_amount`'s amplitude) and its error (counts of the O-K window).
    exposure_li_s, exposure_o_s : float or None
        Exposures of the two windows (s); None -> every column NaN.
    valid : array_like of bool, optional
        Rows where both measurements hold (others NaN).
    o_per_fu : float
        O per formula unit of the host phase.

    Returns
    -------
    dict
        ``li_per_fu_o``, ``li_per_fu_o_err``, ``li_per_fu_o_xs_err``: arrays (rows,).
    """
    a, ae = np.asarray(a_li, float), np.asarray(a_li_err, float)
    n, ne = np.asarray(n_o, float), np.asarray(n_o_err, float)
    ok = np.ones(a.shape, bool) if valid is None else np.asarray(valid, bool)
    if not (exposure_li_s and exposure_o_s):
        nan = np.full(a.shape, np.nan)
        return {"li_per_fu_o": nan, "li_per_fu_o_err": nan.copy(), "li_per_fu_o_xs_err": nan.copy()}
    ok = ok & np.isfinite(a) & np.isfinite(n) & (n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (a / exposure_li_s) / (n / exposure_o_s) * o_per_fu
        err = np.abs(v) * np.hypot(ae / a, ne / n)
        err = np.where(a == 0, o_per_fu * (ae / exposure_li_s) / (n / exposure_o_s), err)
    out = {"li_per_fu_o": v, "li_per_fu_o_err": err, "li_per_fu_o_xs_err": np.abs(v) * xs_ratio_rel_err("O-K")}
    return {k: np.where(ok, x, np.nan) for k, x in out.items()}
