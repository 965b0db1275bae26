"""Detector statistics on flat illumination (seeded)."""

import numpy as np
import pytest

from sreels.config import Detector
from sreels.forward.detector import apply_detector, apply_psf, expected_counts, psf_kernel, psf_variance_factor

LAM = 400.0
SHAPE = (300, 2000)


def _flat(det, seed=7):
    out = apply_detector(np.full(SHAPE, LAM), det, np.random.default_rng(seed))
    return out.counts.astype(float)[5:-5, 5:-5]  # away from the PSF's reflecting edges


@pytest.mark.parametrize("gain, read", [(1.55, 3.0), (1.0, 0.0), (4.0, 10.0)])
def test_mean_and_variance_without_psf(gain, read):
    det = Detector(gain_counts_per_e=gain, readout_noise_counts=read, psf_decay=0.0)
    x = _flat(det)
    n = x.size
    assert x.mean() == pytest.approx(gain * LAM, abs=4 * np.sqrt(gain**2 * LAM / n) + 0.01)
    # quantisation to integers adds 1/12 count^2
    expected_var = gain**2 * LAM + read**2 + 1 / 12
    assert x.var() == pytest.approx(expected_var, rel=5 * np.sqrt(2 / n) + 0.002)


def test_psf_lowers_variance_by_sum_k2_and_correlates_neighbours():
    det = Detector(gain_counts_per_e=1.55, readout_noise_counts=3.0, psf_decay=0.3)
    x = _flat(det)
    f = psf_variance_factor(0.3)
    assert 0.2 < f < 0.6  # a real effect to test
    expected_var = 1.55**2 * LAM * f + 9.0 + 1 / 12
    assert x.var() == pytest.approx(expected_var, rel=0.02)
    k = psf_kernel(0.3)
    lag1 = np.sum(k[:-1] * k[1:]) / np.sum(k**2)  # along energy
    shot = 1.55**2 * LAM * f
    xc = x - x.mean()
    corr = np.mean(xc[:, :-1] * xc[:, 1:]) / x.var()
    assert corr == pytest.approx(lag1 * shot / expected_var, abs=0.01)


def test_mean_is_conserved_by_the_psf_and_dark_offset_is_removed():
    det = Detector(psf_decay=0.4, dark_subtracted=False, dark_offset_counts=252.0, readout_noise_counts=0.0)
    img = np.random.default_rng(1).uniform(50, 500, (40, 300))
    mean = expected_counts(img, det)
    assert mean.sum() == pytest.approx(1.55 * img.sum() + 252.0 * img.size, rel=1e-12)
    x = _flat(det)
    assert x.mean() == pytest.approx(1.55 * LAM + 252.0, rel=1e-3)


def test_saturation_is_flagged_and_clipped():
    det = Detector(adc_max_counts=1000, dark_offset_counts=100.0)
    out = apply_detector(np.full((10, 50), 2000.0), det, np.random.default_rng(0))
    assert out.saturated.all()
    assert np.all(out.counts == 900.0)


def test_gain_nonuniformity_adds_fixed_pattern_variance():
    det = Detector(psf_decay=0.0, readout_noise_counts=0.0, gain_nonuniformity_rel=0.02)
    x = _flat(det)
    g = 1.55 * LAM
    expected = 1.55**2 * LAM * (1 + 0.02**2) + (0.02 * g) ** 2 + 1 / 12
    assert x.var() == pytest.approx(expected, rel=0.02)


def test_psf_kernel_is_normalised_and_symmetric():
    k = psf_kernel(0.3)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k[::-1])
    img = np.zeros((21, 21))
    img[10, 10] = 1.0
    out = apply_psf(img, 0.3)
    assert out.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(out[9], 0.0)  # rows are not mixed


def test_detector_refuses_global_random_state_and_bad_expectations():
    with pytest.raises(TypeError, match="Generator"):
        apply_detector(np.ones((2, 2)), Detector(), 42)
    with pytest.raises(ValueError, match="finite"):
        apply_detector(np.array([[1.0, np.nan]]), Detector(), np.random.default_rng(0))


# ---------------------------------------------------------------- Poisson draws: exact, and approximated
def _chi2_vs_poisson(x, lam):
    """Pearson chi-square of integer draws against Poisson(lam), bins of expected count >= 20 (tails pooled)."""
    from scipy import stats

    k = np.arange(int(lam - 8 * np.sqrt(lam)), int(lam + 8 * np.sqrt(lam)))
    p = stats.poisson.pmf(k, lam)
    p[0] += stats.poisson.cdf(k[0] - 1, lam)
    p[-1] += stats.poisson.sf(k[-1], lam)
    obs = np.bincount(np.clip(x.astype(np.int64), k[0], k[-1]) - k[0], minlength=k.size)
    exp = p * x.size
    keep = exp >= 20
    o = np.append(obs[keep], obs[~keep].sum())
    e = np.append(exp[keep], exp[~keep].sum())
    chi2 = float(np.sum((o - e) ** 2 / e))
    return chi2, stats.chi2.sf(chi2, o.size - 1)


