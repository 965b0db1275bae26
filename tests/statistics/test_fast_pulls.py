"""Fast path: every reported ``_err`` column against the truth (pulls) and against the
spread of the estimates over seeds, in three dose / readout regimes (issue 16).

Default run: 8 images of 48 rows per regime (about 15 s in all); ``-m slow`` repeats it
with 40 images per regime and adds the study's 330-row image in the readout-dominated
regime.  Measured (8 images, seeds 1600-1607): pull mean within +-0.07, pull sd 0.96-1.10 and
spread over seeds / reported error 0.93-1.06 for ti3_fraction, peak_a_ev, peak_b_ev and r_oo_nm in
every regime; li_rel row pulls sd 0.95-0.99; normalisation pulls rms 0.74-0.82 (8 per regime).
"""

import dataclasses
import functools

import numpy as np
import pytest
from scipy.stats import norm

from sreels.forward.simulate import simulate, window_models
from sreels.inference.fast import fit_image, usable

from tests.inference.fasthelpers import windows_of
from tests.inference.test_fast_accuracy import li_row_pulls
from tests.statistics.bands import check_pulls, check_ratio, sd_band
from tests.statistics.regimes import FAST_SCENARIO, REGIMES, TI_SCARCE

#: (estimate column, truth column, error column); li_rel is tested apart (common-mode normalisation).
COLUMNS = [("ti3_fraction_raw", "ti3_fraction_row", "ti3_fraction_err"),
           ("peak_a_ev", "peak_a_ev_row", "peak_a_ev_err"),
           ("peak_b_ev", "peak_b_ev_row", "peak_b_ev_err"),
           ("r_oo_nm", "r_oo_nm_row", "r_oo_nm_err")]
SEEDS = 8
SEEDS_SLOW = 40


@functools.lru_cache(maxsize=None)
def runs(regime: str, n: int, scenario=FAST_SCENARIO, seed0: int = 1600):
    """``n`` seeded images of one regime, simulated and fitted once per session."""
    inst, det = REGIMES[regime] if regime != "ti_scarce" else (TI_SCARCE, REGIMES["default"][1])
    models = window_models(inst)
    out = []
    for s in range(n):
        sim = simulate(scenario, inst, det, rng=seed0 + s, models=models)
        out.append((sim, fit_image(windows_of(sim))))
    return out


def _stack(rs, col):
    return np.array([r.columns[col] for _, r in rs], float)


def _ok(rs, edge=None):
    """Rows whose numbers (of ``edge``, default all) the fit gives (flags that only widen errors allowed)."""
    return np.array([usable(r.status, edge) for _, r in rs])


#: Fraction of rows usable per regime: at 1/20 dose with readout dominating, rows whose O-K
#: threshold is below signal-to-noise 5 are withheld (o_threshold_low_snr), as the pulls require.
MIN_USABLE = {"low": 0.6, "default": 0.97, "high": 0.97}


def _pulls(rs, col, truth_col, err_col):
    t = rs[0][0].truth_columns()[truth_col]
    z = (_stack(rs, col) - t) / _stack(rs, err_col)
    return z[_ok(rs)]


def _unwidened(rs, col, err_col):
    """The statistical error of peak b (and of R_OO through it): where the O-K peak model does not describe a
    row its error is widened by sqrt(chi2_red) (okpeaks: every row o_poor_fit at 20x dose, chi2_red ~1.33),
    by design larger than the spread over seeds; R_OO's error is sqrt(err_b^2 + err_threshold^2) times dR/ddE."""
    e = _stack(rs, err_col)
    eb, th = _stack(rs, "peak_b_ev_err"), _stack(rs, "o_threshold_ev_err")
    eb0 = eb / np.sqrt(np.maximum(np.nan_to_num(_stack(rs, "o_chi2_red"), nan=1.0), 1.0))
    return eb0 if col == "peak_b_ev" else e * np.hypot(eb0, th) / np.hypot(eb, th)


def _spread_ratio(rs, col, err_col, unwidened=False):
    """sqrt(mean over rows of the variance over seeds / mean over rows of err^2) and its dof (``unwidened``:
    of the statistical error, :func:`_unwidened`)."""
    v = np.where(_ok(rs), _stack(rs, col), np.nan)
    e = np.where(_ok(rs), _unwidened(rs, col, err_col) if unwidened else _stack(rs, err_col), np.nan)
    good = np.all(np.isfinite(v), 0)
    ratio = np.sqrt(np.mean(np.var(v[:, good], 0, ddof=1)) / np.mean(e[:, good] ** 2))
    return ratio, (v.shape[0] - 1) * int(good.sum())


