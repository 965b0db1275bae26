"""Data-free tests of the definitions every reported number depends on (issue 16): which
O-O distance, which threshold, which clipping, which conversion from E_b to R."""

import numpy as np
import pytest

from sreels.inference.fast import FitSettings, fit_image
from sreels.structures import oo
from sreels.structures.measured import R_ERR_FLOOR_NM, r_for_calibration
from sreels.structures.okedge import measure_ok
from sreels.structures.spectra import Spectrum1D

from tests.inference.fasthelpers import windows_of
from tests.statistics.test_fast_pulls import runs


# ------------------------------------------------------------------ O-O definitions
def _brute_force_oo(atoms, cation):
    """Both definitions from a 3x3x3 supercell and plain distance matrices (no neighbour list)."""
    big = atoms.repeat((3, 3, 3))
    sym = np.array(big.get_chemical_symbols())
    o = np.flatnonzero(sym == "O")
    d_oo = big.get_all_distances(mic=True)[np.ix_(o, o)]
    pairs = d_oo[np.triu_indices(o.size, 1)]
    shell = pairs[pairs < 1.2 * pairs.min()]
    edges = []
    for m in np.flatnonzero(sym == cation):
        dm = big.get_distances(m, o, mic=True, vector=True)
        six = dm[np.argsort(np.linalg.norm(dm, axis=1))[:6]]
        dd = np.linalg.norm(six[:, None] - six[None], axis=-1)
        pair = np.sort(dd[np.triu_indices(6, 1)])
        edges.append(pair[:12])  # the 3 longest of the 15 vertex pairs are the trans diagonals
    return np.mean(edges) / 10, shell.mean() / 10


@pytest.mark.parametrize("name", ["TiO2_rutile", "Al2O3_corundum"])
def test_octahedral_edge_and_nearest_neighbour_are_what_they_say(name):
    """Edge-sharing structures, where the two definitions differ by > 1 pm: each definition
    equals an independent brute-force computation, and neither is the other."""
    b = oo.BUILTIN[name]
    atoms = oo.load_builtin(name)
    d = oo.oo_distances(atoms, b.cation, name)
    edge, nearest = _brute_force_oo(atoms, b.cation)
    assert abs(edge - nearest) > 0.001
    assert d.oo_octahedral_edge_nm == pytest.approx(edge, rel=1e-9)
    assert d.oo_nearest_nm == pytest.approx(nearest, rel=1e-9)


def test_calibration_takes_the_stated_definition():
    """R for the calibration: the octahedral edge by default, the nearest-neighbour mean on
    request; the uncertainty is the floor plus half the difference of the two, in quadrature."""
    d = oo.oo_distances(oo.load_builtin("TiO2_rutile"), "Ti", "rutile")
    r_e, s_e = r_for_calibration(d)
    r_n, s_n = r_for_calibration(d, "nearest")
    assert r_e == d.oo_octahedral_edge_nm and r_n == d.oo_nearest_nm
    assert r_e == pytest.approx(0.2768, abs=2e-4)  # DESIGN.md: rutile's mean TiO6 edge
    expect = np.hypot(R_ERR_FLOOR_NM, 0.5 * abs(d.oo_octahedral_edge_nm - d.oo_nearest_nm))
    assert s_e == pytest.approx(expect, rel=1e-12) and s_n == pytest.approx(expect, rel=1e-12)


def test_calibrate_without_data_uses_the_stated_definition(monkeypatch):
    """The command's fallback (no measured data found) builds its points from the stated definition."""
    import sreels.structures.measured as measured
    from sreels.structures.commands import calibrate

    monkeypatch.setattr(measured, "find_data_dir", lambda *a, **k: None)
    res, _, _, _ = calibrate(definition="nearest")
    structures = {x.name: x for x in oo.builtin_oo()}
    for p in res.points:
        assert p.r_nm == structures[p.name].oo_nearest_nm, p.name
    assert any(abs(s.oo_nearest_nm - s.oo_octahedral_edge_nm) > 1e-3 for s in structures.values())


# ------------------------------------------------------------------ O-K threshold conventions
def _synthetic_ok(e):
    """Power-law background + a Gaussian first peak (535 eV, sigma 1.5) + peak "b" (560 eV, sigma 3)."""
    return 1e10 * e**-3.0 + 100 * np.exp(-0.5 * ((e - 535.0) / 1.5) ** 2) + 60 * np.exp(-0.5 * ((e - 560.0) / 3.0) ** 2)


