"""``sreels plan`` (issue 14): the Fisher information it rescales, the target solver, the fast
path's prediction against a seeded ensemble, and the command's inputs and outputs.

The joint fit's predictions against 100+ MAP fits per design are validation/06_plan.py."""

import dataclasses
import json

import numpy as np
import pytest

from sreels.cli import main
from sreels.config import Detector, Instrument, Scenario
from sreels.forward.simulate import simulate, window_models
from sreels.inference.bayes.crlb import fisher as crlb_fisher
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.likelihood import Likelihood
from sreels.inference.bayes.model import ImageModel
from sreels.inference.fast import fit_image, usable
from sreels.plan import design as dz
from sreels.plan.fisher import (_readout_bands, covariances, fisher, gradients, joint_jacobian, readout_factor,
                                sigmas)
from sreels.plan.planner import (_next_scale, fast_prediction, joint_sigmas, parse_targets, parse_vary, readout_share,
                                 solve_scale)

from tests.inference.fasthelpers import windows_of

#: 48 rows of 20 nm from Pt into the parent (the fast-path tests' image): a second-scale Jacobian.
SMALL = Scenario(rows=48, row_nm=20.0, first_row_nm=0.0)
CHANGE = "derived:r_oo_change_nm"


#: the joint fit's own data: single scattering (its model has no plural scattering yet)
SINGLE_KW = dict(plural_scattering=False, lowloss_window=False)
SINGLE = Instrument(**SINGLE_KW)

@pytest.fixture(scope="module")
def small():
    d = dz.Design(SMALL, SINGLE, Detector())
    jac = joint_jacobian(d)
    return d, jac, gradients(jac, [100.0, 600.0])


def test_fisher_equals_the_likelihoods_own(small):
    """At the design's exposures F is the joint fit's Fisher information (crlb.fisher, built from
    the likelihood's whitened residuals) to finite-difference accuracy."""
    d, jac, _ = small
    nf = from_simulation(jac.simulation)   # the fixture's noise-free image (simulate(..., noise_free=True))
    like = Likelihood(ImageModel(nf, jac.priors.pset))
    _, pred, _ = like.fit_rows(jac.theta)
    ref = crlb_fisher(like.with_data(nf.with_variance(pred, "truth")), jac.priors, jac.theta)
    sd_ref = np.sqrt(np.diag(np.linalg.inv(ref)))
    sd = np.sqrt(np.diag(np.linalg.inv(fisher(jac, include_prior=False))))
    np.testing.assert_allclose(sd, sd_ref, rtol=2e-3)


def test_dose_scaling_shot_noise_limit_and_readout(small):
    """Without readout noise sigma ~ dose^-1/2; with the camera's readout it falls more slowly at
    low dose (readout variance ~ electrons per bin there), and more readout costs precision."""
    _, jac, g = small
    s1 = sigmas(fisher(jac, 1.0, rfactor=0.0), g)
    s100 = sigmas(fisher(jac, 0.01, rfactor=0.0), g)
    for k in g:
        if s1[k] > 0 and k.startswith("derived"):
            assert s100[k] / s1[k] == pytest.approx(10.0, rel=2e-3), k
    r1 = sigmas(fisher(jac, 1.0), g)[CHANGE]
    r_low = sigmas(fisher(jac, 1e-3), g)[CHANGE]
    assert r_low / r1 > 1.2 * np.sqrt(1e3)
    assert sigmas(fisher(jac, 1.0, readout_factor(jac, readout_counts=30.0)), g)[CHANGE] > 1.02 * r1
    # gain: the readout in electrons falls as 1/gain, so a higher gain helps
    assert readout_factor(jac, gain=2 * jac.gain) == pytest.approx(0.25)


