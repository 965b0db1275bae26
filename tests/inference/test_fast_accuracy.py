"""Seeded accuracy and honesty of the fast path on simulated images (issue 4)."""

import numpy as np
import pytest

from sreels.config import Instrument, Scenario
from sreels.forward.simulate import simulate
from sreels.inference.derived import KEYS, derived_truth
from sreels.inference.fast import fit_image, usable

from tests.inference.fasthelpers import SCENARIOS, pulls, windows_of

SINGLE = Instrument(plural_scattering=False, lowloss_window=False)
COLUMNS = [("li_rel", "li_rel_row"), ("ti3_fraction_raw", "ti3_fraction_row"),
           ("peak_b_ev", "peak_b_ev_row"), ("r_oo_nm", "r_oo_nm_row")]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("col, truth_col", COLUMNS)
def test_pulls_are_standard_normal(fitted, scenario, col, truth_col):
    sim, res, _ = fitted[scenario]
    if col == "li_rel":
        z = li_row_pulls(sim, res)[0]
    else:
        z = pulls(sim, res, col, truth_col)
    assert z.size > 250
    # ~320 rows, neighbours correlated by the blur along y: 0.2 is ~3.5 standard errors of the mean;
    # Ti3+ through the Fourier-ratio deconvolution of the thick "wide" lamella (t/lambda 0.42-0.78)
    # reads -0.21 (measured; -0.32 at a uniform t/lambda 0.9): the issue's +-0.3 there
    lim = 0.3 if (col == "ti3_fraction_raw" and scenario == "wide") else 0.2
    assert abs(z.mean()) < lim, f"{col}: pull mean {z.mean():+.3f}"
    assert 0.85 < z.std() < 1.15, f"{col}: pull sd {z.std():.3f}"


def li_row_pulls(sim, res):
    """Pulls of li_rel with the parent normalisation (one number common to every row, whose
    error is correlated across rows) taken out: li_rel = (q / q_parent) / rho with rho the
    realised normalisation error, fitted here; rho's own pull is returned too."""
    t = sim.truth_columns()["li_rel_row"]
    c = res.columns
    ok = usable(res.status, "li") & np.isfinite(c["li_rel"])
    w = 1.0 / c["li_rel_err_row"][ok] ** 2
    rho = np.sum(w * c["li_rel"][ok] * t[ok]) / np.sum(w * t[ok] ** 2)
    z = (c["li_rel"][ok] / rho - t[ok]) / (c["li_rel_err_row"][ok] / rho)
    return z, (1.0 / rho - 1.0) / c["li_norm_rel_err"][0]


def test_li_normalisation_error_is_honest(fitted):
    zs = [li_row_pulls(sim, res)[1] for sim, res, _ in fitted.values()]
    assert all(abs(z) < 3 for z in zs), zs


def test_derived_numbers_within_two_sigma_of_truth(fitted):
    """18 numbers (6 per scenario): honest errors put ~1 of them beyond 2 sigma by chance,
    so the test asks for none beyond 3 sigma and at most 3 beyond 2 sigma."""
    zs = {}
    for scenario, (sim, res, d) in fitted.items():
        truth = derived_truth(sim)
        for k in KEYS:
            assert np.isfinite(d[k]) and d[f"{k}_err"] > 0, (scenario, k)
            zs[scenario, k] = (d[k] - truth[k]) / d[f"{k}_err"]
    z = np.array(list(zs.values()))
    assert np.all(np.abs(z) < 3.0), zs
    assert np.sum(np.abs(z) > 2.0) <= 3, zs


def test_pt_rows_are_flagged_not_fitted(fitted):
    sim, res, _ = fitted["study"]
    pt = sim.profiles.y_nm < -12.0  # deep in Pt: the blur along y lends the first Pt row some Ti
    assert np.all(np.char.find(res.status[pt].astype(str), "no_ti") >= 0)
    assert np.all(np.isnan(res.columns["ti3_fraction"][pt]))
    # rows over the AlPO4 grains carry second_o_phase (only li_per_fu_o withheld); nothing else off Pt
    st = np.array(["|".join(f for f in s.split("|") if f != "second_o_phase") or "ok" for s in res.status])
    assert np.mean(st[~pt] == "ok") > 0.98
    assert 10 < np.sum(res.status != st) < 0.2 * st.size