def _check_regime(regime, n):
    rs = runs(regime, n)
    assert np.mean(_ok(rs)) > MIN_USABLE[regime], \
        f"{regime}: rows not usable: {set(np.concatenate([r.status for _, r in rs]))}"
    for col, tcol, ecol in COLUMNS:
        z = _pulls(rs, col, tcol, ecol)
        if regime == "low" and col == "peak_a_ev":  # peak a withheld below amplitude/error 5
            assert np.isnan(z).mean() > 0.5
            continue
        # at 20x dose the O-K definitions' noise-free offsets (b 0.006 eV, threshold 0.009 eV,
        # okpeaks.py) are ~0.4 of the statistical error: allowed for in the mean
        syst_mean = 0.5 if regime == "high" and col in ("peak_a_ev", "peak_b_ev", "r_oo_nm") else 0.1
        check_pulls(z, f"{regime} {col}", syst_mean=syst_mean)
        ratio, dof = _spread_ratio(rs, col, ecol, unwidened=col in ("peak_b_ev", "r_oo_nm"))
        check_ratio(ratio, dof, f"{regime} {col}")
    # li_rel: per-row part (the realised normalisation fitted out) against the truth ...
    check_pulls(np.concatenate([li_row_pulls(sim, r)[0] for sim, r in rs]), f"{regime} li_rel (row part)")
    # ... and the whole li_rel_err (row + common normalisation) against the spread over seeds.
    # The normalisation is common to the rows of an image, so this has only n - 1 dof: loose with
    # 8 images (a factor 2 passes), decisive with 40 (-m slow).  By default li_rel_err is held by
    # its parts: the row pulls above, test_li_parent_normalisation_error_is_honest and
    # test_li_rel_error_adds_the_normalisation_once.
    ratio, _ = _spread_ratio(rs, "li_rel", "li_rel_err")
    check_ratio(ratio, n - 1, f"{regime} li_rel", syst=0.1)


@pytest.mark.parametrize("regime", list(REGIMES))
def test_fast_errors_are_honest_in_every_regime(regime):
    _check_regime(regime, SEEDS)


def test_li_parent_normalisation_error_is_honest():
    """li_norm_rel_err (the standard error of the parent mean, common to every row) against the
    realised normalisation of each image: 24 pulls pooled over the regimes, sd two-sided."""
    z = np.array([li_row_pulls(sim, r)[1] for g in REGIMES for sim, r in runs(g, SEEDS)])
    lo, hi = sd_band(z.size, 0.05)
    sd = np.sqrt(np.mean(z**2))
    assert lo < sd < hi, f"normalisation pulls rms {sd:.3f} outside [{lo:.3f}, {hi:.3f}]: {np.round(z, 2)}"
    assert abs(z.mean()) < 4 / np.sqrt(z.size), z


def test_li_rel_error_adds_the_normalisation_once():
    """li_rel_err^2 = li_rel_err_row^2 + (li_rel * li_norm_rel_err)^2 row by row."""
    for g in REGIMES:
        _, r = runs(g, SEEDS)[0]
        c = r.columns
        ok = np.isfinite(c["li_rel"])
        np.testing.assert_allclose(c["li_rel_err"][ok], np.hypot(c["li_rel_err_row"][ok],
                                                                  c["li_rel"][ok] * c["li_norm_rel_err"][ok]),
                                   rtol=1e-9)


def test_readout_dominates_the_low_regime():
    """The point of the low regime: readout variance exceeds the shot variance of the signal
    in both windows (else a variance model without readout would pass there too)."""
    inst, det = REGIMES["low"]
    sim = runs("low", SEEDS)[0][0]
    for w in sim.windows.values():
        shot = det.gain_counts_per_e**2 * np.median(w.electrons)
        assert det.readout_noise_counts**2 > 1.5 * shot, (w.name, shot)


def test_coverage_of_one_sigma_intervals_in_the_low_regime():
    """68.3 % of |pull| <= 1 pooled over columns (binomial 99.9 % band widened by 3 %)."""
    rs = runs("low", SEEDS)
    z = np.concatenate([_pulls(rs, *c) for c in COLUMNS])
    inside = np.abs(z[np.isfinite(z)]) <= 1  # withheld numbers (NaN) are not intervals
    p = 2 * norm.cdf(1) - 1
    half = norm.ppf(1 - 5e-4) * np.sqrt(p * (1 - p) / inside.size) + 0.03
    assert abs(inside.mean() - p) < half, (inside.mean(), half)


@pytest.mark.slow
@pytest.mark.parametrize("regime", list(REGIMES))
def test_fast_errors_are_honest_in_every_regime_40_images(regime):
    _check_regime(regime, SEEDS_SLOW)


@pytest.mark.slow
def test_study_image_in_the_readout_dominated_regime():
    """The full 330-row default interface (Pt rows, three grains) at low dose: 4 images."""
    from sreels.config import Scenario

    rs = runs("low", 4, Scenario(), 1700)
    for col, tcol, ecol in COLUMNS:
        check_pulls(_pulls(rs, col, tcol, ecol), f"study/low {col}")
    check_pulls(np.concatenate([li_row_pulls(sim, r)[0] for sim, r in rs]), "study/low li_rel (row part)")


def _blind(sim):
    """The image as a file without gain or readout noise in its metadata."""
    return {k: dataclasses.replace(w, gain_counts_per_e=None, readout_noise_counts=None)
            for k, w in windows_of(sim).items()}