def test_spread_and_reported_error(small):
    """Without readout noise the spread of the estimates is the fit's own F^-1; where readout
    dominates (1/1000 dose) the fit's diagonal weights overstate the noise of smooth features,
    which the whitening's negative correlation between bins lowers: the spread is smaller."""
    _, jac, g = small
    for k in (CHANGE, "derived:li_max_rel"):
        assert joint_sigmas(jac, {"x": g[k]}, 1.0, 0.0)["x"] == pytest.approx(
            joint_sigmas(jac, {"x": g[k]}, 1.0, 0.0, "reported")["x"], rel=1e-6)
        assert joint_sigmas(jac, {"x": g[k]}, 1e-3)["x"] < 0.97 * joint_sigmas(jac, {"x": g[k]}, 1e-3,
                                                                                   kind="reported")["x"]


def _direct_covariances(jac, s, rfactor=1.0):
    """The sandwich written out row by row with dense matrices (no shortcut of fisher._terms): per row
    X = [s_w G_w] over every window's bins, A the amplitudes' columns (a background per window, host and
    AlPO4 shared), W the likelihood's weights, the residual maker R = I - A (A'WA)^-1 A'W, F = X'W R X and
    H = (R X)' W C W (R X) with C the true covariance: Poisson + readout with its whitened bands."""
    nw, P = len(jac.windows), jac.theta.size
    s = np.broadcast_to(np.asarray(s, float), (nw,))
    c0 = rfactor * jac.readout_counts2 / jac.gain ** 2
    decay = float(jac.design.detector.psf_decay)
    F, H = np.zeros((P, P)), np.zeros((P, P))
    for r in range(jac.y_nm.size):
        X, A, W, C = [], [], [], []
        for i, w in enumerate(jac.windows):
            n = w.G.shape[1]
            X.append(s[i] * w.full_G(P)[r])
            a = np.zeros((n, nw + 2))
            a[:, [i, nw, nw + 1]] = s[i] * w.cols[r]
            A.append(a)
            W.append(np.where(w.mask[r], 1.0 / (np.maximum(s[i] * w.lam[r], 1.0) + rfactor * w.readout_var[r]), 0.0))
            bands = _readout_bands(w.channels, decay, w.i0, n, w.bin)
            c = np.diag(s[i] * w.lam[r] + c0 * bands[0])
            for k, d in enumerate(bands[1:], 1):
                c += c0 * (np.diag(d[:n - k], k) + np.diag(d[:n - k], -k))
            C.append(c)
        X, A, W = np.vstack(X), np.vstack(A), np.concatenate(W)
        Cr = np.zeros((W.size, W.size))
        o = 0
        for c in C:
            Cr[o:o + len(c), o:o + len(c)] = c
            o += len(c)
        keep = np.any(A != 0, axis=0)
        A = A[:, keep]
        RX = X - A @ np.linalg.solve(A.T @ (W[:, None] * A), A.T @ (W[:, None] * X))
        F += X.T @ (W[:, None] * RX)
        H += (W[:, None] * RX).T @ Cr @ (W[:, None] * RX)
    Fi = np.linalg.inv(F + np.diag(jac.prior_info))
    return Fi @ H @ Fi, Fi


@pytest.mark.parametrize("scale", [1.0, 2e-4, (0.3, 2.0)])
def test_covariances_equal_the_sandwich_written_out(small, scale):
    """fisher.covariances (per-window active parameters, blocked products, readout bands without forming the
    projected G) equals the sandwich written out row by row with dense matrices: at the design, where readout
    dominates and the likelihood's 1-electron floor acts (2e-4: model variance != true variance), and with
    one exposure factor per window."""
    d, jac, _ = small
    if scale == 2e-4:
        assert min(w.lam[w.mask].min() for w in jac.windows) * scale < 1.0   # the floor is exercised
    r = slice(None, None, 6)   # 8 of the 48 rows, over the whole interface (every parameter identified)
    sub = dataclasses.replace(jac, y_nm=jac.y_nm[r], windows=tuple(dataclasses.replace(
        w, G=w.G[r].copy(), cols=w.cols[r], lam=w.lam[r], readout_var=w.readout_var[r], mask=w.mask[r])
        for w in jac.windows))
    spread, rep = covariances(sub, scale)
    spread_d, rep_d = _direct_covariances(sub, scale)
    sd = np.sqrt(np.diag(spread_d))
    np.testing.assert_allclose(spread / np.outer(sd, sd), spread_d / np.outer(sd, sd), rtol=0, atol=1e-8)
    sr = np.sqrt(np.diag(rep_d))
    np.testing.assert_allclose(rep / np.outer(sr, sr), rep_d / np.outer(sr, sr), rtol=0, atol=1e-8)
    assert np.max(np.abs(np.sqrt(np.diag(spread)) / sd - 1)) < 1e-8