def test_noise_free_round_trip_is_tight():
    """Single scattering: the references are the forward model's own shapes."""
    sc = Scenario(rows=60, row_nm=30.0, first_row_nm=0.0)
    sim = simulate(sc, SINGLE, noise_free=True)
    res = fit_image(windows_of(sim))
    t = sim.truth_columns()
    np.testing.assert_allclose(res.columns["ti3_fraction_raw"], t["ti3_fraction_row"], atol=2e-4)
    np.testing.assert_allclose(res.columns["peak_b_ev"], t["peak_b_ev_row"], atol=0.01)
    np.testing.assert_allclose(res.columns["r_oo_nm"], t["r_oo_nm_row"], atol=5e-5)
    np.testing.assert_allclose(res.columns["li_rel"], t["li_rel_row"], rtol=0.01)
    np.testing.assert_allclose(res.columns["ti_shift_ev"], sim.shift_ev, atol=2e-3)


def test_noise_free_round_trip_through_plural_scattering():
    """The default DualEELS image (t/lambda 0.54) without noise: Ti3+ and R_OO through the Fourier-ratio
    deconvolution, c_Li through the plural tail the low loss predicts.  Tolerances are what was measured
    (x ~2): Ti3+ 4e-4, R_OO 1e-4 nm, c_Li low by 1.3-2 % at c_Li 8 (the parent's plasmon tail under Li-K
    is not a power law where the plasmons change with c_Li), t/lambda within 0.005 (the threshold)."""
    sc = Scenario(rows=60, row_nm=30.0, first_row_nm=0.0)
    sim = simulate(sc, noise_free=True)
    res = fit_image(windows_of(sim))
    t = sim.truth_columns()
    np.testing.assert_allclose(res.columns["ti3_fraction_raw"], t["ti3_fraction_row"], atol=1e-3)
    np.testing.assert_allclose(res.columns["r_oo_nm"], t["r_oo_nm_row"], atol=2e-4)
    np.testing.assert_allclose(res.columns["li_rel"], t["li_rel_row"], rtol=0.03)
    np.testing.assert_allclose(res.columns["t_over_lambda"], t["t_over_lambda"], atol=0.008)
    np.testing.assert_allclose(res.columns["zlp_shift_ev"], t["zlp_shift_ev"], atol=0.01)


def test_fit_never_mutates_its_input():
    sim = simulate(Scenario(rows=30, row_nm=60.0), rng=3)
    wins = windows_of(sim)
    before = {k: w.counts.copy() for k, w in wins.items()}
    fit_image(wins)
    for k, w in wins.items():
        np.testing.assert_array_equal(w.counts, before[k])


@pytest.mark.parametrize("lowloss", [False, True])
def test_global_energy_offset_is_calibrated_away(lowloss):
    """A 2.5 eV drift: read from the Ti-L2,3 fit without a low-loss window, from the ZLP with one."""
    inst = Instrument(drift_ev=2.5, lowloss_window=lowloss, plural_scattering=lowloss)
    sim = simulate(Scenario(rows=40, row_nm=47.0, first_row_nm=0.0), inst, rng=4)
    res = fit_image(windows_of(sim))
    t = sim.truth_columns()
    ok = usable(res.status)
    shift = res.columns["zlp_shift_ev"] if lowloss else res.columns["ti_shift_ev"]
    np.testing.assert_allclose(np.median(shift[ok] - sim.shift_ev[ok]), 0.0, atol=0.02)
    z = (res.columns["peak_b_ev"] - t["peak_b_ev_row"]) / res.columns["peak_b_ev_err"]
    assert abs(np.nanmean(z[ok])) < 0.5