def test_cornish_fisher_draws_are_poisson_at_the_switch_over_mean():
    """At the switch-over mean (100 electrons) 2e6 draws of the approximation pass a chi-square test
    against Poisson(100) and match its first three moments; the same test rejects the plain rounded
    Gaussian (no skew term) at p < 1e-6, so it has the power to see a wrong approximation.  (Computed
    exactly, the approximation needs ~4e8 draws to be told apart, the Gaussian ~6e4: detector.py.)"""
    from sreels.forward.detector import POISSON_EXACT_BELOW_E, poisson_cornish_fisher

    lam, n = POISSON_EXACT_BELOW_E, 2_000_000
    x = poisson_cornish_fisher(np.full(n, lam), np.random.default_rng(20261201)).astype(float)
    assert np.all(x == np.rint(x))
    _, p = _chi2_vs_poisson(x, lam)
    assert p > 1e-3, p
    d = x - lam
    assert abs(d.mean()) < 4 * np.sqrt(lam / n)
    assert d.var() == pytest.approx(lam, rel=4 * np.sqrt(2 / n))
    m3 = np.mean(d**3)   # third central moment lam (skewness 1/sqrt(lam)); its sd ~ sqrt(15 lam^3 / n)
    assert abs(m3 - lam) < 4 * np.sqrt(15 * lam**3 / n)
    g = np.rint(lam + np.sqrt(lam - 1 / 12) * np.random.default_rng(20261202).standard_normal(n))
    assert _chi2_vs_poisson(g, lam)[1] < 1e-6
    assert abs(np.mean((g - lam) ** 3) - lam) > 6 * np.sqrt(15 * lam**3 / n)


def test_counts_are_exact_poisson_below_the_switch_over_and_the_sampling_is_recorded():
    """Below the switch-over the camera's electron counts are Generator.poisson's own draws (same
    generator state, same numbers); the readout records how many pixels were approximated."""
    from sreels.forward.detector import POISSON_EXACT_BELOW_E

    det = Detector(gain_counts_per_e=1.0, readout_noise_counts=0.0, psf_decay=0.0, dark_subtracted=False,
                   dark_offset_counts=0.0)
    lam = np.random.default_rng(3).uniform(0.0, 99.0, (50, 400))
    out = apply_detector(lam, det, np.random.default_rng(11))
    np.testing.assert_array_equal(out.counts, np.random.default_rng(11).poisson(lam))
    assert out.sampling["pixels_approximated"] == 0 and out.sampling["poisson"] == "numpy Generator.poisson"
    lam[:, :100] += 200.0
    out = apply_detector(lam, det, np.random.default_rng(11))
    assert out.sampling["pixels_approximated"] == 5000 == np.count_nonzero(lam >= POISSON_EXACT_BELOW_E)
    exact = apply_detector(lam, det, np.random.default_rng(11), exact_below=np.inf)
    assert exact.sampling["pixels_approximated"] == 0
    np.testing.assert_array_equal(out.counts[:, 100:] >= 0, True)


def test_simulated_images_record_their_sampling():
    from sreels.config import Scenario
    from sreels.forward.simulate import simulate

    sim = simulate(Scenario(rows=40, row_nm=47.0), rng=5)
    rec = {k: w.sampling for k, w in sim.windows.items()}
    assert rec["high"]["pixels_approximated"] == rec["high"]["pixels"]        # thousands of electrons
    assert 0 < rec["lowloss"]["pixels_approximated"] < 0.2 * rec["lowloss"]["pixels"]   # the ZLP only
    exact = simulate(Scenario(rows=40, row_nm=47.0), rng=5, poisson_exact_below=np.inf)
    assert all(w.sampling["pixels_approximated"] == 0 for w in exact.windows.values())
    assert simulate(Scenario(rows=40, row_nm=47.0), rng=5, noise_free=True).windows["high"].sampling is None


def test_a_counts_plan_gives_the_same_readout_and_must_match_its_image():
    """A readout with a plan made once (what simulate keeps with a cached expectation) is the readout
    without it, draw for draw, for exact, approximated and mixed images."""
    from sreels.forward.detector import counts_plan

    lam = np.random.default_rng(4).uniform(0.0, 300.0, (30, 200))
    for eb in (100.0, np.inf, 0.5):
        plan = counts_plan(lam, eb)
        a = apply_detector(lam, Detector(), np.random.default_rng(9), eb)
        b = apply_detector(lam, Detector(), np.random.default_rng(9), eb, plan=plan)
        np.testing.assert_array_equal(a.counts, b.counts)
        assert a.sampling == b.sampling
    with pytest.raises(ValueError, match="another image"):
        apply_detector(lam[:10], Detector(), np.random.default_rng(9), 100.0, plan=counts_plan(lam, 100.0))
    with pytest.raises(ValueError, match="finite"):
        counts_plan(np.array([[1.0, -2.0]]))