def test_readout_correlation_is_the_whitened_datas():
    """The bands of Q (readout correlation between bins after the fit's PSF whitening) equal the
    covariance of pure readout noise sent through the camera's PSF and sreels' own whitening."""
    from sreels.forward.detector import apply_psf
    from sreels.inference.bayes.data import deconvolve
    ch, i0, nb, b, decay = 256, 40, 60, 2, Detector().psf_decay
    noise = apply_psf(np.random.default_rng(3).standard_normal((4000, ch)), 0.0)  # readout: after the PSF
    # whitened in blocks of 200 rows (the operator along y is the identity; 4000 rows would build it 4000 x 4000)
    white = np.concatenate([deconvolve(blk, decay, slice(i0, i0 + nb * b), b)[0] for blk in np.split(noise, 20)])
    binned = white[:, i0:i0 + nb * b].reshape(-1, nb, b).sum(-1)
    bands = _readout_bands(ch, decay, i0, nb, b)
    assert len(bands) >= 2 and bands[1].mean() < 0
    for k in range(2):
        emp = np.mean(binned[:, :nb - k] * binned[:, k:], axis=0).mean()
        assert emp == pytest.approx(bands[k].mean(), abs=4 * bands[0].mean() / np.sqrt(4000 * nb))


def test_whitening_inverse_is_the_psf_inverse():
    """K^-1 of the PSF along energy (from its banded LU) is the dense inverse of the PSF's matrix."""
    from sreels.inference.bayes.data import _axis_operator, psf_matrices
    for decay in (Detector().psf_decay, 0.5):
        ident, h, _, inv = _axis_operator(300, decay, "e")
        k = psf_matrices(1, 300, decay)[1]
        assert not ident and h > 0
        np.testing.assert_allclose(inv, np.linalg.inv(k), rtol=0, atol=1e-12)
        np.testing.assert_allclose(inv @ k, np.eye(300), rtol=0, atol=1e-12)


def test_whitening_factor_from_the_bins_is_k_inverses():
    """deconvolve's variance factor per bin (K' X = S' solved for the bins alone, data._binned_inverse_norms) is the
    squared row norm of the binned K^-1 (1e-12; measured 4e-16), the whitened data the same with factors=False."""
    from sreels.inference.bayes.data import _axis_operator, _binned_inverse_norms, deconvolve
    for decay in (Detector().psf_decay, 0.5):
        inv = _axis_operator(300, decay, "e")[3]
        for i0, nb, b in ((0, 300, 1), (17, 60, 4), (5, 140, 2)):
            ref = np.sum(inv[i0:i0 + nb * b].reshape(nb, b, 300).sum(1) ** 2, axis=1)
            np.testing.assert_allclose(_binned_inverse_norms(300, decay, i0, nb, b), ref, rtol=1e-12)
        counts = np.random.default_rng(5).poisson(50.0, (6, 300)).astype(float)
        white, fac, _ = deconvolve(counts, decay, slice(17, 257), 4)
        assert fac.shape == (6, 60)
        np.testing.assert_array_equal(deconvolve(counts, decay, slice(17, 257), 4, factors=False)[0], white)