def test_unknown_gain_errors_are_restored_by_the_rows_scatter():
    """With the gain hidden (as in most measured files) the noise level measured from neighbouring
    channels misses the detector PSF's correlation: errors came out 1.4-1.9x too small (pull sd of
    c_Li, R_OO 1.43, 1.85 over two seeds).  The rows' own scatter restores them: the hidden-gain errors
    equal the known-gain ones within 25 %, and a note names each scaled quantity."""
    sim = simulate(Scenario(rows=200, row_nm=5.0, first_row_nm=0.0, electrode_width_nm=400.0), rng=8)
    wins = windows_of(sim)
    known = fit_image(wins)
    from sreels.inference.load import WindowData
    blind = {k: WindowData(w.name, w.energy, w.counts, w.position, w.source, None, None, metadata=w.metadata)
             for k, w in wins.items()}
    res = fit_image(blind)
    assert any("gain unknown" in n for n in res.notes)
    assert not any("neighbouring rows differ" in n for n in known.notes)
    scaled = [n for n in res.notes if "neighbouring rows differ" in n]
    assert any(n.startswith("delta_e_b_ev") for n in scaled) and any(n.startswith("Li per Ti") for n in scaled)
    for col in ("delta_e_b_ev_err", "r_oo_nm_err", "li_rel_err_row"):
        ratio = np.nanmedian(res.columns[col] / known.columns[col])
        assert 0.8 < ratio < 1.25, (col, ratio)


def test_scatter_ratio_reads_the_error_scale_not_trends_or_steps():
    from sreels.inference.fast import _scatter_check, scatter_ratio

    rng = np.random.default_rng(3)
    n = 400
    truth = np.where(np.arange(n) < 200, 0.0, 5.0) + np.linspace(0, 3, n)  # a step and a trend
    err = np.full(n, 0.1)
    v = truth + rng.normal(0, 0.1, n)
    r, pairs = scatter_ratio(v, err)
    assert pairs == n - 2 and 0.85 < r < 1.15
    assert scatter_ratio(v, err / 2)[0] == pytest.approx(2 * r, rel=1e-12)
    v[::7] = np.nan  # rows without a value break triples, not the estimate
    f = np.isfinite(v)
    assert scatter_ratio(v, err)[1] == int((f[:-2] & f[1:-1] & f[2:]).sum())
    # errors 3x too small: scaled, the systematic part of the total kept; errors too large: untouched
    cols = {"ti3_fraction_raw": truth + rng.normal(0, 0.3, n), "ti3_fraction_err_stat": err,
            "ti3_fraction_err": np.hypot(err, 0.1), "delta_e_b_ev": truth + rng.normal(0, 0.05, n),
            "delta_e_b_ev_err": err.copy()}
    notes = []
    scales = _scatter_check(cols, notes)
    assert set(scales) == {"ti3_fraction_raw"} and 2.6 < scales["ti3_fraction_raw"] < 3.4 and len(notes) == 1
    np.testing.assert_allclose(cols["ti3_fraction_err"], np.hypot(scales["ti3_fraction_raw"] * 0.1, 0.1))
    np.testing.assert_array_equal(cols["delta_e_b_ev_err"], err)


def test_saturated_pixels_are_masked_and_reported():
    import dataclasses

    inst = Instrument()
    low = dataclasses.replace(inst.windows[0], exposure_s=6.0)  # 12x the default dose: the CCD saturates
    sim = simulate(Scenario(rows=40, row_nm=47.0), dataclasses.replace(inst, windows=(low, inst.windows[1])), rng=1)
    assert sim.windows["low"].saturated.sum() > 1000
    wins = windows_of(sim)
    md = {"sreels": {"detector": dataclasses.asdict(sim.config.detector)}}
    wins = {k: dataclasses.replace(w, metadata=md) for k, w in wins.items()}
    res = fit_image(wins)
    sat_rows = sim.windows["low"].saturated[:, sim.windows["low"].energy.slice(46.0, 71.0)].any(1)
    flagged = np.array(["li_saturated" in s for s in res.status])
    np.testing.assert_array_equal(flagged, sat_rows)
    assert not any("ti_saturated" in s or "o_saturated" in s for s in res.status)