# the one threshold: the inflection of the first peak read at 1.5 eV effective resolution, i.e.
# smoothed by sqrt(1.5^2 - 0.5^2) eV FWHM at the default 0.5 eV resolution: mu - sigma'
_SIGMA_SMOOTH = np.sqrt(1.5**2 - 0.5**2) / (2 * np.sqrt(2 * np.log(2)))


@pytest.mark.parametrize("threshold, expect", [("inflection", 535.0 - np.hypot(1.5, _SIGMA_SMOOTH))])
def test_threshold_definitions_on_a_known_edge(threshold, expect):
    e = np.arange(480.0, 620.0, 0.1)
    m = measure_ok(Spectrum1D(e, _synthetic_ok(e), "synthetic", ""), threshold=threshold)
    assert m.threshold == threshold
    assert m.threshold_ev == pytest.approx(expect, abs=0.06)
    assert m.peak_b_ev == pytest.approx(560.0, abs=0.02)
    assert m.delta_e_ev == pytest.approx(m.peak_b_ev - m.threshold_ev, abs=1e-12)
    assert m.delta_e_err_ev == pytest.approx(np.hypot(m.peak_b_err_ev, m.threshold_err_ev), rel=1e-12)
    # an axis offset moves every energy, never dE
    m2 = measure_ok(Spectrum1D(e + 3.0, _synthetic_ok(e), "synthetic", ""), threshold=threshold)
    assert m2.delta_e_ev == pytest.approx(m.delta_e_ev, abs=0.02)


# ------------------------------------------------------------------ fast-path column definitions
def test_ti3_fraction_is_the_raw_estimate_clipped_to_0_1():
    """Rows with raw estimates beyond both bounds and inside (0.9, 1) exist, and the reported
    fraction is exactly clip(raw, 0, 1)."""
    raw, rep = [], []
    for _, r in runs("low", 8):
        raw.append(r.columns["ti3_fraction_raw"])
        rep.append(r.columns["ti3_fraction"])
    raw, rep = np.concatenate(raw), np.concatenate(rep)
    ok = np.isfinite(raw)
    assert np.any(raw[ok] > 1) and np.any(raw[ok] < 0) and np.any((raw[ok] > 0.9) & (raw[ok] < 1))
    np.testing.assert_array_equal(rep[ok], np.clip(raw[ok], 0.0, 1.0))
    assert np.all(np.isnan(rep[~ok]))


def _r_columns_consistent(res, threshold, c, c_err):
    """R = sqrt(C / dE_b) with dE_b = E_b - E_th: the measured threshold per row (``threshold``
    None) or a fixed one on the reference scale."""
    cols = res.columns
    ok = np.isfinite(cols["r_oo_nm"])
    assert ok.sum() > 40
    r, r_e = cols["r_oo_nm"][ok], cols["r_oo_nm_err"][ok]
    if threshold is None:
        de, de_e = cols["delta_e_b_ev"][ok], cols["delta_e_b_ev_err"][ok]
        np.testing.assert_allclose(de, cols["peak_b_ev"][ok] - cols["o_threshold_ev"][ok], rtol=1e-12)
    else:
        de, de_e = cols["peak_b_ev"][ok] - threshold, cols["peak_b_ev_err"][ok]
    np.testing.assert_allclose(r, np.sqrt(c / de), rtol=1e-12)
    # dR = R^3 / (2 C) dE_b (+) R dC / (2 C): checked against Monte Carlo in test_propagation
    np.testing.assert_allclose(r_e, np.hypot(r**3 / (2 * c) * de_e, r * c_err / (2 * c)), rtol=1e-9)


def test_r_oo_is_c_over_delta_e_from_the_stated_threshold():
    sim, res = runs("default", 8)[0]
    _r_columns_consistent(res, None, 2.820, 0.0)
    s = FitSettings(threshold_ev=528.0, c_ev_nm2=2.9, c_err_ev_nm2=0.05)
    res2 = fit_image(windows_of(sim), s)
    np.testing.assert_allclose(res2.columns["peak_b_ev"], res.columns["peak_b_ev"], rtol=0, atol=1e-9)
    _r_columns_consistent(res2, 528.0, 2.9, 0.05)
