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
