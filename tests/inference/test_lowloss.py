"""The low-loss window in the inversion: ZLP reference, resolution, t/lambda, Fourier ratio."""

import dataclasses

import numpy as np
import pytest

from sreels.config import Instrument, Scenario
from sreels.forward.lowloss import zlp_fwhm_ev
from sreels.forward.simulate import simulate
from sreels.inference.fast import fit_image
from sreels.inference.deconvolve import fourier_ratio
from sreels.inference.load import load_measurement
from sreels.inference.lowloss import elastic_threshold, log_ratio_thickness, zlp_centre, zlp_fwhm

from .fasthelpers import windows_of


def dual(**kw):
    """The instrument with the low-loss window and plural scattering (opt-in)."""
    return Instrument(**{"plural_scattering": True, "lowloss_window": True, **kw})

SMALL = Scenario(rows=40, row_nm=47.0)
EDGES_ONLY = dataclasses.replace(dual().window("high"), background_per_ev=1e-12)


@pytest.mark.parametrize("tail", [0.0, 0.1])
def test_fourier_ratio_round_trip_is_single_scattering_without_the_shift(tail):
    """Noise-free: deconvolving a plural-scattered, distorted window by its own low loss gives the
    single-scattering window of a straight ZLP line with the reconvolution's resolution, to 0.1 %."""
    inst = dual(windows=(EDGES_ONLY,), zlp_tail_ev=tail, energy_distortion_ev=0.3, spatial_blur_fwhm_nm=0.0)
    b = simulate(SMALL, inst, noise_free=True, rng=0)
    a = simulate(SMALL, dataclasses.replace(inst, plural_scattering=False, energy_distortion_ev=0.0, zlp_tail_ev=0.0),
                 noise_free=True, rng=0)
    ll, hw = b.windows["lowloss"], b.windows["high"]
    d, fac = fourier_ratio(hw.expected_counts, hw.energy, ll.expected_counts, ll.energy, 0.5, 0.0,
                           b.config.detector.psf_decay)
    ref = a.windows["high"].expected_counts
    ok = ~b.profiles.in_pt
    sl = hw.energy.slice(440.0, 600.0)
    assert np.max(np.abs(d - ref)[ok, sl]) < 1e-3 * np.max(ref[ok, sl])
    # noise inflation ~ exp(2 t/lambda) (a tail narrower than the reconvolution's adds to it)
    tl = b.truth_columns()["t_over_lambda"][ok]
    lo = 0.95 if tail == 0 else 1.05
    assert np.all(fac[ok] > lo * np.exp(2 * tl) * 0.97) and np.all(fac[ok] < 1.25 * np.exp(2 * tl))


def test_zlp_centre_width_and_thickness_on_noisy_rows():
    """Seeded: ZLP maxima within 0.01 eV of the rows' shifts, FWHM of the model's shape (0.5 eV
    Gaussian, widened by the camera's PSF), t/lambda within 2 % and pulls of t/lambda ~ N(0, 1)."""
    inst = dual(energy_distortion_ev=0.2, drift_ev=0.15)
    sims = [simulate(Scenario(rows=60, row_nm=31.0), inst, rng=s) for s in (1, 2, 3)]
    z, c_err, rel = [], [], []
    for sim in sims:
        ll = sim.windows["lowloss"]
        c, im = zlp_centre(ll.counts, ll.energy)
        fw = zlp_fwhm(ll.counts, ll.energy, im)
        thr = elastic_threshold(ll.counts, ll.energy, c, fw)
        tl, err = log_ratio_thickness(ll.counts, thr, sim.config.detector.gain_counts_per_e,
                                      sim.config.detector.readout_noise_counts)
        t = sim.truth_columns()
        c_err.append(c - t["zlp_shift_ev"])
        assert np.all((fw > 0.5) & (fw < 0.65))
        rel.append(tl / t["t_over_lambda"] - 1)
        z.append((tl - t["t_over_lambda"]) / err)
    c_err, rel, z = map(np.concatenate, (c_err, rel, z))
    assert np.sqrt(np.mean(c_err**2)) < 0.01
    assert np.max(np.abs(rel)) < 0.02
    # the threshold's systematic part (plasmon onset below it) is not in the error: |mean| < 1.5
    assert abs(z.mean()) < 1.5 and 0.6 < z.std() < 1.6
    assert zlp_fwhm_ev(0.5, 0.0) == 0.5


