"""The C fit recovers a known C with honest errors (pulls), and rejects bad input."""

import numpy as np
import pytest

from sreels.errors import SreelsInputError
from sreels.structures.calibration import CalibrationPoint, fit_c, synthetic_points


def test_recovers_c_with_correct_pulls():
    rng = np.random.default_rng(7)
    r = np.linspace(0.26, 0.31, 8)
    pulls, chi2 = [], []
    for _ in range(200):
        res = fit_c(synthetic_points(r, 2.82, 0.3, 0.001, rng))
        pulls.append((res.c_ev_nm2 - 2.82) / res.c_err_ev_nm2)
        chi2.append(res.chi2_dof)
    pulls = np.asarray(pulls)
    assert abs(pulls.mean()) < 0.25
    assert 0.85 < pulls.std() < 1.15
    assert 0.85 < np.mean(chi2) < 1.15


def test_offset_model_recovers_k():
    rng = np.random.default_rng(11)
    r = np.linspace(0.25, 0.32, 12)
    res = fit_c(synthetic_points(r, 2.82, 0.05, 0.0, rng, k_ev=-1.0), model="offset")
    assert res.k_ev == pytest.approx(-1.0, abs=4 * res.k_err_ev)
    assert res.c_ev_nm2 == pytest.approx(2.82, abs=4 * res.c_err_ev_nm2)


def test_noise_free_exact():
    pts = [CalibrationPoint(f"p{i}", 2.5 / r**2, 0.1, r, 0.0) for i, r in enumerate([0.27, 0.29])]
    assert fit_c(pts).c_ev_nm2 == pytest.approx(2.5, rel=1e-8)


def test_bad_points():
    with pytest.raises(SreelsInputError, match="dE"):
        fit_c([CalibrationPoint("x", -1.0, 0.1, 0.28, 0.001)])
    with pytest.raises(SreelsInputError, match="R"):
        fit_c([CalibrationPoint("x", 30.0, 0.1, 0.0, 0.001)])
    with pytest.raises(SreelsInputError, match="at least one"):
        fit_c([])
    with pytest.raises(SreelsInputError, match="unknown calibration model"):
        fit_c([CalibrationPoint("x", 30.0, 0.1, 0.3, 0.001)], model="cubic")


def test_offset_model_nests_the_inverse_square_rule():
    """dE = C/R^2 + k contains dE = C/R^2: its chi^2 is never larger, and C does not run to a bound."""
    from sreels.structures.calibration import CalibrationPoint, fit_c

    rng = np.random.default_rng(4)
    r = np.array([0.272, 0.276, 0.280, 0.290, 0.300])
    de = 2.7 / r**2 + 0.8 + rng.normal(0, 0.3, r.size)
    pts = [CalibrationPoint(f"p{i}", float(d), 0.3, float(x), 0.0005) for i, (d, x) in enumerate(zip(de, r))]
    one, two = fit_c(pts), fit_c(pts, "offset")
    assert two.chi2 <= one.chi2 + 1e-9
    assert two.c_ev_nm2 > 0.5 and abs(two.k_ev - 0.8) < 3 * two.k_err_ev
