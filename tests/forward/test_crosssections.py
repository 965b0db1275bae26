import numpy as np
import pytest
from scipy import integrate

from sreels.forward import crosssections as cs


@pytest.mark.parametrize("z, shell, onset, l1, expected", [
    # exspy hydrogenic_gos.py (port of Egerton's SIGMAK3/SIGMAL3) at 300 kV, beta = 10 mrad,
    # 50 eV window, as quoted in DESIGN.md "Numbers worth having at hand".
    (3, "K", 55.0, None, 6.1e4),
    (8, "K", 532.0, None, 758.0),
    (22, "L", 456.0, 564.0, 2834.0),
])
def test_integrated_cross_sections_match_published_within_2_percent(z, shell, onset, l1, expected):
    got = cs.integrated_cross_section(z, shell, onset, 300.0, 0.010, 50.0, onset_l1_ev=l1)
    assert got == pytest.approx(expected, rel=0.02)


def test_gauss_legendre_q_integral_matches_adaptive_quadrature():
    e = np.array([540.0, 560.0, 600.0])
    fast = cs.hydrogenic_dsigma_de(e, 8, "K", 532.0, 300.0, 0.010)
    t, qmin, qmax = cs._kinematics(e, 300.0, 0.010)
    slow = [cs.FOUR_PI_A0SQ_BARN * (cs.RYDBERG_EV / t) * (cs.RYDBERG_EV / ei)
            * integrate.quad(lambda x: cs._gos_k(np.array(ei), np.exp(x), 8), np.log(lo), np.log(hi))[0]
            for ei, lo, hi in zip(e, qmin, qmax)]
    np.testing.assert_allclose(fast, slow, rtol=1e-6)


def test_cross_section_grows_with_collection_angle_and_vanishes_below_onset():
    e = np.array([530.0, 545.0])
    small = cs.hydrogenic_dsigma_de(e, 8, "K", 532.0, 300.0, 0.005)
    large = cs.hydrogenic_dsigma_de(e, 8, "K", 532.0, 300.0, 0.020)
    assert small[0] == 0 and large[0] == 0
    assert large[1] > small[1] > 0


def test_unknown_shell_is_refused():
    with pytest.raises(ValueError, match="K and L"):
        cs.hydrogenic_dsigma_de([100.0], 8, "M", 50.0, 300.0, 0.01)


def test_repeated_evaluations_come_from_the_cache_as_independent_copies():
    """The same axis and edge twice: equal values (to the bit) from the cache, and a caller writing
    into its array does not change what the next caller gets; another axis is computed anew."""
    e = np.linspace(60.0, 260.0, 801)
    cs._CACHE.clear()
    first = cs.hydrogenic_dsigma_de(e, 13, "L", 73.0, 300.0, 0.010, 118.0)
    first_copy = first.copy()
    first[:] = -1.0
    again = cs.hydrogenic_dsigma_de(e.copy(), 13, "L", 73.0, 300.0, 0.010, 118.0)
    np.testing.assert_array_equal(again, first_copy)
    assert len(cs._CACHE) == 1
    fresh = cs._dsigma_de(e, 13, "L", 73.0, 300.0, 0.010, 118.0)
    np.testing.assert_array_equal(again, fresh)
    other = cs.hydrogenic_dsigma_de(e + 0.01, 13, "L", 73.0, 300.0, 0.010, 118.0)
    assert len(cs._CACHE) == 2 and not np.array_equal(other, again)


@pytest.mark.parametrize("z, shell, onset, l1", [
    (3, "K", 55.0, None), (8, "K", 532.0, None),
    (13, "L", 73.0, 118.0), (15, "L", 132.0, 189.0), (22, "L", 456.0, 564.0)])
def test_row_split_gos_equals_the_egerton_expressions(z, shell, onset, l1):
    """The per-row GOS evaluation used by hydrogenic_dsigma_de equals SIGMAK3/SIGMAL3 written out on the
    whole grid (_gos_k / _gos_l) to 1e-12 relative, on an axis that crosses kh^2 = 0 and the L1 onset
    (fails for a wrong branch, a dropped term or a power off by one)."""
    e = np.linspace(onset + 0.01, onset + 1500.0, 1201)
    t, qmin, qmax = cs._kinematics(e, 300.0, 0.010)
    x = np.linspace(0.0, 1.0, 17)[None, :]
    qa02 = np.exp(np.log(qmin)[:, None] * (1 - x) + np.log(qmax)[:, None] * x)
    if shell == "K":
        ref, got = cs._gos_k(e[:, None], qa02, z), cs._gos_k_rows(e, qa02, z)
        kh2 = e / (cs.RYDBERG_EV * (z - 0.5) ** 2) - 1.0
    else:
        ref, got = cs._gos_l(e[:, None], qa02, z, onset, l1), cs._gos_l_rows(e, qa02, z, onset, l1)
        kh2 = e / (cs.RYDBERG_EV * (z - 0.35 * 7 - 1.7) ** 2) - 0.25
        assert (e <= l1).any() and (e > l1).any()
    assert (kh2 < 0).any() and (kh2 >= 0).any()
    assert np.all(np.isfinite(got)) and np.all(ref > 0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
