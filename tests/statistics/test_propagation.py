"""Derived numbers and conversions against Monte Carlo propagation (issue 16).

The fast path's summary (:func:`sreels.inference.derived.derive`) is run on 150 synthetic
profile sets: the default interface's true profiles plus Gaussian noise of known per-row
errors and a common-mode normalisation error of c_Li (as the parent normalisation makes
it).  Each reported ``_err`` is compared with the spread of its number over the sets, and
the number with the truth (per-row noise only: the common dE_b systematic left out).  Measured (seed
1616): spread / reported error 0.91, 0.98, 0.94 for
electrode_width_nm, li_max_rel, r_oo_parent_nm; 0.78, 0.80, 0.79 for ti_boundary_nm,
li_at_ti_boundary_rel, r_oo_max_nm (conservative, reasons below).  Before the fix of issue 16
electrode_width_nm_err left out the normalisation (ratio 1.44 here) and r_oo_max_nm_err counted
it although it cancels (ratio 0.48).
"""

import functools

import numpy as np
import pytest

from sreels.config import Scenario
from sreels.forward.profiles import build_profiles
from sreels.inference.derived import KEYS, derive
from sreels.structures import resonance as rs

from tests.statistics.bands import check_ratio, mean_band

N_SETS = 150
LI_REL_ERR = 0.03       # relative per-row error of c_Li
NORM_REL_ERR = 0.01     # common-mode error of the parent normalisation
F3_ERR = 0.02
R_ERR_NM = 0.0008


@functools.lru_cache(maxsize=None)
def monte_carlo():
    """Per-row noise only: the common-mode systematic of dE_b (derived.EB_SYST_EV), which no draw of the
    rows' noise spreads, is left out of the reported errors compared here."""
    from unittest import mock

    from sreels.inference import derived
    with mock.patch.object(derived, "EB_SYST_EV", 0.0):
        return _monte_carlo()


def _monte_carlo():
    sc = Scenario(grains=())
    p = build_profiles(sc)
    y, ok = p.y_nm, ~p.in_pt
    f3 = p.ti3_fraction[ok]
    yb = float(np.interp(0.5, f3[::-1], y[ok][::-1]))
    truth = {"electrode_width_nm": sc.electrode_width_nm, "ti_boundary_nm": yb, "li_max_rel": sc.li_max_rel,
             "li_at_ti_boundary_rel": float(np.interp(yb, y, p.li_rel)), "r_oo_parent_nm": sc.r_oo_parent_nm,
             "r_oo_max_nm": float(np.nanmax(p.r_oo_nm))}
    rng = np.random.default_rng(1616)
    li_e = LI_REL_ERR * p.li_rel
    parent = (y > 1200).astype(int)
    vals, errs = {k: [] for k in KEYS}, {k: [] for k in KEYS}
    for _ in range(N_SETS):
        rho = 1 + NORM_REL_ERR * rng.standard_normal()
        li = p.li_rel * rho + li_e * rng.standard_normal(y.size)
        f3 = p.ti3_fraction + F3_ERR * rng.standard_normal(y.size)
        r = p.r_oo_nm + R_ERR_NM * rng.standard_normal(y.size)
        cols = {"li_rel": li, "li_rel_err": np.hypot(li_e, li * NORM_REL_ERR), "li_rel_err_row": li_e,
                "li_norm_rel_err": np.full(y.size, NORM_REL_ERR), "ti3_fraction": np.clip(f3, 0, 1),
                "ti3_fraction_raw": f3, "ti3_fraction_err": np.full(y.size, F3_ERR), "r_oo_nm": r,
                "r_oo_nm_err": np.full(y.size, R_ERR_NM), "parent": parent}
        d = derive(y, cols, ok)
        for k in KEYS:
            vals[k].append(d[k])
            errs[k].append(d[f"{k}_err"])
    return truth, {k: np.array(v) for k, v in vals.items()}, {k: np.array(v) for k, v in errs.items()}


def _ratio(k):
    _, v, e = monte_carlo()
    return np.std(v[k], ddof=1) / np.sqrt(np.mean(e[k] ** 2))


@pytest.mark.parametrize("key", ["electrode_width_nm", "li_max_rel", "r_oo_parent_nm"])
def test_derived_error_matches_monte_carlo(key):
    truth, v, e = monte_carlo()
    check_ratio(_ratio(key), N_SETS - 1, key)
    z = (v[key] - truth[key]) / e[key]
    assert abs(z.mean()) < mean_band(N_SETS, 0.15), (key, z.mean())


@pytest.mark.parametrize("key, lo, hi", [("ti_boundary_nm", 0.64, 0.94), ("li_at_ti_boundary_rel", 0.65, 0.95),
                                         ("r_oo_max_nm", 0.65, 0.95)])
def test_conservative_derived_errors_stay_as_measured(key, lo, hi):
    """Errors wider than the spread, each for a stated reason, held to their measured ratio +-0.15
    (0.78, 0.80, 0.79) so that neither a halving nor a doubling passes:
    ti_boundary_nm_err = fit error (+) half the difference of the erfc and Richards steps' boundaries (a
    shape systematic, by design; derived._ti_boundary; 0.56 with the old |erfc - linear crossing| term);
    li_at_ti_boundary_rel_err carries the boundary's error through the slope of c_Li;
    r_oo_max_nm_err treats the row error of c_max as independent of the R(c_Li) regression's slope,
    with which it is anti-correlated (not modelled).  The truth is still covered (|pull mean| small)."""
    truth, v, e = monte_carlo()
    assert lo < _ratio(key) < hi, (key, _ratio(key))
    z = (v[key] - truth[key]) / e[key]
    assert abs(z.mean()) < 0.6, (key, z.mean())


def test_r_from_energy_b_and_its_error_by_monte_carlo_at_fast_path_values():
    """R and its error at a typical fast-path row (E_b 562.8 +- 0.05 eV, C 2.820 +- 0.02):
    the propagated error equals the sd of 200 000 draws within 1.5 %; the threshold error
    enters as an independent term."""
    rng = np.random.default_rng(16)
    n = 200_000
    for s_th in (0.0, 0.08):
        r, r_err = rs.r_from_energy_b(562.8, 0.05, 529.0, s_th, 2.820, 0.02)
        draws = np.sqrt(rng.normal(2.820, 0.02, n) / (rng.normal(562.8, 0.05, n) - rng.normal(529.0, s_th, n)))
        assert draws.std() == pytest.approx(r_err, rel=0.015)
        assert draws.mean() == pytest.approx(r, rel=1e-4)