def test_target_solver_round_trip(small, target_factor=30.0):
    """The exposure factor returned for a target gives that sigma; with readout noise the dose it
    needs is above the shot-noise guess (sigma / target)^2 when the target asks for less dose."""
    _, jac, g = small
    s0 = joint_sigmas(jac, g)[CHANGE]
    target = s0 * target_factor
    s, got, _ = solve_scale(jac, g[CHANGE], target)
    assert joint_sigmas(jac, {"x": g[CHANGE]}, s)["x"] == pytest.approx(target, rel=2e-3)
    assert got == pytest.approx(target, rel=2e-3)
    if target_factor > 1:
        assert s > (s0 / target) ** 2 * 1.001
    # the first guess from the readout share of a solved target lands closer than the shot-noise limit
    share = readout_share(s0, s, got)
    assert share > 0
    s_hint, _, it_hint = solve_scale(jac, g[CHANGE], target, share=share)
    assert s_hint == pytest.approx(s, rel=3e-3) and it_hint <= 3
    split = np.array([0.2, 1.0])  # per-window factors are honoured: less low-window time needs more dose
    s_split, _, _ = solve_scale(jac, g["derived:li_max_rel"], joint_sigmas(jac, g)["derived:li_max_rel"], split)
    assert s_split > 1.5


def test_secant_step_is_exact_for_shot_noise_plus_readout():
    """sigma^2 = a / s + b / s^2 (every bin with the same readout-to-electrons ratio) is solved in one
    step from two evaluations; a rising sigma falls back to the log-log secant (a finite, positive step)."""
    a, b, target = 2.0e-6, 5.0e-8, 1.0e-3
    sig = lambda s: np.sqrt(a / s + b / s ** 2)  # noqa: E731
    s3 = _next_scale(1.0, sig(1.0), 3.0, sig(3.0), target)
    assert sig(s3) == pytest.approx(target, rel=1e-12)
    assert readout_share(sig(1.0), s3, target) == pytest.approx(b / a, rel=1e-9)
    s_up = _next_scale(1.0, 1.0, 2.0, 1.5, 0.5)
    assert np.isfinite(s_up) and s_up > 0


def test_fast_path_prediction_matches_a_seeded_ensemble():
    """Fast path: the per-row sigma predicted from the noise-free image equals the spread of its
    per-row estimates over 4 seeded images (pooled over ~45 rows: ~6 % sampling error), two-sided."""
    inst, det = Instrument(dose_e_per_row_s=Instrument().dose_e_per_row_s / 5, **SINGLE_KW), Detector()
    nf = simulate(SMALL, inst, det, rng=0, noise_free=True)
    pred = fast_prediction(nf, [100.0])["profile"]
    models = window_models(inst)
    est = {k: [] for k in ("li_rel", "ti3_fraction_raw", "r_oo_nm")}
    for seed in range(1400, 1404):
        r = fit_image(windows_of(simulate(SMALL, inst, det, rng=seed, models=models)), progress=False)
        for k in est:
            est[k].append(np.where(usable(r.status), r.columns[k], np.nan))
    for k, e in est.items():
        p = pred[k.replace("_raw", "") + "_err"]
        v = np.array(e)
        good = np.all(np.isfinite(v), 0) & np.isfinite(p)
        assert good.sum() > 30, k
        ratio = np.sqrt(np.mean(np.var(v[:, good], 0, ddof=1)) / np.mean(p[good] ** 2))
        assert 0.85 < ratio < 1.15, (k, ratio)


