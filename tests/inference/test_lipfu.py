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


# The forward model's plural scattering became a linear convolution (issue 10's wrap-around): at t/lambda
# 0.89 this image's median moved from 0.9980 to 0.9916 (rows 0.988-1.001).  Measured by swapping single
# windows of the old (circular) simulation into the new one: the old Li-K window alone gives 0.9989,
# the old low-loss window alone 1.0042, the old Ti-L window alone 0.9887, so the fit's Li-K normalisation
# leans on how the Li-K window's plural tail relates to the low loss's, which the wrap had altered.
# Left to the inference (strict: passes again, and must be unmarked, once the fit recovers 0.6 %).
# Since the Fourier ratio's longer lower pad (issue 10's Ti3+ bias) the Ti-L2,3 amplitude at t/lambda 0.89
# is 0.26 % higher and the median 0.9889 (li_per_fu_o, from the same deconvolved window's O-K, agrees within
# 0.25 %: the rest is the Li-K side's; measured).
WRAP_FIXED = pytest.mark.xfail(strict=True, reason="li_per_fu 1.1 % low at t/lambda 0.89 since the "
                               "linear plural convolution (median 0.9889; see the comment above)")


@pytest.mark.parametrize("thickness_nm", [55.0, pytest.param(165.0, marks=WRAP_FIXED)])
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


# ------------------------------------------------------------------ the Li-K / O-K route


def _o_truths(sc, sim):
    """Li per f.u. (1.3 x the row's Li) and what the O-K route measures, 12 N_Li / N_O (every O of
    the row taken as the host's: AlPO4 grains dilute it); the rows free of AlPO4."""
    from sreels.forward.profiles import build_profiles

    p = build_profiles(sc)
    truth = LASGTP_ATOMS_PER_FU["Li"] * sim.truth_columns()["li_rel_row"]
    # the simulation's truth column (as a row sees it, blurred along y); equal to the Ti route's off the grains
    t_o = sim.truth_columns()["li_per_fu_o_row"]
    clean = (1.0 - p.host_fraction < 1e-3) & ~p.in_pt
    np.testing.assert_allclose(t_o[clean], truth[clean], rtol=1e-3)
    assert np.all(t_o[~clean & ~p.in_pt] < truth[~clean & ~p.in_pt] * 1.001)  # AlPO4's O dilutes it
    return truth, t_o, clean


def _noise_free_o(thickness_nm, instrument=None):
    import dataclasses

    sc = dataclasses.replace(SCENARIOS["study"], thickness_nm=thickness_nm, rows=165, row_nm=11.4)
    sim = simulate(sc, instrument, noise_free=True) if instrument else simulate(sc, noise_free=True)
    res = fit_image(windows_of(sim), progress=False)
    return sc, sim, res


def test_li_per_fu_o_noise_free_through_plural_scattering():
    """Noise-free DualEELS image at t/lambda 0.54: Li per f.u. from Li-K / O-K within 1 % of the truth
    on every row free of AlPO4 away from the Pt collector (measured -0.17 % median, -0.26 to +0.10 %; +0.30 %
    median, +0.99 % max before the low loss's extension reached 400 eV: LI_O_PLURAL_SYST), and within
    LI_O_PLURAL_SYST (t/lambda)^2 of the Ti route; rows over the AlPO4 grains are withheld
    (second_o_phase) where their extra O exceeds 2 %, and the others' reading matches 12 N_Li / N_O."""
    from sreels.inference.fast import LI_O_PLURAL_SYST, SECOND_O_PHASE_REL

    sc, sim, res = _noise_free_o(100.0)
    c = res.columns
    truth, truth_o, clean = _o_truths(sc, sim)
    tl = np.nanmedian(c["t_over_lambda"])
    assert 0.5 < tl < 0.6
    ok = usable(res.status) & np.isfinite(c["li_per_fu_o"]) & (sim.truth_columns()["y_nm"] > 20.0)
    assert (ok & clean).sum() > 120
    r = c["li_per_fu_o"][ok & clean] / truth[ok & clean]
    assert np.max(np.abs(r - 1)) < 0.01, (r.min(), r.max())
    np.testing.assert_allclose(c["li_per_fu_o"][ok], truth_o[ok], rtol=0.01)
    both = ok & clean & np.isfinite(c["li_per_fu"])
    q = c["li_per_fu_o"][both] / c["li_per_fu"][both]
    assert np.all(np.abs(q - 1) < LI_O_PLURAL_SYST * tl**2 + 0.002), (q.min(), q.max())
    # rows over the grains: withheld where the extra O is clear (> 2 % and 3 sigma of O per Ti: the
    # errors of a noisy image, ~4 %); the others read 12 N_Li / N_O (checked above), up to ~10 % low
    second = np.array(["second_o_phase" in s for s in res.status])
    assert second.sum() >= 10 and not np.any(second & clean)
    assert np.all(np.isnan(c["li_per_fu_o"][second]))
    excess = truth / truth_o - 1
    lit = np.isfinite(truth_o) & (truth > 0) & (sim.truth_columns()["y_nm"] > 20.0)
    assert np.all(second[lit & (excess > 0.15)]) and (lit & (excess > 0.15)).sum() >= 5
    assert np.all(excess[lit & ~second] < 0.15 + SECOND_O_PHASE_REL)
    # the cross-section error is kept apart: Li-K and O-K at 10 % each
    np.testing.assert_allclose(c["li_per_fu_o_xs_err"][ok], c["li_per_fu_o"][ok] * xs_ratio_rel_err("O-K"))
    assert xs_ratio_rel_err("O-K") == pytest.approx(np.hypot(0.10, 0.10))