def test_l2_l3_ratio_follows_the_valence_and_over_subtracted_dark_is_flagged():
    import dataclasses

    from sreels.inference.fast import FitSettings

    sim = simulate(Scenario(rows=60, row_nm=10.0, first_row_nm=0.0), noise_free=True)
    res = fit_image(windows_of(sim))
    f3 = sim.profiles.ti3_fraction
    # the window recipe (l2_l3_ratio docstring) reads the references' 1.30 / 1.25 within 2 %
    assert np.median(res.columns["ti_l2_l3"][f3 < 0.01]) == pytest.approx(1.30, rel=0.02)
    assert np.median(res.columns["ti_l2_l3"][f3 > 0.99]) == pytest.approx(1.25, rel=0.02)
    wins = windows_of(sim)
    dark = fit_image(wins, FitSettings(dark_offset_counts=5e5))
    assert all("negative_counts" in s for s in dark.status)
    assert dataclasses.asdict(dark.settings)["dark_offset_counts"] == 5e5


def test_instrument_is_read_from_the_files(tmp_path):
    """A 1.0 eV-resolution, 200 kV image written as a user's files: the fit reads resolution,
    beam energy and collection angle from their metadata (no option given), says so, and its
    pulls are as honest as on the default (before: every Ti3+ fraction +0.08 off, pulls +34)."""
    import dataclasses

    from sreels.forward.output import write_simulation
    from sreels.inference.fast import usable
    from sreels.inference.load import load_measurement

    inst = dataclasses.replace(Instrument(), resolution_fwhm_ev=1.0, beam_energy_kev=200.0)
    sim = simulate(Scenario(rows=160, row_nm=11.4), inst, rng=5)
    write_simulation(sim, tmp_path / "sim")
    res = fit_image(load_measurement(sorted((tmp_path / "sim").glob("*.hspy"))), progress=False)
    assert "resolution_fwhm_ev = 1 from the files' metadata" in res.notes
    assert "beam_energy_kev = 200 from the files' metadata" in res.notes
    t = sim.truth_columns()
    ok = usable(res.status)
    for col, tcol in (("ti3_fraction_raw", "ti3_fraction_row"), ("r_oo_nm", "r_oo_nm_row"),
                      ("peak_b_ev", "peak_b_ev_row")):
        z = (res.columns[col] - t[tcol]) / res.columns[col.replace("_raw", "") + "_err"]
        z = z[ok & np.isfinite(z)]
        assert z.size > 140 and abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.3, (col, z.mean(), z.std())


def test_c_from_a_calibration_file_is_propagated(tmp_path):
    import json

    from sreels.errors import SreelsInputError
    from sreels.inference.commands import c_from_calibration

    f = tmp_path / "calibration.json"
    f.write_text(json.dumps({"C_ev_nm2": 2.674, "C_err_ev_nm2": 0.014, "C_err_scaled_ev_nm2": 0.05}))
    assert c_from_calibration(f, 0.0) == {"c_ev_nm2": 2.674, "c_err_ev_nm2": 0.05}
    sim = simulate(Scenario(rows=40, row_nm=47.0, first_row_nm=0.0), rng=8)
    from sreels.inference.fast import FitSettings
    a = fit_image(windows_of(sim), progress=False)
    b = fit_image(windows_of(sim), FitSettings(**c_from_calibration(f, 0.0)), progress=False)
    # R = sqrt(C / dE): the ratio is sqrt(2.674 / 2.820), the error gains the 1.9 % of C / 2
    np.testing.assert_allclose(b.columns["r_oo_nm"] / a.columns["r_oo_nm"], np.sqrt(2.674 / 2.820), rtol=1e-9)
    rel = b.columns["r_oo_nm_err"] / b.columns["r_oo_nm"]
    assert np.nanmin(rel) >= 0.5 * 0.05 / 2.674 * 0.999
    f.write_text("{}")
    with pytest.raises(SreelsInputError, match="C_ev_nm2"):
        c_from_calibration(f, 0.0)