def test_fast_path_with_low_loss_reports_the_columns_and_honest_pulls():
    """The default interface (t/lambda ~ 0.5, plural scattering on): Ti3+ and R_OO pulls honest
    after the Fourier-ratio deconvolution, t/lambda within 5 %, ZLP line within 0.02 eV rms."""
    sim = simulate(Scenario(), dual(), rng=7)
    res = fit_image(windows_of(sim))
    t, c = sim.truth_columns(), res.columns
    # rows at the Pt interface (y < 20 nm) are left out: the blur lends Pt rows a little O-K whose
    # peak "b" fit can fail unflagged (seed 7: one row at y = -6 nm, z = -28; not a low-loss effect)
    from sreels.inference.fast import usable
    ok = usable(res.status) & (t["y_nm"] > 20.0)
    assert ok.sum() > 300
    for col, tcol in (("ti3_fraction_raw", "ti3_fraction_row"), ("r_oo_nm", "r_oo_nm_row")):
        zz = ((c[col] - t[tcol]) / c[col.replace("_raw", "") + "_err"])[ok]
        assert abs(zz.mean()) < 0.3 and 0.8 < zz.std() < 1.3, (col, zz.mean(), zz.std())
    assert np.max(np.abs(c["t_over_lambda"] / t["t_over_lambda"] - 1)) < 0.05
    assert np.sqrt(np.mean((c["zlp_shift_ev"] - t["zlp_shift_ev"]) ** 2)) < 0.02
    assert np.all(np.isfinite(c["t_over_lambda_err"])) and np.all(c["resolution_ev"] > 0.45)
    assert any("Fourier-ratio" in n for n in res.notes)


def test_ti3_fraction_of_ti4_rows_unbiased_at_t_over_lambda_0_9():
    """Noise-free DualEELS image at t/lambda 0.89 (the study's interface on 165 rows of 11.4 nm): the Ti4+
    rows read Ti3+ within 0.15 of their error of 0 on average (measured +0.045 sigma, f3 +0.0002).  The
    Fourier ratio needs the spectrum below the Ti-L2,3 window out to the plural kernel's reach (~200 eV:
    Al/Si/P-L2,3, multiple plasmons); with the window extended 128 eV down and the forward background cut
    102.4 eV below the window it read -0.37 sigma (f3 -0.0015; measured), Ti3+ pulls -0.33 at t/lambda 0.9."""
    from sreels.inference.fast import usable
    from .fasthelpers import SCENARIOS

    sc = dataclasses.replace(SCENARIOS["study"], thickness_nm=165.0, rows=165, row_nm=11.4)
    sim = simulate(sc, noise_free=True)
    res = fit_image(windows_of(sim), progress=False)
    t, c = sim.truth_columns(), res.columns
    assert 0.85 < np.nanmedian(c["t_over_lambda"]) < 0.95
    f3, t3 = c["ti3_fraction_raw"], t["ti3_fraction_row"]
    ti4 = usable(res.status, "ti") & np.isfinite(f3) & (t3 < 0.05)
    assert ti4.sum() > 120
    z = ((f3 - t3) / c["ti3_fraction_err"])[ti4]
    assert abs(z.mean()) < 0.15 and abs(np.mean((f3 - t3)[ti4])) < 6e-4, (z.mean(), np.mean((f3 - t3)[ti4]))


@pytest.mark.slow
@pytest.mark.parametrize("tl", [0.3, 0.6, 0.9])
def test_pulls_at_three_thicknesses(tl):
    """The issue's targets at t/lambda 0.3, 0.6, 0.9 (thickness over the parent's lambda, 194.7 nm),
    two seeds pooled: Ti3+ and R_OO pulls mean within +-0.3 and sd 0.8-1.3, t/lambda within 5 %,
    ZLP line within 0.02 eV rms.  li_rel's pulls (0.96-1.09 sd, measured) are asserted by the scenario
    tests of tests/inference/test_fast_accuracy.py.  Measured (n 636 each): Ti3+ +0.04/1.03, +0.04/1.05,
    +0.07/1.08 and R_OO -0.05/1.01, -0.08/1.04, -0.08/1.04 (mean/sd) at t/lambda 0.3/0.6/0.9; Ti3+ at 0.9
    was -0.37 before the Fourier ratio's lower pad reached the plural kernel's ~200 eV (a strict xfail)."""
    zs = {"ti3_fraction_raw": [], "r_oo_nm": []}
    for seed in (11, 12):
        sim = simulate(Scenario(thickness_nm=tl * 194.7), dual(), rng=seed)
        res = fit_image(windows_of(sim))
        t, c = sim.truth_columns(), res.columns
        from sreels.inference.fast import usable
        ok = usable(res.status) & (t["y_nm"] > 20.0)
        for col, tcol in (("ti3_fraction_raw", "ti3_fraction_row"), ("r_oo_nm", "r_oo_nm_row")):
            zs[col].append(((c[col] - t[tcol]) / c[col.replace("_raw", "") + "_err"])[ok])
        assert np.max(np.abs(c["t_over_lambda"] / t["t_over_lambda"] - 1)) < 0.05
        assert np.sqrt(np.mean((c["zlp_shift_ev"] - t["zlp_shift_ev"]) ** 2)) < 0.02
    for col, z in zs.items():
        z = np.concatenate(z)
        assert abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.3, (col, z.mean(), z.std())


