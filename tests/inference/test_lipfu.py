"""Absolute Li per formula unit (Li-K / Ti-L2,3 with the model's cross sections)."""

import numpy as np
import pytest

from sreels.config import Instrument
from sreels.forward.material import LASGTP_ATOMS_PER_FU
from sreels.forward.simulate import simulate
from sreels.inference.fast import fit_image
from sreels.inference.fast import usable
from sreels.inference.lipfu import TI_PER_FU, TI_PER_FU_ERR, li_per_fu, xs_ratio_rel_err

from .fasthelpers import SCENARIOS, windows_of


def _pulls(sim, res):
    truth = LASGTP_ATOMS_PER_FU["Li"] * sim.truth_columns()["li_rel_row"]
    c = res.columns
    z = (c["li_per_fu"] - truth) / c["li_per_fu_err"]
    return z[usable(res.status) & np.isfinite(z)], truth


@pytest.fixture(scope="module")
def single():
    """The scenarios single-scattering (no low-loss window), seeds 100-102."""
    inst = Instrument(plural_scattering=False, lowloss_window=False)
    out = {}
    for i, name in enumerate(SCENARIOS):
        sim = simulate(SCENARIOS[name], inst, rng=100 + i)
        out[name] = (sim, fit_image(windows_of(sim), progress=False), None)
    return out


@pytest.mark.parametrize("name", ["study", "narrow", "wide"])
def test_li_per_fu_recovers_the_simulated_truth(single, name):
    """Seeded single-scattering simulations: the pulls against the truth (1.3 Li per f.u. in the
    parent times the row's Li concentration) have sd 0.8-1.2 and mean within +-0.2."""
    sim, res, _ = single[name]
    z, truth = _pulls(sim, res)
    assert z.size > 100
    assert abs(z.mean()) < 0.2, z.mean()
    assert 0.8 < z.std() < 1.2, z.std()
    # the electrode's maximum is read as Li per formula unit, not relative to the parent
    top = np.nanargmax(np.where(usable(res.status), truth, np.nan))
    assert res.columns["li_per_fu"][top] == pytest.approx(truth[top], rel=0.1)
    assert truth[top] > 5


def test_li_per_fu_through_plural_scattering_recovers_the_truth(fitted):
    """The default DualEELS image (t/lambda 0.54, seed 100): li_per_fu pulls (statistical error only) have
    mean within +-0.2 and sd 0.8-1.2.  (It read 3-4 % low, pull mean -0.6, while the Li-K window's
    unscattered fraction took I_t up to 150 eV only and a power law stood for the plasmon tail under it.)"""
    sim, res, _ = fitted["study"]
    z, _ = _pulls(sim, res)
    assert z.size > 300
    assert abs(z.mean()) < 0.2, z.mean()
    assert 0.8 < z.std() < 1.2, z.std()


@pytest.mark.parametrize("thickness_nm", [55.0, 165.0])
def test_li_per_fu_noise_free_through_plural_scattering(thickness_nm):
    """Noise-free DualEELS images at t/lambda 0.30 and 0.89: li_per_fu within 1 % of the truth on every
    row with Ti away from the Pt collector (y > 20 nm), median within 0.6 % (measured 0.44 % and 0.14 %
    low, rows 0.91-1.00 and 0.99-1.005; 2.7 % low at t/lambda 0.54 before the I_t and background fixes)."""
    import dataclasses

    # the study's scenario on half as many rows of twice the height (the same interface, half the cost)
    sc = dataclasses.replace(SCENARIOS["study"], thickness_nm=thickness_nm, rows=165, row_nm=11.4)
    sim = simulate(sc, noise_free=True)
    res = fit_image(windows_of(sim), progress=False)
    t = sim.truth_columns()
    tl = np.nanmedian(res.columns["t_over_lambda"])
    assert 0.25 < tl < 0.35 if thickness_nm < 100 else 0.85 < tl < 0.95
    ok = usable(res.status) & np.isfinite(res.columns["li_per_fu"]) & (t["y_nm"] > 20.0)
    assert ok.sum() > 150
    r = res.columns["li_per_fu"][ok] / (LASGTP_ATOMS_PER_FU["Li"] * t["li_rel_row"][ok])
    assert abs(np.median(r) - 1) < 0.006, np.median(r)
    assert np.max(np.abs(r - 1)) < 0.01, (r.min(), r.max())


def test_cross_section_and_composition_errors_are_kept_apart(fitted):
    _, res, _ = fitted["study"]
    c = res.columns
    ok = np.isfinite(c["li_per_fu"])
    np.testing.assert_allclose(c["li_per_fu_xs_err"][ok], np.abs(c["li_per_fu"][ok]) * xs_ratio_rel_err())
    np.testing.assert_allclose(c["li_per_fu_comp_err"][ok], np.abs(c["li_per_fu"][ok]) * TI_PER_FU_ERR / TI_PER_FU)
    # the statistical error is not inflated by either: much smaller in the bright electrode
    assert np.nanmedian(c["li_per_fu_err"] / c["li_per_fu_xs_err"]) < 0.5


def test_li_per_fu_function():
    a, ae = np.array([2.0, 4.0, 1.0]), np.array([0.1, 0.2, 0.1])
    n, ne = np.array([1.0, 1.0, 0.0]), np.array([0.01, 0.01, 0.01])
    out = li_per_fu(a, ae, n, ne, 0.5, 30.0)
    # exposures: Li-K recorded 60x shorter -> 60x fewer counts per atom
    assert out["li_per_fu"][0] == pytest.approx(2.0 * 60 * TI_PER_FU)
    assert out["li_per_fu"][1] == pytest.approx(2 * out["li_per_fu"][0])
    assert np.isnan(out["li_per_fu"][2])  # no Ti: undefined
    assert out["li_per_fu_err"][0] == pytest.approx(out["li_per_fu"][0] * np.hypot(0.05, 0.01))
    none = li_per_fu(a, ae, n, ne, None, 30.0)
    assert all(np.isnan(v).all() for v in none.values())
