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
    # below 194.7 eV; the inner shells' tails beyond it, 1.2 % of t/lambda, also deplete the ZLP):
    # ZLP counted within +-2 eV (the whole unscattered fraction: test (c) below)
    e = ll.energy.energy_ev
    zlp = el[:, np.abs(e) <= 2.0].sum(1) / n_e
    tl = sim.truth_columns()["t_over_lambda"]
    assert np.all(-np.log(zlp) > tl * (1 - 2e-3))   # (the Pt row: its 20 eV wide plasmon within 2 eV)
    np.testing.assert_allclose(-np.log(zlp), tl, rtol=0.02)
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


# ---------------------------------------------------------------- linear (wrap-free) plural scattering
THICK = Scenario(rows=40, row_nm=47.0, thickness_nm=167.0)   # t/lambda ~0.9 in the electrolyte


def test_low_loss_below_the_zlp_is_the_zlp_s_own_tail():
    """(a) Nothing of the plural tails folds back below the ZLP: below -3 eV the low loss is the ZLP's
    own Gaussian side (exp(-100) of its maximum at -3 eV with FWHM 0.5 eV, i.e. nothing).  The circular
    convolution put the tails' wrap there: 0.39 electrons per channel at -10 to -5 eV (2e-5 of the
    maximum), measured before the damped grid; now < 1e-9 of the maximum."""
    inst = dual(zlp_tail_ev=0.1)
    sim = simulate(THICK, inst, noise_free=True, rng=0)
    el = sim.windows["lowloss"].electrons
    e = sim.windows["lowloss"].energy.energy_ev
    assert el[:, e < -3.0].max() < 1e-8 * el.max()
    assert el[:, e > 100.0].min() > 1e-6 * el.max()   # while the plural tail above is there


def test_core_loss_windows_do_not_depend_on_the_padding():
    """(b) The convolution is linear: an upper pad of 300 eV instead of 25.6 eV (FFT length 7200
    instead of 4374 with the 204.8 eV lower pad; 6075 and 3375 with 102.4 eV; another damping) changes no channel of the Ti-L/O-K and Li-K windows by more than
    1e-4 relative at t/lambda 0.9 (measured < 1.1e-5; 420-480 eV moved by 1.6 % with the circular
    convolution, a 256 vs 600 eV pad by 0.8 %)."""
    from sreels.forward.instrument import energy_distortion
    from sreels.forward.model import RowState, WindowModel
    from sreels.forward.profiles import build_profiles

    inst = dual()
    p = build_profiles(THICK)
    s = RowState.from_profiles(p, energy_distortion(p.y_nm, 0.3, 0.1))
    for name in ("high", "low"):
        a, b = WindowModel(inst.window(name), inst), WindowModel(inst.window(name), inst, pad_hi_ev=300.0)
        assert a.grid.n_fft != b.grid.n_fft
        ea, eb = a.electrons(s, THICK.row_nm), b.electrons(s, THICK.row_nm)
        np.testing.assert_allclose(ea, eb, rtol=1e-4, atol=0)


def test_a_window_whose_lower_pad_reaches_below_150_ev_is_finite():
    """The plurally scattered power-law background is the tail of single losses from 150 eV up
    (BACKGROUND_SCATTERED_EV); a window at 160 eV, whose 204.8 eV lower pad reaches -45 eV, gets no power
    law below 150 eV (it read NaN everywhere: (E / E_ref)^-r at E <= 0).  The cut's plasmon replica shows
    in such a window (+18 % from 170 to 180 eV, measured): below 150 eV the model's background is the low loss's
    tail, which it does not join smoothly; the study's windows (40 and 420 eV) do not meet it."""
    from sreels.config import Window
    from sreels.forward.model import BACKGROUND_SCATTERED_EV

    w = Window("mid", 160.0, channels=1024, background_r=3.0, background_per_ev=2e-4, background_ref_ev=190.0)
    inst = Instrument(windows=(Instrument().windows[0], w))
    c = simulate(Scenario(rows=20, row_nm=50.0), inst, noise_free=True, rng=0).windows["mid"].electrons
    assert np.all(np.isfinite(c)) and np.all(c > 0)
    # from ~2 plasmon energies above the cut the background falls as its source does
    assert BACKGROUND_SCATTERED_EV == 150.0 and np.all(np.diff(c[10, 300::100]) < 0)