def _pair(shared_data, core, low):
    d = shared_data / "internal-only"
    if not (d / core).exists() or not (d / low).exists():
        pytest.skip(f"{core} / {low} absent")
    return d / core, d / low


PAIRS = [("exspy-demos/LSMO_STO_linescan.hspy", "exspy-demos/LSMO_STO_linescan_low_loss.hspy", 0.05),
         ("exspy-demos/LSMO_linescan.hspy", "exspy-demos/LSMO_linescan_low_loss.hspy", 0.05),
         ("practical_EELS_QEM/lisp_core_loss.hspy", "practical_EELS_QEM/low_loss_core_loss.hspy", 0.05),
         ("Ti-Oxidation-EELS-data-processing/TiO2_TiL_SI_high-loss.dm4",
          "Ti-Oxidation-EELS-data-processing/TiO2_TiL_SI_low-loss.dm4", 0.06)]


@pytest.mark.parametrize("core,low,tol", PAIRS, ids=["LSMO_STO", "LSMO", "lisp", "TiO2"])
def test_measured_dualeels_pairs_load_in_any_order_and_match_exspy(shared_data, core, low, tol):
    """Real DualEELS pairs: the low-loss window is recognised by its ZLP whatever the order; t/lambda
    equals exspy's estimate_thickness at the same threshold (same method), and agrees with exspy's
    own threshold (first inflexion, exspy's estimate_elastic_scattering_threshold) within ``tol``
    (median over the pixels; TiO2: 5.1 %, the two thresholds differ by ~3 eV in its ZLP valley)."""
    hs = pytest.importorskip("hyperspy.api")
    pytest.importorskip("exspy")
    fc, fl_ = _pair(shared_data, core, low)
    for order in ([fc, fl_], [fl_, fc]):
        w = load_measurement(order)
        assert sorted(w) == ["high", "lowloss"], sorted(w)
    ll = w["lowloss"]
    c, im = zlp_centre(ll.counts, ll.energy)
    fw = zlp_fwhm(ll.counts, ll.energy, im)
    thr = elastic_threshold(ll.counts, ll.energy, c, fw)
    tl, err = log_ratio_thickness(ll.counts, thr)
    s = hs.load(str(fl_))
    s.set_signal_type("EELS")
    data = np.moveaxis(s.data, -1, -1).reshape(-1, s.data.shape[-1])
    assert data.shape == ll.counts.shape
    th = s._get_navigation_signal().transpose(signal_axes=0)
    th.data[:] = ll.energy.energy_ev[thr].reshape(th.data.shape) + 1e-6
    same = s.estimate_thickness(threshold=th).data.ravel()
    np.testing.assert_allclose(tl, same, rtol=2e-3)
    own = s.estimate_thickness(threshold=s.estimate_elastic_scattering_threshold()).data.ravel()
    good = np.isfinite(own)
    assert np.median(np.abs(tl[good] / own[good] - 1)) < tol
    assert np.all((tl > -0.05) & (tl < 1.5))  # TiO2 holds a vacuum pixel (t/lambda ~ 0)


def test_an_unknown_gain_is_measured_on_the_recorded_counts_not_the_deconvolved():
    """Gain not given: the noise level comes from second differences of the counts as recorded; of the
    deconvolved channels (smoothed by the reconvolution) it would read far too low and every row's
    chi^2 would explode (a measured TiO2 pair: 0.011 instead of 16.6 x counts, all rows withheld)."""
    sim = simulate(SMALL, dual(), rng=5)
    wins = {k: dataclasses.replace(w, gain_counts_per_e=None) for k, w in windows_of(sim).items()}
    res = fit_image(wins, progress=False)
    assert any("of the recorded counts" in n for n in res.notes)
    assert any("Fourier-ratio" in n for n in res.notes)
    from sreels.inference.fast import usable
    ok = usable(res.status, "ti")
    assert ok.mean() > 0.8
    chi2 = np.nanmedian(res.columns["ti_chi2_red"][ok])
    assert 0.3 < chi2 < 3.0, chi2


def test_a_low_loss_window_too_short_for_the_plasmons_is_not_used_to_deconvolve():
    """A low loss that stops on the plasmon region (-10 to 30 eV here) cannot remove plural scattering:
    the core-loss windows are fitted as recorded and the run says why; t/lambda from it is a lower bound."""
    sim = simulate(SMALL, dual(lowloss_channels=400), rng=5)
    res = fit_image(windows_of(sim), progress=False)
    assert any("too short to remove plural scattering" in n for n in res.notes)
    assert not any("Fourier-ratio" in n for n in res.notes)
    t = sim.truth_columns()
    # (the truth t_over_lambda is what this short window holds; the bound is on every loss's)
    assert np.all(res.columns["t_over_lambda"] < 0.9 * t["t_over_lambda_total"])
    from sreels.inference.fast import usable
    assert usable(res.status, "ti").mean() > 0.8