def test_li_per_fu_o_pulls_through_plural_scattering(fitted):
    """The default DualEELS image (t/lambda 0.54, seed 100): li_per_fu_o pulls against 12 N_Li / N_O
    have mean within +-0.2 and sd 0.8-1.2; it agrees with the Ti route within the two routes' errors."""
    sim, res, _ = fitted["study"]
    c = res.columns
    truth, truth_o, clean = _o_truths(SCENARIOS["study"], sim)
    ok = usable(res.status) & np.isfinite(c["li_per_fu_o"])
    z = ((c["li_per_fu_o"] - truth_o) / c["li_per_fu_o_err"])[ok]
    assert z.size > 250
    assert abs(z.mean()) < 0.2, z.mean()
    assert 0.8 < z.std() < 1.2, z.std()
    both = ok & np.isfinite(c["li_per_fu"]) & clean
    d = (c["li_per_fu_o"] - c["li_per_fu"])[both] / np.hypot(c["li_per_fu_o_err"], c["li_per_fu_err"])[both]
    assert abs(np.mean(d)) < 0.3 and np.std(d) < 1.2, (np.mean(d), np.std(d))


def test_li_per_fu_o_without_ti():
    """A window that records O-K but no Ti-L2,3 (single scattering, noise-free): the Ti route is withheld,
    the O-K route recovers the truth within 0.5 % on the rows free of AlPO4, and a note says that a
    second O-bearing phase cannot be recognised without Ti."""
    import dataclasses

    base = Instrument(plural_scattering=False, lowloss_window=False)
    low, high = base.windows
    inst = dataclasses.replace(base, windows=(low, dataclasses.replace(high, edges=("O-K",))))
    sc, sim, res = _noise_free_o(100.0, inst)
    c = res.columns
    truth, truth_o, clean = _o_truths(sc, sim)
    assert np.all(np.isnan(c["li_per_fu"]))
    ok = np.isfinite(c["li_per_fu_o"]) & clean & (sim.truth_columns()["y_nm"] > 20.0)
    assert ok.sum() > 120
    np.testing.assert_allclose(c["li_per_fu_o"][ok], truth[ok], rtol=0.005)
    np.testing.assert_allclose(c["li_per_fu_o"][np.isfinite(c["li_per_fu_o"])],
                               truth_o[np.isfinite(c["li_per_fu_o"])], rtol=0.005)
    assert any("cannot be recognised" in n for n in res.notes)