def test_unscattered_fraction_is_exp_minus_every_single_scattering_probability():
    """(c) The ZLP holds exp(-t/lambda - sum_k n_k t sigma_k) of the electrons: Poisson in t/lambda and
    in the shallow edges' whole cross-sections (physically normalised, not over the FFT grid, which
    left 0.16 % more in the ZLP).  One narrow plasmon (25 eV, 4 eV wide: < 2e-4 t/lambda of its weight
    within 1.5 eV of 0), no blur, no distortion: the ZLP counted within +-1.5 eV."""
    from sreels.forward import edges as ed
    from sreels.forward.model import RowState, fixed_edge_densities, shallow_edges
    from sreels.forward.profiles import build_profiles

    inst = dual(energy_distortion_ev=0.0, spatial_blur_fwhm_nm=0.0, plasmon_ev=25.0, plasmon_fwhm_ev=4.0)
    sim = simulate(THICK, inst, noise_free=True, rng=0)
    ll = sim.windows["lowloss"]
    e = ll.energy.energy_ev
    zlp = ll.electrons[:, np.abs(e) <= 1.5].sum(1) / (inst.dose_e_per_row_s * inst.lowloss_exposure_s)
    p = build_profiles(THICK)
    s = RowState.from_profiles(p, np.zeros(p.y_nm.size))
    tau, _ = fl.row_scattering(s, inst)
    names = shallow_edges(inst)
    beam = ed.Beam(inst.beam_energy_kev, inst.collection_semiangle_mrad * 1e-3)
    # every loss of every shallow edge, by trapezoidal quadrature of its shape (0.1 eV steps to 400 eV,
    # 300 log-spaced steps to 30 keV, E^-3.8 beyond)
    x = np.concatenate([np.arange(1.0, 400.0, 0.1), np.geomspace(400.0, 3e4, 300)])
    sig = np.array([np.trapezoid(ed.EDGES[n].shape(x, beam), x) for n in names])
    sig += np.array([ed.EDGES[n].shape(np.array([3e4]), beam)[0] * 3e4 / 2.8 for n in names])
    expected = np.exp(-tau - fixed_edge_densities(names, s) @ sig)
    assert 0.2 < expected.min() and expected.max() < 0.5
    np.testing.assert_allclose(zlp, expected, rtol=3e-4)


def test_windows_from_the_shared_inverse_fft_equal_their_own_models():
    """simulate() takes the low-loss and Li-K windows from one inverse FFT of the rows' kernel on a common
    grid (:class:`ImpulseGroup`) and every window from one kernel evaluation per block: the same numbers
    (1e-6 relative, the damped grids' round-off) as each window's own model and its own grid."""
    from sreels.forward.instrument import blur_rows
    from sreels.forward.lowloss import lowloss_electrons
    from sreels.forward.model import RowState, shallow_edges
    from sreels.forward.simulate import impulse_group, lowloss_grid, window_models

    inst = dual(energy_distortion_ev=0.3, zlp_tail_ev=0.1)
    models = window_models(inst)
    assert impulse_group(models, inst, lowloss_grid(inst)) is not None
    sim = simulate(THICK, inst, noise_free=True, rng=0)
    s = RowState.from_profiles(sim.profiles, sim.shift_ev)
    for name in ("low", "high"):
        np.testing.assert_allclose(sim.windows[name].electrons, models[name].electrons(s, THICK.row_nm), rtol=1e-6)
    n_e = inst.dose_e_per_row_s * inst.lowloss_exposure_s
    own = lowloss_electrons(lowloss_grid(inst), inst, s, n_e, shallow_edges(inst)).electrons
    ll = sim.windows["lowloss"].electrons
    big = ll > 1e-6 * ll.max()
    np.testing.assert_allclose(ll[big], blur_rows(own, inst.spatial_blur_fwhm_nm, THICK.row_nm)[big], rtol=1e-6)


def test_coarse_channels_hold_the_same_electrons_as_fine_ones():
    """Channels coarse against the ZLP (0.25-0.5 eV per channel at 0.5 eV FWHM) are computed on sub-channels and
    summed: the low-loss window's electrons, its ZLP and t/lambda, and the core-loss windows' level per eV equal
    those at 0.1 eV per channel.  Before, at 0.3 eV the low-loss window held 17 % too many electrons and t/lambda
    read 0.69 for 0.54 (the ZLP's transform, not band-limited there, aliased and amplified by the undamping)."""
    from sreels.forward.simulate import oversampling
    sc = Scenario(rows=12, row_nm=100.0, first_row_nm=500.0)
    base = Instrument()
    out = {}
    for de in (0.1, 0.3, 0.5):
        n = int(round(204.8 / de))
        inst = dataclasses.replace(base, lowloss_channels=n, windows=tuple(
            dataclasses.replace(w, channels=n, scale_ev=de) for w in base.windows))
        sim = simulate(sc, inst, noise_free=True, rng=0)
        ll, low = sim.windows["lowloss"], sim.windows["low"]
        e = ll.energy.energy_ev
        out[de] = (ll.electrons.sum(1), ll.electrons[:, np.abs(e) < 3].sum(1), sim.truth_columns()["t_over_lambda"],
                   np.array([np.interp(60.0, low.energy.energy_ev, r) for r in low.electrons]) / de)
        assert oversampling(inst) == {0.1: 1, 0.3: 3, 0.5: 5}[de]
    for de in (0.3, 0.5):
        for a, b in zip(out[de], out[0.1]):
            np.testing.assert_allclose(a, b, rtol=2e-3)