def test_measured_tio2_pair_with_a_short_low_loss_reads_ti4(shared_data):
    """The TiO2 spectrum image with its low loss (0.025 eV channels: the low loss ends at 46 eV, on the
    plasmon region): no deconvolution, the rows are fitted, and the Ti3+ fraction of this pure-Ti4+
    oxide is consistent with 0 within its stated error (reference-shape systematic included)."""
    core, low = _pair(shared_data, *PAIRS[3][:2])
    res = fit_image(load_measurement([low, core]), progress=False)
    from sreels.inference.fast import usable
    ok = usable(res.status, "ti")
    assert ok.mean() > 0.9 and any("too short" in n for n in res.notes)
    f3, err = res.columns["ti3_fraction"][ok], res.columns["ti3_fraction_err"][ok]
    assert abs(np.median(f3)) < 2 * np.median(err), (np.median(f3), np.median(err))
    assert np.median(res.columns["ti_chi2_red"][ok]) < 20


def test_without_a_low_loss_the_ti3_errors_carry_the_plural_bias():
    """t/lambda 0.54, plural scattering, no low-loss window: the white lines are broadened and f3 is
    biased by ~2-4 of its statistical errors; the stated plural-scattering systematic covers it (and
    the run says so), while a single-scattering simulation gets none."""
    from sreels.inference.fast import TI_PLURAL_SYST, usable
    for plural in (True, False):
        sim = simulate(SMALL, Instrument(plural_scattering=plural, lowloss_window=False), rng=9)
        res = fit_image(windows_of(sim), progress=False)
        t, c = sim.truth_columns(), res.columns
        ok = usable(res.status, "ti") & np.isfinite(c["ti3_fraction_raw"])
        assert ok.mean() > 0.8
        dev = (c["ti3_fraction_raw"] - t["ti3_fraction_row"])[ok]
        z_stat, z = dev / c["ti3_fraction_err_stat"][ok], dev / c["ti3_fraction_err"][ok]
        said = any("plural-scattering systematic" in n for n in res.notes)
        if plural:
            assert said and np.mean(np.abs(z_stat) > 2) > 0.3, np.abs(z_stat).mean()
            assert np.all(np.abs(z) < 2) and np.allclose(np.hypot(c["ti3_fraction_err_stat"], TI_PLURAL_SYST)[ok],
                                                        c["ti3_fraction_err"][ok])
        else:
            assert not said and 0.7 < z.std() < 1.4 and abs(z.mean()) < 0.4
        _check_r_oo_and_li_without_a_low_loss(sim, res, plural)


def _check_r_oo_and_li_without_a_low_loss(sim, res, plural):
    """The same images: R_OO's plural systematic (fast.R_OO_PLURAL_SYST) in each row's error and in the parent's
    (whose statistical error, ~0.05 pm, is ~10x smaller than the bias, ~+0.6 pm: the parent read +15 sigma before);
    the Li-K rows the single-scattering fit does not describe withheld (they read -190 % to +100 %)."""
    from sreels.inference.derived import derive, derived_truth
    from sreels.inference.fast import R_OO_PLURAL_SYST, usable, usable_by_edge
    t, c = sim.truth_columns(), res.columns
    ok = usable(res.status, "o") & np.isfinite(c["r_oo_nm"])
    assert ok.mean() > 0.8
    z = ((c["r_oo_nm"] - t["r_oo_nm_row"]) / c["r_oo_nm_err"])[ok]
    d = derive(res.position.y_nm, c, usable_by_edge(res.status))
    zp = (d["r_oo_parent_nm"] - derived_truth(sim)["r_oo_parent_nm"]) / d["r_oo_parent_nm_err"]
    unmodelled = np.array(["li_plural_unmodelled" in s for s in res.status])
    if plural:
        assert np.all(c["r_oo_plural_syst"] == R_OO_PLURAL_SYST) and np.all(np.abs(z) < 2.5), np.abs(z).max()
        assert abs(zp) < 2 and d["r_oo_parent_nm_err"] > 0.8 * R_OO_PLURAL_SYST * d["r_oo_parent_nm"], zp
        assert unmodelled.mean() > 0.5 and np.all(np.isnan(c["li_rel"][unmodelled]))
        assert np.all(np.isnan(c["li_per_fu"][unmodelled]))
        assert any("li_plural_unmodelled" in n for n in res.notes)
    else:
        assert np.all(c["r_oo_plural_syst"] == 0) and not unmodelled.any()
        assert 0.6 < z.std() < 1.5 and abs(zp) < 3