def test_unknown_gain_scales_each_row_by_its_chi2():
    """README: without a known gain the noise level k is measured from the data (channel-to-channel
    differences) and each row's errors are then widened by sqrt(max(1, chi2_red)).  Against the
    same fit with gain 1 and no readout stated: errors x sqrt(k) x sqrt(max(1, chi2_red)), times one
    factor >= 1 for every row from the rows' own scatter."""
    from sreels.config import Detector
    from sreels.inference.edgefits import variance_model
    from sreels.inference.fast import FitSettings
    from sreels.inference.okpeaks import noise_scale

    inst = REGIMES["default"][0]
    sim = simulate(FAST_SCENARIO, inst, Detector(gain_counts_per_e=4.0), rng=1650, models=window_models(inst))
    blind = fit_image(_blind(sim))
    g1 = fit_image(windows_of(sim), FitSettings(gain_counts_per_e=1.0, readout_noise_counts=0.0))
    counts = sim.windows["high"].counts.astype(float)
    k = noise_scale(counts, variance_model(counts, 1.0, 0.0))
    assert 0.5 < k < 4.5  # gain 4, lowered by the PSF's correlation of neighbouring channels
    ok = np.isfinite(blind.columns["ti3_fraction_err_stat"])
    chi2 = blind.columns["ti_chi2_red"][ok]
    # (the statistical part: files without sreels metadata also carry the reference-shape systematic;
    # the gain-1 fit's own errors are widened by its chi2_red too, which is taken out first)
    g1_unwidened = g1.columns["ti3_fraction_err_stat"][ok] / np.sqrt(np.maximum(g1.columns["ti_chi2_red"][ok], 1.0))
    base = g1_unwidened * np.sqrt(k * np.maximum(chi2, 1.0))
    # then one factor for every row, from the rows' scatter (fast._scatter_check), never below 1
    from sreels.inference.fast import scatter_ratio

    full = np.full(ok.size, np.nan)
    full[ok] = base
    factor = max(1.0, scatter_ratio(blind.columns["ti3_fraction_raw"], full)[0])
    np.testing.assert_allclose(blind.columns["ti3_fraction_err_stat"][ok], base * factor, rtol=1e-6)


def test_unknown_gain_errors_are_honest():
    """chi2_red of PSF-correlated pixels estimates gain x sum(k^2), not the gain (0.48x at psf_decay
    0.2), so errors scaled by it alone were too small (Ti3+ pull sd ~1.3 at gain 4, a strict xfail
    here); the rows' scatter check (fast._scatter_check) restores them."""
    from sreels.config import Detector

    inst = REGIMES["default"][0]
    models = window_models(inst)
    z = []
    for s in range(3):
        # exact Poisson draws (the forward model's approximation above 100 e has the same statistics:
        # without the scatter check, pull sd 1.25 / 1.47 approximate, 1.30 / 1.48 exact on two seed sets)
        sim = simulate(FAST_SCENARIO, inst, Detector(gain_counts_per_e=4.0), rng=1650 + s, models=models,
                       poisson_exact_below=np.inf)
        res = fit_image(_blind(sim))
        z.append(_pulls([(sim, res)], "ti3_fraction_raw", "ti3_fraction_row", "ti3_fraction_err"))
    check_pulls(np.concatenate(z), "blind gain ti3_fraction_raw")


#: Mixed valence over the whole image (f3 0.88 -> 0.12 along y): there the Ti4+ / Ti3+ amplitude
#: covariance enters ti3_fraction_err (it vanishes where f3 is 0 or 1, most rows of the others).
MIXED = dataclasses.replace(FAST_SCENARIO, ti3_mode="position", ti3_boundary_nm=470.0, ti3_width_nm=400.0)


def test_ti3_errors_at_intermediate_valence():
    """Pooled over the low and default regimes (768 pulls), with a 3 % allowance only: leaving the
    covariance out makes the errors 0.85x (measured), i.e. pull sd ~1.17, which must fail.
    Measured: pull sd 1.02 (low) and 0.99 (default); spread / error 1.03 and 1.01."""
    rs = runs("low", SEEDS, MIXED, 1660) + runs("default", SEEDS, MIXED, 1660)
    f3 = rs[0][0].truth_columns()["ti3_fraction_row"]
    assert np.mean((f3 > 0.2) & (f3 < 0.8)) > 0.6
    check_pulls(_pulls(rs, "ti3_fraction_raw", "ti3_fraction_row", "ti3_fraction_err"), "mixed f3", syst_sd=0.03)
    ratio, dof = _spread_ratio(rs, "ti3_fraction_raw", "ti3_fraction_err")
    check_ratio(ratio, dof, "mixed f3", syst=0.03)


def test_li_per_ti_errors_when_ti_is_scarce():
    """Li is reported per Ti atom: with a short Ti-L exposure the Ti amount's error is as large as
    Li-K's and must be in li_rel_err_row (measured: row pulls sd 1.00; without it ~1.6)."""
    rs = runs("ti_scarce", SEEDS, FAST_SCENARIO, 1670)
    assert np.mean(_ok(rs, "li")) > 0.97
    check_pulls(np.concatenate([li_row_pulls(sim, r)[0] for sim, r in rs]), "ti_scarce li_rel (row part)")