# ------------------------------------------------------------------ inputs
@pytest.mark.parametrize("arg, words", [
    ("--target=r_oo_change=0.002", ["r_oo_change", "r_oo_change_nm", "li_max_rel"]),
    ("--target=li_max_rel=abc", ["abc", "li_max_rel"]),
    ("--target=li_max_rel=-1", ["-1", "positive"]),
    ("--target=li_max_rel", ["NAME=SIGMA"]),
    ("--vary=dosage=0.1:10", ["dosage", "dose", "exposure_split", "readout_noise_counts"]),
    ("--vary=dose=10:0.1", ["10:0.1", "LO < HI"]),
    ("--vary=exposure_split=0:0.5", ["exposure_split", "[0.0001, 0.9999]"]),
    ("--vary=bin_rows=1:2.5", ["bin_rows", "integers"]),
    ("--vary=thickness_nm=50", ["LO:HI"]),
])
def test_bad_targets_and_ranges_are_named(tmp_path, capsys, arg, words):
    rc = main(["plan", arg, "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "p").exists()


def test_parsers_accept_good_input():
    assert parse_targets(["r_oo_change_nm=0.002", "li_max_rel=1e-2"]) == {"r_oo_change_nm": 0.002, "li_max_rel": 0.01}
    assert parse_vary(["dose=0.1:10", "bin_rows=1:4"]) == {"dose": (0.1, 10.0), "bin_rows": (1.0, 4.0)}


def test_designs_keep_what_they_should():
    d = dz.Design(Scenario(), SINGLE, Detector())
    f = dz.bin_rows(dz.set_dispersion(d, 0.05), 2)
    for a, b in zip(d.instrument.windows, f.instrument.windows):
        assert b.scale_ev == 0.05 and b.end_ev == pytest.approx(a.end_ev, abs=0.05)
    assert f.scenario.rows * f.scenario.row_nm == pytest.approx(d.scenario.rows * d.scenario.row_nm)
    # the same electrons per nm per second: per row x2 for rows of twice the height
    assert f.instrument.dose_e_per_row_s / f.scenario.row_nm == pytest.approx(
        d.instrument.dose_e_per_row_s / d.scenario.row_nm)
    s = dz.set_exposure_split(d, 0.25)
    assert dz.exposure_share(s) == pytest.approx(0.25)
    assert sum(s.exposures_s().values()) == pytest.approx(sum(d.exposures_s().values()))


def test_plan_command_writes_a_complete_folder(tmp_path, capsys):
    """plan.json, plan.png and a trade-off table in a folder that appears whole (manifest, no
    temporary folder); the target's exposure is in it; an existing folder is refused untouched."""
    toml = tmp_path / "s.toml"
    # 960 nm in 24 rows, single scattering (the instrument of the other tests: its kernels are cached; the
    # default DualEELS instrument is planned in tests/test_examples.py::test_plan_beam_time): quick
    toml.write_text("[scenario]\nrows = 24\nrow_nm = 40.0\nfirst_row_nm = 0.0\n"
                    "[instrument]\nplural_scattering = false\nlowloss_window = false\n")
    out = tmp_path / "plan"
    rc = main(["plan", "--scenario", str(toml), "--target", "r_oo_change_nm=0.002", "--vary", "dose=0.1:10",
               "--vary-points", "3", "--critical-dose", "1e5", "--no-fast", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == [".sreels-manifest", "plan.json", "plan.png", "vary_dose.csv"]
    assert not list(tmp_path.glob(".plan.sreels-tmp*"))
    p = json.loads((out / "plan.json").read_text())
    t = p["targets"]["r_oo_change_nm"]
    assert t["sigma_reached"] == pytest.approx(0.002, rel=2e-3)
    assert t["exposure_s"]["high"] == pytest.approx(30.0 * t["dose_factor"])
    assert p["critical_dose"]["source"].startswith("given by the user")
    rows = p["vary"]["dose"]["rows"]
    # sigma falls with dose along the table
    assert rows[0]["sigma:r_oo_change_nm"] > rows[1]["sigma:r_oo_change_nm"] > rows[2]["sigma:r_oo_change_nm"]
    # a design with v times the dose needs 1/v of the factor the design itself needs for the target
    for r in rows:
        assert r["value"] * r["dose_factor_for:r_oo_change_nm"] == pytest.approx(t["dose_factor"], rel=3e-3)
    assert p["predicts"]["plural_scattering_in_images"] is False and "single scattering" in p["predicts"]["joint"]
    assert "the fit predicted: sreels fit --method bayes" in capsys.readouterr().out
    # the default rows on this 0-920 nm scan: 1000 nm is not on it, left out with a note (it was reported
    # under "1000", the joint fit's profile extrapolated, the fast path's the last row at 920 nm)
    assert p["rows_nm"] == [50.0, 250.0] and list(p["joint"]["rows_sigma"]) == ["50", "250"]
    assert any(n.startswith("default rows 1000 nm not reported") and "0 to 920 nm" in n for n in p["notes"])
    assert p["inputs"]["rows_nm"] is None
    before = (out / "plan.json").read_bytes()
    assert main(["plan", "--scenario", str(toml), "--no-fast", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / "plan.json").read_bytes() == before


def test_rows_outside_the_scan_are_refused_when_given_and_left_out_by_default(tmp_path, capsys):
    """A 40-row scan of 8 nm from -16 nm (296 nm its last row): --rows-nm 1000 was reported under "1000" from
    the last row (fast path) and the profile extrapolated (joint fit); it is an error naming the value and the
    scan's range, before any work.  The defaults (50, 250, 1000) keep working: 1000 left out with a note."""
    from sreels.errors import SreelsInputError
    from sreels.plan.planner import DEFAULT_ROWS_NM, rows_in_scan

    sc = Scenario(rows=40, row_nm=8.0, first_row_nm=-16.0)
    rows, notes = rows_in_scan(sc)
    assert rows == (50.0, 250.0) and len(notes) == 1 and "1000" in notes[0] and "-16 to 296 nm" in notes[0]
    assert rows_in_scan(sc, [-20.0, 50.0, 300.0]) == ((-20.0, 50.0, 300.0), [])  # within half a row of the ends
    for bad in ([1000.0], [50.0, 301.0], [-20.5]):
        with pytest.raises(SreelsInputError, match=r"--rows-nm .*outside the scan.*-16 to 296 nm") as e:
            rows_in_scan(sc, bad)
        assert f"{bad[-1]:g}" in str(e.value)
    assert rows_in_scan(Scenario(), None) == (DEFAULT_ROWS_NM, [])  # the study's 1830 nm scan: all three
    toml = tmp_path / "g.toml"
    toml.write_text("[scenario]\nrows = 40\nrow_nm = 8.0\nfirst_row_nm = -16.0\n"
                    "[instrument]\nplural_scattering = false\nlowloss_window = false\n")
    rc = main(["plan", "--scenario", str(toml), "--rows-nm", "50", "1000", "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert rc == 2 and "--rows-nm 1000: outside the scan" in err and "-16 to 296 nm" in err, err
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_planned_exposure_gives_the_target_spread(small):
    """Round trip on the 48-row image: the exposure planned for sigma(R_OO change) = 3x the design's
    sigma, fed back into simulate + the joint (MAP) fit of 40 seeded images, gives a spread of the
    R_OO change equal to the target within 25 % (the sd of 40 samples has an 11 % sampling error;
    validation/06_plan.py does 2 pm on the study's image)."""
    from sreels.inference.bayes.fit import fit_bayes
    from sreels.inference.bayes.params import derived
    d, jac, g = small
    target = 3.0 * joint_sigmas(jac, g)[CHANGE]
    s, _, _ = solve_scale(jac, g[CHANGE], target)
    dt = dz.scale_dose(d, s)
    models = window_models(dt.instrument)
    vals = []
    for seed in range(2600, 2640):
        sim = simulate(dt.scenario, dt.instrument, dt.detector, rng=seed, models=models)
        fit = fit_bayes(from_simulation(sim), jac.priors, sample=False, progress=False)
        vals.append(float(derived(jac.priors.pset.as_dict(fit.map.theta), jac.priors.pset.ti3_mode)["r_oo_change_nm"]))
    assert np.std(vals, ddof=1) / target == pytest.approx(1.0, abs=0.25)


@pytest.mark.slow
def test_linearised_fit_spread_is_the_sandwich(small):
    """The joint fit linearised at the truth (fisher.one_step: the fit's own model, weights and profiled
    amplitudes) applied to 100 seeded detector draws at 1/1000 of the dose (readout-dominated, where the
    spread and the fit's reported F^-1 differ): its estimates, whitened by the predicted spread covariance,
    have a mean squared norm equal to the number of parameters (chi^2_P / P: 1 +- ~0.035 for 100 draws;
    1.06 at 40 draws, 0.82 with the reported F^-1), and the noise-free image gives a zero step.
    Validation 06 shows the MAP equals this estimate image by image (~13 s: slow)."""
    import dataclasses

    from sreels.forward.detector import apply_detector
    from sreels.plan.fisher import covariance, one_step
    d, jac, _ = small
    s = 1e-3
    step = one_step(jac, s)
    sim = jac.simulation
    assert np.abs(step(from_simulation(dataclasses.replace(sim, windows={
        k: dataclasses.replace(w, counts=s * w.counts) for k, w in sim.windows.items()})))).max() < 1e-9
    L = np.linalg.cholesky(np.linalg.inv(covariance(jac, s)))
    Lr = np.linalg.cholesky(np.linalg.inv(covariance(jac, s, kind="reported")))
    gen = np.random.default_rng(2700)
    chi2, chi2_rep = [], []
    for _ in range(100):
        noisy = dataclasses.replace(sim, windows={k: dataclasses.replace(
            w, counts=apply_detector(s * w.electrons, d.detector, gen).counts) for k, w in sim.windows.items()})
        dth = step(from_simulation(noisy))
        chi2.append(np.sum((L.T @ dth) ** 2))
        chi2_rep.append(np.sum((Lr.T @ dth) ** 2))
    P = jac.theta.size
    assert np.mean(chi2) / P == pytest.approx(1.0, abs=0.1)
    assert np.mean(chi2_rep) / P < 0.9   # the fit's own F^-1 overstates this spread (readout correlation)


def test_fast_prediction_in_a_forked_process_is_the_same_bit_for_bit(monkeypatch, small):
    """sreels plan runs the fast path's prediction in a forked process (FAST_IN_PROCESS, the default): its result
    is the one computed here in this process, to the bit (per-row errors, derived errors, profiles); plan.png,
    drawn by another forked process after its warm-up drawing, is byte for byte the one drawn here; a failure in
    a child is raised in the parent with its cause; a thread is used where the processes are switched off."""
    import multiprocessing as mp

    from sreels.plan import planner
    from sreels.plan.figures import example_plan, plan_png
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this system: sreels plan uses a thread")
    nf = small[1].simulation
    here = fast_prediction(nf, [100.0, 600.0])
    monkeypatch.setattr(planner, "FAST_IN_PROCESS", True)
    fig = planner._start_figure()
    job = planner._start_fast(nf, [100.0, 600.0])
    assert isinstance(job, planner._ForkedFast) and isinstance(fig, planner._ForkedFigure)
    try:
        there = job.result()
        plan = example_plan(48)
        plan["_profiles"].update(there["profile"])
        plan["joint"]["derived_sigma"]["r_oo_change_nm"] = 2.0   # not the warm-up's numbers
        png = fig.draw(plan)
    finally:
        job.close()
        fig.close()
    assert there["rows"] == here["rows"] and there["derived_reported"] == here["derived_reported"]
    for k, v in here["profile"].items():
        np.testing.assert_array_equal(there["profile"][k], v)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == plan_png(plan)
    bad_fig = planner._start_figure()
    try:
        with pytest.raises(RuntimeError, match="plan.png failed: KeyError"):
            bad_fig.draw({"targets": {}})
    finally:
        bad_fig.close()
    bad = planner._start_fast(None, [100.0])
    try:
        with pytest.raises(RuntimeError, match="fast path's prediction failed: AttributeError"):
            bad.result()
    finally:
        bad.close()
    monkeypatch.setattr(planner, "FAST_IN_PROCESS", False)
    job = planner._start_fast(None, [100.0])
    assert isinstance(job, planner._ThreadFast) and planner._start_figure() is None
    try:
        with pytest.raises(AttributeError):
            job.result()
    finally:
        job.close()


def test_plan_says_which_fit_it_predicts_on_dualeels():
    """The default design (plural scattering, low-loss window): the joint prediction is that of the Bayesian fit's
    plural model (its default on DualEELS); the single-scattering model (--no-plural, forced with
    jac_plural=False) is said to be a spread about a biased mean; without a low-loss window, the single-scattering
    fit."""
    from sreels.plan.planner import predicted_fits

    d = dz.Design(Scenario(), Instrument(), Detector())
    assert d.instrument.plural_scattering and d.instrument.lowloss_window
    p = predicted_fits(d)
    assert p["joint_model"] == "plural" and "its plural model" in p["joint"] and "--no-plural" in p["joint"]
    assert "plural model" in p["joint_short"]
    forced = predicted_fits(d, jac_plural=False)
    assert forced["joint_model"] == "single scattering"
    assert "--no-plural" in forced["joint"] and "bias is not predicted" in forced["joint"]
    assert "low-loss window, which that fit does not use" in forced["joint"]
    assert "models plural scattering" in p["fast"] and p["plural_scattering_in_images"]
    single = predicted_fits(dz.Design(Scenario(), SINGLE, Detector()))
    assert "--no-plural" not in single["joint"] and not single["plural_scattering_in_images"]
    assert single["joint_model"] == "single scattering"


def test_planning_process_imports_neither_lmfit_nor_matplotlib():
    """The modules sreels plan's own process runs import neither lmfit (~1.3 s cold: scipy.stats, pandas) nor
    matplotlib: the fast path's prediction (its derive's step fits with lmfit) and plan.png run in forked processes."""
    import subprocess
    import sys

    code = ("import sys, sreels.cli, sreels.plan.commands, sreels.plan.planner, sreels.inference.derived, "
            "sreels.inference.fast; "
            "print(sorted(m for m in ('lmfit', 'matplotlib', 'pandas', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

def test_plan_figure_shades_the_doses_below_the_gaussian_regime():
    """plan.png's sigma-dose panel shades the doses at which some bin holds fewer than GAUSSIAN_MIN_ELECTRONS
    expected electrons (the design's minimum scaled with the dose): from the curve's lowest dose to 20 / n_min; none
    when the whole curve is above it."""
    from matplotlib.patches import Polygon, Rectangle

    from sreels.plan.figures import _draw, example_plan
    from sreels.plan.fisher import GAUSSIAN_MIN_ELECTRONS

    def spans(plan):
        ax = _draw(plan).axes[0]
        out = []
        for p in ax.patches:
            if isinstance(p, (Polygon, Rectangle)):
                xs = np.asarray(p.get_xy())[:, 0] if isinstance(p, Polygon) else [p.get_x(), p.get_x() + p.get_width()]
                out.append((min(xs), max(xs)))
        return out

    plan = example_plan(24)
    plan["joint"]["min_electrons_per_bin"] = 200.0          # the curve runs from 0.01 to 100 x the design's dose
    (lo, hi), = spans(plan)
    assert lo == pytest.approx(0.01) and hi == pytest.approx(GAUSSIAN_MIN_ELECTRONS / 200.0)
    plan["joint"]["min_electrons_per_bin"] = 1e4             # 20 electrons at 0.002 x: below the curve
    assert spans(plan) == []
