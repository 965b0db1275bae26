"""dE * R^2 = C conversions: round trips, error propagation checked by Monte Carlo."""

import numpy as np
import pytest

from sreels.errors import SreelsInputError
from sreels.structures import resonance as rs


def test_design_table_values():
    # DESIGN "Numbers worth having at hand": 0.272 -> 567.1, 0.280 -> 565.0, 0.289 -> 562.8, 0.310 -> 558.3 eV
    eb = rs.energy_b_from_r(np.array([0.272, 0.280, 0.289, 0.310]))
    np.testing.assert_allclose(eb, [567.1, 565.0, 562.8, 558.3], atol=0.06)
    slope = (rs.energy_b_from_r(0.2805) - rs.energy_b_from_r(0.2795)) / 1.0  # eV per pm
    assert slope == pytest.approx(-0.26, abs=0.01)


def test_round_trip():
    r = np.linspace(0.25, 0.33, 50)
    back, _ = rs.r_from_energy_b(rs.energy_b_from_r(r))
    np.testing.assert_allclose(back, r, rtol=1e-12)
    de, _ = rs.delta_e_from_r(r)
    np.testing.assert_allclose(rs.r_from_delta_e(de)[0], r, rtol=1e-12)


def test_study_shifts():
    # Yamamoto 2014: peak b shifts of 5.5 and 1.4 eV from the parent (0.280 nm)
    assert rs.r_from_shift(-5.5, 0.280) == pytest.approx(0.3042, abs=2e-4)
    assert rs.r_from_shift(-1.4, 0.280) == pytest.approx(0.2856, abs=2e-4)


def test_error_propagation_matches_monte_carlo():
    rng = np.random.default_rng(20240531)
    eb, s_eb, th, s_th, c, s_c = 563.0, 0.15, 529.0, 0.10, 2.82, 0.03
    r, r_err = rs.r_from_energy_b(eb, s_eb, th, s_th, c, s_c)
    n = 200_000
    sample = np.sqrt(rng.normal(c, s_c, n) / (rng.normal(eb, s_eb, n) - rng.normal(th, s_th, n)))
    assert sample.mean() == pytest.approx(r, rel=2e-4)
    assert sample.std() == pytest.approx(r_err, rel=0.02)
    de, de_err = rs.delta_e_from_r(0.28, 0.002, c, s_c)
    samp = rng.normal(c, s_c, n) / rng.normal(0.28, 0.002, n) ** 2
    assert samp.std() == pytest.approx(de_err, rel=0.03)


def test_bad_input():
    with pytest.raises(SreelsInputError, match="dE"):
        rs.r_from_delta_e(0.0)
    with pytest.raises(SreelsInputError, match="dE"):
        rs.r_from_delta_e([-1.0, 2.0])
    with pytest.raises(SreelsInputError, match="R"):
        rs.delta_e_from_r(-0.28)
    with pytest.raises(SreelsInputError, match="O-O distance"):
        rs.energy_b_from_r(0.0)
    r, _ = rs.r_from_energy_b([528.0, 560.0])  # below threshold -> NaN, documented
    assert np.isnan(r[0]) and np.isfinite(r[1])