def test_derived_numbers_say_when_their_assumptions_fail():
    """A two-bump Li profile is not one step: the note says so and the errors grow; an R_OO
    profile measured in few rows says so."""
    from sreels.inference.derived import derive

    y = np.arange(0.0, 1500.0, 5.0)
    rng = np.random.default_rng(0)
    li = 1 + 5.5 * (y < 300) + 4.0 * np.exp(-0.5 * ((y - 700) / 60) ** 2)
    err = np.full(y.size, 0.05)
    cols = {"li_rel": li + rng.normal(0, 0.05, y.size), "li_rel_err": err, "li_norm_rel_err": np.full(y.size, 0.01),
            "ti3_fraction": np.full(y.size, np.nan), "ti3_fraction_err": np.full(y.size, np.nan),
            "r_oo_nm": np.where(y < 40, 0.28, np.nan), "r_oo_nm_err": np.full(y.size, 0.001)}
    d = derive(y, cols, np.ones(y.size, bool))
    notes = " ".join(d["notes"])
    assert "not one step" in notes or "ended at a bound" in notes
    assert "R_OO usable in 8 of 300 rows" in notes


def test_plural_tail_without_a_low_loss_window_is_flagged():
    """t/lambda 0.8 and no low-loss window: the plural replica of the edges below O-K makes its
    pre-edge no power law, and every row with an O-K edge says so (o_background_poor; R_OO pulls
    are biased there); without plural scattering no row does."""
    sc = Scenario(rows=60, row_nm=31.0, thickness_nm=0.8 * 194.7)
    for plural in (True, False):
        sim = simulate(sc, Instrument(plural_scattering=plural, lowloss_window=False), rng=3)
        res = fit_image(windows_of(sim), progress=False)
        with_o = np.array(["no_o" not in s for s in res.status])
        flagged = np.array(["o_background_poor" in s for s in res.status])
        if plural:
            assert flagged[with_o].all() and any("o_background_poor" in n for n in res.notes)
        else:
            assert not flagged.any()


def test_binned_rows_carry_the_readout_noise_of_every_read():
    """``--bin N`` sums N rows, each read once: the sum's readout variance is N r^2, not r^2.  On a
    readout-dominated image (readout 40 counts, gain 1, no PSF, 1/10 of the default dose) the binned fit's
    chi^2_red stays ~1, no row is flagged poor, and its Ti3+ error is the unbinned one / sqrt(N).  Measured
    (seeds 26, 27; N = 4): Ti-L chi^2_red 0.999, 0.994 unbinned, 1.005, 0.989 binned; error ratio 2.007,
    2.012.  With r^2 for the sum (the bug): binned chi^2_red 2.44, 2.41 (Li-K 2.29, 2.23) and all 40 rows
    flagged *_poor_fit (their errors then widened by sqrt(chi^2_red): ratio 1.91, 1.92)."""
    import dataclasses

    from sreels.config import Detector
    from sreels.inference.fast import FitSettings

    det = Detector(gain_counts_per_e=1.0, readout_noise_counts=40.0, psf_decay=0.0)
    sim = simulate(Scenario(rows=160, row_nm=6.0, first_row_nm=0.0), dataclasses.replace(SINGLE, dose_e_per_row_s=6e6),
                   det, rng=26)
    wins = windows_of(sim)
    one, four = fit_image(wins, progress=False), fit_image(wins, FitSettings(bin_rows=4), progress=False)
    ok1, ok4 = usable(one.status, "ti"), usable(four.status, "ti")
    assert ok1.sum() > 120 and ok4.sum() > 30
    chi1 = np.median(one.columns["ti_chi2_red"][ok1])
    chi4 = np.median(four.columns["ti_chi2_red"][ok4])
    assert 0.9 < chi1 < 1.1 and 0.9 < chi4 < 1.1, (chi1, chi4)
    ratio = np.median(one.columns["ti3_fraction_err_stat"][ok1]) / np.median(four.columns["ti3_fraction_err_stat"][ok4])
    assert 1.85 < ratio < 2.15, ratio
    assert not any("poor_fit" in s for s in four.status)
    assert four.columns["li_chi2_red"].size == 40 and 0.9 < np.nanmedian(four.columns["li_chi2_red"]) < 1.1


