"""Data-free checks of the shape definitions the forward model and the truth share (issue 16):
a Gaussian's FWHM, the blur along y, the Li-K main peak.  The simulation and its ``*_row``
truth use the same functions, so the pull tests cannot see a wrong width: these can."""

import numpy as np
import pytest

from sreels.axes import EnergyAxis
from sreels.config import Instrument
from sreels.forward import edges as ed
from sreels.forward.instrument import blur_rows
from sreels.forward.model import reference_spectra


def _fwhm(x, y):
    half = y.max() / 2
    above = np.flatnonzero(y >= half)
    i0, i1 = above[0], above[-1]
    left = np.interp(half, [y[i0 - 1], y[i0]], [x[i0 - 1], x[i0]])
    right = np.interp(half, [y[i1 + 1], y[i1]], [x[i1 + 1], x[i1]])
    return right - left


@pytest.mark.parametrize("fwhm", [0.5, 2.5, 6.0])
def test_gaussian_has_the_stated_fwhm_and_area(fwhm):
    e = np.arange(400.0, 600.0, 0.001)
    g = ed.gaussian(e, 500.0, fwhm, area=3.0)
    assert _fwhm(e, g) == pytest.approx(fwhm, rel=1e-4)
    assert np.trapezoid(g, e) == pytest.approx(3.0, rel=1e-9)


@pytest.mark.parametrize("fwhm_nm, row_nm", [(6.0, 1.0), (12.0, 5.7)])
def test_blur_along_y_has_the_stated_fwhm(fwhm_nm, row_nm):
    """Second moment of a blurred delta row (both kernel branches): sd = FWHM / 2.3548 / row.
    (Below ~0.9 row the sampled kernel is narrower than the Gaussian it samples: at the default
    6 nm on 5.7 nm rows its sd is 0.84x the stated one; the truth columns use the same kernel.)"""
    img = np.zeros((81, 1))
    img[40] = 1.0
    out = blur_rows(img, fwhm_nm, row_nm)[:, 0]
    k = np.arange(81) - 40
    sd = np.sqrt(np.sum(out * k**2) / out.sum())
    target = fwhm_nm / (2 * np.sqrt(2 * np.log(2))) / row_nm
    assert out.sum() == pytest.approx(1.0, rel=1e-12)
    assert sd == pytest.approx(target, rel=0.03 if target < 1.5 else 0.005)


def test_li_k_main_peak_is_at_61p8_ev():
    """The resolution-convolved Li-K reference peaks at the measured 61.8 eV (DESIGN.md; Saitoh
    et al. 2018: ~62 eV) within 0.1 eV."""
    ax = EnergyAxis(40.0, 0.01, 6000)
    r = reference_spectra(ax, Instrument(), ("Li-K",))["Li-K"]
    m = (ax.energy_ev > 56) & (ax.energy_ev < 70)
    assert ax.energy_ev[m][np.argmax(r[m])] == pytest.approx(61.8, abs=0.1)