@pytest.mark.parametrize("seed", [700, 702])
def test_a_wide_zlp_leaves_li_and_r_oo_measured(seed):
    """A 1.5 eV resolution (a Schottky or thermionic gun): the Li-K tail's Fourier log is guarded where the
    ZLP's transform sinks into the low loss's noise, and reconvolved at the data's resolution; the O-K threshold
    is read with at least 1 eV of smoothing and its shift carried as a systematic.  Before: c_Li of the whole
    electrode 15 % low in these seeds (the rows' tails drowned in noise and their principal components with
    them), Li-K chi^2_red 23 noise-free, and every row's threshold o_threshold_low_snr noise-free."""
    from sreels.inference.fast import usable
    from sreels.inference.okpeaks import resolution_systematic_ev
    sim = simulate(Scenario(), Instrument(resolution_fwhm_ev=1.5), rng=seed)
    res = fit_image(windows_of(sim), progress=False)
    t, c = sim.truth_columns(), res.columns
    y = t["y_nm"]
    el = usable(res.status, "li") & (y > 20) & (y < 300)
    assert el.sum() > 40 and abs(np.median(c["li_rel"][el] / t["li_rel_row"][el]) - 1) < 0.04
    z = ((c["li_rel"] - t["li_rel_row"]) / c["li_rel_err"])[usable(res.status, "li") & np.isfinite(c["li_rel"])]
    assert abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.25, (z.mean(), z.std())
    ok = usable(res.status, "o")
    assert ok.mean() > 0.95
    zr = ((c["r_oo_nm"] - t["r_oo_nm_row"]) / c["r_oo_nm_err"])[ok]
    assert np.all(c["delta_e_b_syst_ev"] == resolution_systematic_ev(res.settings.resolution_fwhm_ev, 0.1)) and \
        0.05 < c["delta_e_b_syst_ev"][0] < 0.2
    assert abs(zr.mean()) < 1.0 and zr.std() < 1.3, (zr.mean(), zr.std())


def test_quarter_ev_channels_with_a_low_loss_reaching_the_core_edges():
    """0.25 eV per channel, the low-loss window to 502 eV (it holds Ti-L2,3 and O-K, as a DualEELS pair at this
    dispersion does): every row measured and the per-row pulls right.  Before: 2 rows in 3 flagged
    ti_negative_counts / o_negative_counts and li_poor_fit (the forward model's aliasing, :func:`oversampling`)."""
    from sreels.inference.fast import usable
    from sreels.inference.okpeaks import resolution_systematic_ev
    base = Instrument()
    inst = dataclasses.replace(base, windows=tuple(dataclasses.replace(w, channels=820, scale_ev=0.25)
                                                   for w in base.windows))
    sim = simulate(Scenario(), inst, rng=701)
    res = fit_image(windows_of(sim), progress=False)
    t, c = sim.truth_columns(), res.columns
    for edge, col, tcol in (("li", "li_rel", "li_rel_row"), ("ti", "ti3_fraction_raw", "ti3_fraction_row"),
                            ("o", "r_oo_nm", "r_oo_nm_row")):
        ok = usable(res.status, edge) & np.isfinite(c[col])
        assert ok.mean() > 0.95, edge
        z = ((c[col] - t[tcol]) / c[col.replace("_raw", "") + "_err"])[ok]
        assert abs(z.mean()) < 0.5 and 0.75 < z.std() < 1.3, (edge, z.mean(), z.std())
    assert c["delta_e_b_syst_ev"][0] == pytest.approx(resolution_systematic_ev(res.settings.resolution_fwhm_ev, 0.25))


def test_a_saturated_zlp_is_rebuilt():
    """The low loss recorded 4x longer than the default: the ZLP's top sits at the 16-bit ADC's maximum in every
    row.  Its rebuilt top gives t/lambda and c_Li as the unsaturated recording does (before: c_Li max -1.8 sigma,
    Ti3+ -0.21 sigma on every row); files with sreels metadata give the clip level, others show a flat top."""
    from sreels.inference.fast import usable
    from sreels.inference.lowloss import clipped_zlp, repair_clipped_zlp
    # a Gaussian ZLP of 0.5 eV on 0.1 eV channels, clipped at 60 % of its peak: rebuilt to 0.5 % of its area
    e = np.arange(-5, 5, 0.1)
    z = 1e5 * np.exp(-0.5 * (e / 0.2123) ** 2)[None, :] + 50.0
    clip = np.minimum(z, 0.6 * z.max())
    assert clipped_zlp(clip).all() and not clipped_zlp(z).any()
    assert repair_clipped_zlp(clip, clipped_zlp(clip)).sum() == pytest.approx(z.sum(), rel=5e-3)
    assert clip.sum() < 0.9 * z.sum()
    inst = Instrument(lowloss_exposure_s=0.008)
    sim = simulate(Scenario(), inst, rng=701)
    assert sim.windows["lowloss"].saturated.any()
    wins = windows_of(sim)
    for w in wins.values():  # the detector as `sreels simulate` writes it: the clip level known
        w.metadata["sreels"]["detector"] = dataclasses.asdict(sim.config.detector)
    res = fit_image(wins, progress=False)
    t, c = sim.truth_columns(), res.columns
    np.testing.assert_array_equal(c["zlp_clipped"], sim.windows["lowloss"].saturated.any(1))
    assert c["zlp_clipped"].mean() > 0.9 and any("ZLP is clipped" in n for n in res.notes)
    ok = np.isfinite(c["t_over_lambda"]) & (t["y_nm"] > 20)
    np.testing.assert_allclose(np.median(c["t_over_lambda"][ok] / t["t_over_lambda"][ok]), 1.0, atol=0.01)
    z_li = ((c["li_rel"] - t["li_rel_row"]) / c["li_rel_err"])[usable(res.status, "li") & np.isfinite(c["li_rel"])]
    assert abs(z_li.mean()) < 0.3 and 0.8 < z_li.std() < 1.2, (z_li.mean(), z_li.std())