def test_binned_rows_are_saturated_where_a_summed_read_was():
    """Saturation is a property of one read: a sum of 4 reads at 40 % of the ADC's range exceeds it but is
    not saturated; a sum holding one saturated read is, whatever its value."""
    from sreels.axes import EnergyAxis, PositionAxis
    from sreels.inference.fast import FitSettings, _prepared
    from sreels.inference.load import WindowData

    c = np.full((8, 50), 0.4 * 65535.0)
    c[5, 7] = 65535.0
    w = WindowData("low", EnergyAxis(40.0, 0.1, 50), c, PositionAxis(0.0, 1.0, 8), "t", 1.0, 3.0,
                   metadata={"sreels": {"detector": {"adc_max_counts": 65535, "dark_subtracted": False}}})
    b = _prepared({"low": w}, FitSettings(bin_rows=4))["low"]
    assert b.counts.shape == (2, 50) and b.rows_summed == 4
    assert np.argwhere(b.saturated).tolist() == [[1, 7]]
    from sreels.inference.lowloss import readout_noise
    assert readout_noise(b, FitSettings()) == pytest.approx(6.0)
    assert readout_noise(b, FitSettings(readout_noise_counts=5.0)) == pytest.approx(10.0)


def test_withheld_reasons_name_the_flags_of_an_edge_withheld_on_every_row():
    """An edge whose rows are all withheld is explained by its flags (counted, most frequent first) and a hint where
    the recording can help; an edge with one usable row, and warnings (poor fits, which widen errors), are not
    reasons.  The derived numbers' note then says so instead of "not measured" (H_noisy design of a review: every
    row's O-K jump below its SNR threshold read as if the data had no O-K)."""
    from sreels.inference.derived import derive
    from sreels.inference.fast import usable_by_edge, withheld_reasons

    status = np.array(["o_threshold_low_snr|li_poor_fit"] * 7 + ["no_o|no_ti|no_li"] * 2 + ["o_b_at_bound"])
    why = withheld_reasons(status)
    assert set(why) == {"o"}, why                 # Li-K: poor fits warn (usable); Ti-L2,3: 8 rows usable
    assert why["o"].startswith("withheld on every row (o_threshold_low_snr on 7 of 10 rows, no_o on 2 of 10 rows, "
                               "o_b_at_bound on 1 of 10 rows)")
    assert "--bin N" in why["o"]
    assert withheld_reasons(np.array(["ok", "o_threshold_low_snr"])) == {}
    y = np.linspace(0, 900, status.size)
    cols = {"li_rel": np.full(y.size, np.nan), "li_rel_err": np.full(y.size, np.nan),
            "ti3_fraction": np.full(y.size, np.nan), "ti3_fraction_err": np.full(y.size, np.nan),
            "r_oo_nm": np.full(y.size, np.nan), "r_oo_nm_err": np.full(y.size, np.nan)}
    notes = derive(y, cols, usable_by_edge(status), why=why)["notes"]
    assert any(n.startswith("R_OO withheld on every row (o_threshold_low_snr on 7") for n in notes), notes
    assert not any("R_OO not measured" in n for n in notes)


def test_a_second_window_of_the_same_edges_is_named_as_such_not_as_covering_none():
    """Two core-loss files that both cover Ti-L2,3 and O-K (two measurements given to one run): the one that covers
    more of the fit ranges is fitted and the other's note names the edges it shares and the window used, where it
    read "covers none of the edges fitted" (a review: SrTiO3 and CoO spectra given together)."""
    from sreels.axes import EnergyAxis, PositionAxis
    from sreels.inference.fast import FitSettings, select_windows
    from sreels.inference.load import WindowData

    pos = PositionAxis(0.0, 1.0, 1)
    wide = WindowData("a", EnergyAxis(350.0, 0.25, 2048), np.ones((1, 2048)), pos, "sto.dm3")
    other = WindowData("b", EnergyAxis(424.0, 0.5, 1024), np.ones((1, 1024)), pos, "coo.dat")
    far = WindowData("c", EnergyAxis(1000.0, 1.0, 500), np.ones((1, 500)), pos, "far.msa")
    notes = []
    found, _ = select_windows({"a": wide, "b": other, "c": far}, FitSettings(), notes)
    assert found["ti"] is wide and found["o"] is wide and found["li"] is None
    said = {n.split(":")[0]: n for n in notes}
    assert "covers Ti-L2,3 as sto.dm3 does, O-K as sto.dm3 does" in said["coo.dat"], notes
    assert "covers none of the edges fitted" in said["far.msa"], notes