@pytest.mark.slow
@pytest.mark.parametrize("thickness_nm", [55.0, 165.0])
def test_li_per_fu_o_noise_free_thin_and_thick(thickness_nm):
    """Noise-free DualEELS images at t/lambda 0.30 and 0.89.  At 0.30 li_per_fu_o is within 1 % of the
    truth on the AlPO4-free rows off Pt (measured -0.37 % median, -0.46 to +0.09 %).  At 0.89 the deconvolved
    O-K post-edge read low by up to 2.7 % (li_per_fu_o +1.4 % median, +2.8 % max) while the low loss's
    power-law extension reached 355 eV; extended to 595 eV (EXTEND_EV) li_per_fu_o agrees with li_per_fu
    within 0.5 % on every row (measured +0.16 to +0.25 %) and both read ~1 % low (median 0.9912 and 0.9889:
    the Li-K side's, WRAP_FIXED above), within LI_O_PLURAL_SYST (t/lambda)^2 + 0.5 %."""
    from sreels.inference.fast import LI_O_PLURAL_SYST

    sc, sim, res = _noise_free_o(thickness_nm)
    c = res.columns
    truth, _, clean = _o_truths(sc, sim)
    tl = np.nanmedian(c["t_over_lambda"])
    ok = usable(res.status) & np.isfinite(c["li_per_fu_o"]) & clean & (sim.truth_columns()["y_nm"] > 20.0)
    assert ok.sum() > 120
    r = c["li_per_fu_o"][ok] / truth[ok]
    if thickness_nm < 100:
        assert 0.25 < tl < 0.35
        assert np.max(np.abs(r - 1)) < 0.01, (r.min(), r.max())
    else:
        assert 0.85 < tl < 0.95
        assert np.all(np.abs(r - 1) < LI_O_PLURAL_SYST * tl**2 + 0.005), (r.min(), r.max())
        both = ok & np.isfinite(c["li_per_fu"])
        assert both.sum() > 120
        q = c["li_per_fu_o"][both] / c["li_per_fu"][both]
        assert np.all(np.abs(q - 1) < 0.005), (q.min(), q.max())  # was up to +3.0 % (the 355 eV extension)


@pytest.mark.slow
@pytest.mark.parametrize("thickness_nm, mean_range", [(55.0, (-0.2, 0.2)), (100.0, (-0.2, 0.2)), (165.0, (-0.2, 0.2))])
def test_li_per_fu_o_pulls_over_seeds(thickness_nm, mean_range):
    """Seeded DualEELS images (seeds 200-202, the study's interface on 165 rows of 11.4 nm): li_per_fu_o
    pulls against 12 N_Li / N_O at t/lambda 0.30, 0.54, 0.89: mean within +-0.2 (measured -0.12, +0.01,
    +0.01; n = 435, 427, 431), sd 0.8-1.2 (1.03, 1.02, 1.00).  At 0.89 the mean was +0.20 (sd 1.11) while the
    low loss's extension reached only 355 eV (the deconvolved O-K post-edge read low, LI_O_PLURAL_SYST)."""
    import dataclasses

    sc = dataclasses.replace(SCENARIOS["study"], thickness_nm=thickness_nm, rows=165, row_nm=11.4)
    z = []
    for seed in (200, 201, 202):
        sim = simulate(sc, rng=seed)
        res = fit_image(windows_of(sim), progress=False)
        _, truth_o, _ = _o_truths(sc, sim)
        c = res.columns
        ok = usable(res.status) & np.isfinite(c["li_per_fu_o"])
        z.append(((c["li_per_fu_o"] - truth_o) / c["li_per_fu_o_err"])[ok])
    z = np.concatenate(z)
    assert z.size > 350
    assert mean_range[0] < z.mean() < mean_range[1], z.mean()
    assert 0.8 < z.std() < 1.2, z.std()


def test_li_per_fu_o_function():
    from sreels.inference.lipfu import O_PER_FU, li_per_fu_o

    a, ae = np.array([2.0, 0.0, 1.0]), np.array([0.1, 0.1, 0.1])
    n, ne = np.array([4.0, 4.0, np.nan]), np.array([0.04, 0.04, 0.04])
    out = li_per_fu_o(a, ae, n, ne, 0.5, 30.0)
    assert O_PER_FU == 12.0
    assert out["li_per_fu_o"][0] == pytest.approx(2.0 / 4.0 * 60 * 12.0)
    assert out["li_per_fu_o_err"][0] == pytest.approx(out["li_per_fu_o"][0] * np.hypot(0.05, 0.01))
    assert out["li_per_fu_o"][1] == 0.0 and out["li_per_fu_o_err"][1] == pytest.approx(0.1 / 4.0 * 60 * 12.0)
    assert np.isnan(out["li_per_fu_o"][2])
    assert all(np.isnan(v).all() for v in li_per_fu_o(a, ae, n, ne, 0.5, None).values())