def test_a_pedestal_under_the_low_loss_is_read_below_the_zlp_and_removed():
    """Seeded: a low loss recorded from -40 eV with a dark-reference residual of 40 counts per channel (the
    measured Fe/Cr pair's is 26-114, lowloss.PEDESTAL_GAP_EV) gives the clean image's t/lambda (pulls
    within 0 +- 0.4 / sd < 1.4 against the truth) and its Ti3+, R_OO and c_Li; the pedestal left in made
    t/lambda 0.76 for 0.54 (pull +84) and R_OO unmeasured.  The clean window is left as recorded."""
    from sreels.inference.lowloss import low_loss_floor

    sim = simulate(SMALL, Instrument(lowloss_offset_ev=-40.0), rng=3)
    ll = sim.windows["lowloss"]
    y, fl = low_loss_floor(ll.counts, ll.energy)
    assert not fl.pedestal.any() and np.array_equal(y, np.asarray(ll.counts, float))
    truth = sim.truth_columns()["t_over_lambda"]
    w = windows_of(sim)
    res = {}
    for ped in (0.0, 40.0):
        ww = dict(w, lowloss=dataclasses.replace(w["lowloss"], counts=np.asarray(w["lowloss"].counts, float) + ped))
        res[ped] = fit_image(ww, progress=False)
    c = res[40.0].columns
    z = (c["t_over_lambda"] - truth) / c["t_over_lambda_err"]
    assert abs(z.mean()) < 0.4 and z.std() < 1.4, (z.mean(), z.std())
    assert any("pedestal subtracted in 40 of 40 rows" in n for n in res[40.0].notes)
    for k in ("ti3_fraction", "r_oo_nm"):
        a, b = res[0.0].columns[k], c[k]
        d = (b - a) / res[0.0].columns[f"{k}_err"]
        assert np.nanmax(np.abs(d)) < 0.5 and np.isfinite(b).sum() >= np.isfinite(a).sum() - 1, (k, np.nanmax(np.abs(d)))
    # c_Li: the Li-K tail takes the pedestal's estimate (and each row's replica draws its counts): its rows move by
    # 0.43 sigma rms against the clean image's (seeds 3-6), its pulls stay (0.08 / 0.87 against 0.21 / 0.96)
    zl = (c["li_rel"] - sim.truth_columns()["li_rel"]) / c["li_rel_err"]
    assert np.isfinite(zl).sum() >= 38 and abs(np.nanmean(zl)) < 0.5 and np.nanstd(zl) < 1.4, (np.nanmean(zl), np.nanstd(zl))


def test_the_pedestal_ignores_spikes_and_a_zlp_tail_is_no_pedestal(shared_data):
    """Seeded: with 40 counts added and three detector-edge spikes of 1e5 counts in the first channels, the
    pedestal read is 40 within 4 standard errors on every row; pyEELSMODEL's measured SrTiO3 low loss, whose
    channels below the ZLP rise toward it (its tail: 0 / 1.4 / 3 counts at -40 / -25 / -16 eV), is left as
    recorded."""
    from sreels.inference.lowloss import low_loss_floor

    sim = simulate(SMALL, Instrument(lowloss_offset_ev=-40.0), rng=4)
    ll = sim.windows["lowloss"]
    c = np.asarray(ll.counts, float) + 40.0
    c[:, :3] += 1e5
    _, fl = low_loss_floor(c, ll.energy)
    rd = sim.config.detector.readout_noise_counts
    assert np.all(np.abs(fl.pedestal - 40.0) < 4 * 2 * rd / np.sqrt(200)), fl.pedestal
    f = shared_data / "licensed" / "pyEELSMODEL" / "ll.msa"
    if not f.exists():
        pytest.skip(f"{f} absent")
    w = load_measurement([f])["lowloss"]
    y, fl = low_loss_floor(w.counts, w.energy)
    assert not fl.pedestal.any() and np.array_equal(y, np.asarray(w.counts, float))


