"""The low-loss window and plural scattering in the forward model."""

import dataclasses

import numpy as np
import pytest

from sreels.config import Instrument, Scenario
from sreels.forward import lowloss as fl
from sreels.forward.simulate import simulate


def dual(**kw):
    """The instrument with the low-loss window and plural scattering (opt-in)."""
    return Instrument(**{"plural_scattering": True, "lowloss_window": True, **kw})

SMALL = Scenario(rows=40, row_nm=47.0)


def test_mean_free_path_is_iakoubovskii_eq9_as_exspy():
    exspy = pytest.importorskip("exspy")
    from exspy._misc.eels.electron_inelastic_mean_free_path import iMFP_Iakoubovskii, iMFP_angular_correction
    del exspy
    for rho in (2.62, 2.95, 21.45):
        # exspy multiplies t/lambda_inf by the correction: lambda(beta) = lambda_inf x correction
        ref = iMFP_Iakoubovskii(rho, 300.0) * iMFP_angular_correction(rho, 300.0, 0.0, 10.0)
        assert fl.imfp_iakoubovskii_nm(rho, 300.0, 10.0) == pytest.approx(ref, rel=1e-9)
    # numbers quoted in the docstrings
    assert fl.imfp_iakoubovskii_nm(2.95, 300.0, 10.0) == pytest.approx(195.0, abs=1.0)
    assert fl.free_electron_plasmon_ev(fl.lasgtp_valence_per_nm3(1.0)) == pytest.approx(24.7, abs=0.1)


def test_lowloss_window_conserves_electrons_and_holds_t_over_lambda():
    inst = dual(energy_distortion_ev=0.0, spatial_blur_fwhm_nm=0.0)
    sim = simulate(SMALL, inst, noise_free=True, rng=0)
    ll = sim.windows["lowloss"]
    n_e = inst.dose_e_per_row_s * inst.lowloss_exposure_s
    el = ll.electrons
    # what falls beyond the window's end (194.7 eV): the plasmons' E^-3 tail and the Si/P-L continua, < 1.5 %
    assert np.all(el.sum(1) / n_e > 0.985) and np.all(el.sum(1) / n_e <= 1.0 + 1e-9)
    # the unscattered fraction is exp(-t/lambda), t/lambda here of the window (plasmons + inner shells
    # below 194.7 eV; those beyond it, < 1 %, also deplete the ZLP): ZLP counted within +-2 eV
    e = ll.energy.energy_ev
    zlp = el[:, np.abs(e) <= 2.0].sum(1) / n_e
    tl = sim.truth_columns()["t_over_lambda"]
    np.testing.assert_allclose(-np.log(zlp), tl, rtol=0.01)
    assert 0.45 < np.median(tl) < 0.6 and tl[0] > 0.7  # ~100 nm of LASGTP (lambda 195 nm); Pt (121 nm)


def test_zlp_line_moves_with_the_edges():
    inst = dual(energy_distortion_ev=0.3, drift_ev=0.2, spatial_blur_fwhm_nm=0.0, zlp_tail_ev=0.1)
    sim = simulate(SMALL, inst, noise_free=True, rng=0)
    ll = sim.windows["lowloss"]
    e = ll.energy.energy_ev
    fine = np.arange(-1.0, 1.0, 0.001)
    # the maximum of each row's ZLP (interpolated by the FFT shift theorem) sits at the row's shift
    from scipy.interpolate import CubicSpline
    peak = np.array([fine[np.argmax(CubicSpline(e, r)(fine))] for r in ll.electrons])
    np.testing.assert_allclose(peak, sim.shift_ev, atol=0.005)
    np.testing.assert_allclose(sim.truth_columns()["zlp_shift_ev"], sim.shift_ev)


def test_plural_scattering_keeps_exp_minus_t_over_lambda_of_the_white_lines():
    high = dataclasses.replace(dual().window("high"), background_per_ev=1e-12)  # edges only
    base = dual(energy_distortion_ev=0.0, spatial_blur_fwhm_nm=0.0, plural_scattering=False,
                      windows=(high,))
    a = simulate(SMALL, base, noise_free=True, rng=0)
    b = simulate(SMALL, dataclasses.replace(base, plural_scattering=True), noise_free=True, rng=0)
    ea, eb = a.windows["high"].electrons, b.windows["high"].electrons
    e = a.windows["high"].energy.energy_ev
    wl = (e > 456.5) & (e < 459.0)
    tl = b.truth_columns()["t_over_lambda"]
    ok = ~b.profiles.in_pt
    # the sharp L3 t2g line keeps exp(-t/lambda); the plasmon onset (E P(E) -> 0 at 0 eV) adds < 1 %
    np.testing.assert_allclose(eb[ok][:, wl].sum(1) / ea[ok][:, wl].sum(1), np.exp(-tl[ok]), rtol=0.01)
    # intensity moves up: the centroid of the spectrum rises
    assert np.all((eb[ok] * e).sum(1) / eb[ok].sum(1) > (ea[ok] * e).sum(1) / ea[ok].sum(1) + 2.0)


def test_zlp_shape_has_its_maximum_at_zero_and_the_stated_width():
    f = np.fft.rfftfreq(8192, d=0.001)
    for tail in (0.0, 0.1, 0.3):
        y = np.fft.irfft(fl.zlp_tf(f, 0.5, tail) * np.exp(2j * np.pi * f * 4.096), n=8192)
        x = np.arange(8192) * 0.001 - 4.096
        assert abs(x[np.argmax(y)]) <= 0.001
        assert y.sum() == pytest.approx(1.0, rel=1e-9)
        above = x[y >= 0.5 * y.max()]
        assert above[-1] - above[0] == pytest.approx(fl.zlp_fwhm_ev(0.5, tail), abs=0.003)


def test_simulate_writes_a_lowloss_window_exspy_reads(tmp_path):
    """`sreels simulate` output: lowloss.hspy opens as an EELSSpectrum; exspy's elastic threshold and
    log-ratio thickness run on it and agree with the truth column within 5 % (median)."""
    hs = pytest.importorskip("hyperspy.api")
    pytest.importorskip("exspy")
    from sreels.forward.output import write_simulation
    from sreels.io import read_csv

    sim = simulate(Scenario(rows=24, row_nm=60.0), dual(), rng=5)
    out = write_simulation(sim, tmp_path / "sim")
    truth = read_csv(out / "truth.csv")
    assert {"t_over_lambda", "zlp_shift_ev"} <= set(truth)
    s = hs.load(str(out / "lowloss.hspy"))
    s.set_signal_type("EELS")
    assert s.axes_manager[-1].offset == pytest.approx(-10.0)
    th = s.estimate_elastic_scattering_threshold(window=10)
    t = s.estimate_thickness(threshold=th).data
    ok = np.isfinite(t)
    assert ok.sum() >= 20
    assert np.median(np.abs(t[ok] / truth["t_over_lambda"][ok] - 1)) < 0.05