def test_single_precision_transforms_stay_far_below_the_noise(monkeypatch):
    """The Fourier ratio's transforms (deconvolve.FR_DTYPE) and the Li-K tail replicas' Fourier log run in float32:
    against float64 on noisy rows the deconvolved channels move by < 1e-3 of their noise sd (measured 9e-5), the
    variance factor by < 1e-5 (2e-7), and a tail by < 1e-3 of the spread two noise realisations give it (8e-5)."""
    import sreels.inference.deconvolve as dc
    from sreels.inference.lowloss import plural_tails, read_zlp

    sim = simulate(SMALL, dual(), rng=3)
    ll, hw = sim.windows["lowloss"], sim.windows["high"]
    out = {}
    for dt in (np.float64, np.float32):
        monkeypatch.setattr(dc, "FR_DTYPE", dt)
        out[dt] = fourier_ratio(hw.counts, hw.energy, ll.counts, ll.energy, 0.5, 0.0, sim.config.detector.psf_decay,
                                1.0, 3.0)
    (d64, f64), (d32, f32) = out[np.float64], out[np.float32]
    assert d32.dtype == np.float64
    assert np.max(np.abs(d32 - d64) / np.sqrt(np.maximum(d64, 1.0) * f64[:, None])) < 1e-3
    assert np.max(np.abs(f32 / f64 - 1)) < 1e-5
    y = np.asarray(ll.counts, float)
    centre, _, thr, *_ = read_zlp(y, ll.energy)
    args = (ll.energy, centre, ll.energy.energy_ev[thr], 0.5, 140.0, 1.0, 1.0)
    t64, t32 = plural_tails(y, *args)[0], plural_tails(y, *args, dtype=np.float32)[0]
    other = plural_tails(np.random.default_rng(1).poisson(np.maximum(ll.expected_counts, 0.0)).astype(float), *args)[0]
    assert np.sqrt(np.mean((t32 - t64) ** 2) / np.mean((other - t64) ** 2)) < 1e-3


def test_the_deconvolution_in_its_transforms_precision_holds_the_same_values():
    """fourier_ratio(dtype=None) returns the deconvolved channels in the transforms' precision (FR_DTYPE: what a Dask
    fit holds between passes, half the memory) and they are the float64 result's values exactly."""
    from sreels.inference.deconvolve import FR_DTYPE

    sim = simulate(SMALL, dual(), rng=4)
    ll, hw = sim.windows["lowloss"], sim.windows["high"]
    args = (hw.counts, hw.energy, ll.counts, ll.energy, 0.5, 0.0, sim.config.detector.psf_decay, 1.0, 3.0)
    (d64, f64), (d32, f32) = fourier_ratio(*args), fourier_ratio(*args, dtype=None)
    assert d64.dtype == np.float64 and d32.dtype == FR_DTYPE
    assert np.array_equal(d32.astype(float), d64) and np.array_equal(f32, f64)


def test_zlp_fwhm_of_peaks_wider_than_its_first_search():
    """zlp_fwhm looks for the half-maximum crossings within FWHM_SEARCH_CHANNELS of the maximum first: Gaussian
    ZLPs of 0.3-3 eV FWHM on 0.01 eV channels (3 eV: 150 channels either side, beyond that search) read their
    FWHM to 1e-3 eV, noise-free, next to each other in one block; a flat row (no half-maximum crossing
    anywhere) has no finite FWHM, as before."""
    from sreels.axes import EnergyAxis
    from sreels.inference.lowloss import FWHM_SEARCH_CHANNELS

    ax = EnergyAxis(-6.0, 0.01, 1400)
    fw = np.array([0.3, 1.0, 3.0, 0.5])
    e = ax.energy_ev
    y = 1e4 * np.exp(-0.5 * (e[None, :] / (fw[:, None] / (2 * np.sqrt(2 * np.log(2))))) ** 2)
    assert 0.5 * fw[2] / ax.scale_ev > FWHM_SEARCH_CHANNELS
    flat = np.vstack([y, np.full(e.size, 7.0)])
    _, imax = zlp_centre(flat, ax)
    got = zlp_fwhm(flat, ax, imax)
    np.testing.assert_allclose(got[:4], fw, atol=1e-3)
    assert not np.isfinite(got[4])


def test_li_k_in_the_low_loss_window_alone_takes_its_plural_scattering_from_it():
    """A low-loss spectrum that holds the Li-K edge (the default DualEELS low loss, -10 to 92 eV, at 2.5x its
    exposure), fitted alone: the edge's plural scattering (multiple plasmons, its plasmon replica) from the same
    spectrum's Fourier log.  Noise-free, c_Li equals the DualEELS fit's areal Li within 0.1 of its error on every row
    (measured <= 0.033 at t/lambda 0.22-0.81; with the single-scattering fit it was off by up to 24 sigma in rows the
    fit still called ok); over seeded images its pulls about the noise-free values have sd 1 (measured 0.96-1.01,
    means +0.02 to +0.08; 1.21 before)."""
    from sreels.config import LOWLOSS_NAME
    from sreels.inference.fast import usable

    inst = Instrument(lowloss_exposure_s=0.005)   # the ZLP's maximum 48000 of 65535 counts: not saturated

    def alone(sim):
        return fit_image({LOWLOSS_NAME: windows_of(sim)[LOWLOSS_NAME]}, progress=False)

    nf = simulate(Scenario(), inst, rng=0, noise_free=True)
    ref, dual = alone(nf), fit_image(windows_of(nf), progress=False)
    assert any("fitted with the plural scattering taken from the same spectrum" in n for n in ref.notes)
    ok = usable(ref.status, "li") & np.isfinite(dual.columns["li_areal_rel"])
    assert ok.sum() > 300
    dev = (ref.columns["li_rel"] - dual.columns["li_areal_rel"]) / ref.columns["li_rel_err"]
    assert np.max(np.abs(dev[ok])) < 0.1
    z = []
    for seed in (11, 12):
        r = alone(simulate(Scenario(), inst, rng=seed))
        u = ok & usable(r.status, "li")
        assert u.sum() > 300
        z.append((r.columns["li_rel"][u] - ref.columns["li_rel"][u]) / r.columns["li_rel_err"][u])
    z = np.concatenate(z)
    assert abs(z.mean()) < 0.15 and 0.88 < z.std() < 1.12, (z.mean(), z.std())


def test_noise_replicas_are_the_rows_own_draws_as_stacked_before():
    """:func:`.lowloss._replicas` (draws written into one buffer, scaled and shifted in place) gives exactly the
    numbers of its first form: each row's generator's draws stacked, then coarse + z * sd."""
    from sreels.inference.lowloss import TAIL_REPLICAS, TAIL_SEED, _replicas, _row_key

    rng = np.random.default_rng(5)
    counts, coarse = rng.random((37, 300)) * 100, rng.random((37, 50)) * 100
    sd = np.sqrt(coarse + 3.0)
    z = np.stack([np.random.default_rng([TAIL_SEED, _row_key(r)]).standard_normal((TAIL_REPLICAS, 50))
                  for r in counts], axis=1)
    assert np.array_equal(_replicas(counts, coarse, sd), coarse[None] + z * sd[None])


def test_plural_tails_per_unit_i0_scaled_are_the_tails():
    """``plural_tails(..., per_i0=True)`` (the replicas' tails a Dask fit holds between passes, :func:`apply_low_loss`)
    times I_0 by :func:`scaled_tails`, written after other rows, gives the tails it returns without, bit for bit;
    in the transforms' precision (4 bytes a lag in single)."""
    from sreels.axes import EnergyAxis
    from sreels.inference.lowloss import plural_tails, scaled_tails

    ax = EnergyAxis(-10.0, 0.5, 400)
    e = ax.energy_ev
    rng = np.random.default_rng(2)
    centre = rng.normal(0.0, 0.2, 20)
    ll = 1e5 * np.exp(-0.5 * ((e[None, :] - centre[:, None]) / 0.4) ** 2) + 3e3 * np.exp(-0.5 * ((e - 25.0) / 6.0) ** 2)
    ll = ll + rng.normal(0.0, 30.0, ll.shape)
    for dtype in (float, np.float32):
        ref = plural_tails(ll, ax, centre, centre + 3.0, 0.5, 120.0, dtype=dtype)
        m, it, i0 = plural_tails(ll, ax, centre, centre + 3.0, 0.5, 120.0, dtype=dtype, per_i0=True)
        assert m.dtype == dtype and np.array_equal(it, ref[1]) and np.array_equal(i0, ref[2])
        out = np.full((25,) + ref[0].shape[1:], np.nan)
        scaled_tails(m, i0, out=out[5:])
        assert np.array_equal(out[5:], ref[0]) and np.isnan(out[:5]).all()
        assert np.array_equal(scaled_tails(m, i0), ref[0])


def test_t_over_lambda_of_vacuum_rows_with_an_unknown_noise_level_has_an_honest_error():
    """Rows holding a ZLP only (vacuum), read with the gain and readout noise unknown (1 and 0 taken) while the
    channels carry 4 counts of readout-like noise: Var(I_in) from the counts alone was ~0 (a measured vacuum pixel
    read -0.0045 +- 0.000004); with the channels' own scatter as its floor the pulls about the true 0 have sd ~1
    (fails without: sd in the hundreds)."""
    from sreels.axes import EnergyAxis
    from sreels.inference.lowloss import read_zlp

    rng = np.random.default_rng(5)
    ax = EnergyAxis(-10.0, 0.05, 1200)
    e = ax.energy_ev
    zlp = 2e5 * np.exp(-0.5 * (e / 0.25) ** 2)
    y = zlp[None, :] + rng.normal(0.0, 4.0, (400, e.size))
    _, _, _, tl, err = read_zlp(y, ax, 1.0, 0.0)
    z = tl / err
    assert np.all(np.isfinite(z))
    assert 0.8 < np.std(z) < 1.25 and abs(np.mean(z)) < 0.2, (np.mean(z), np.std(z))
