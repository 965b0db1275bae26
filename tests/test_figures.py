"""Figures: errors visible, numbers annotated with their errors, Pt marked, nothing saturated,
single spectra and single windows handled with a note."""

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sreels.config import Scenario
from sreels.figstyle import fmt_pm, neighbour_scatter, runs
from sreels.forward.simulate import simulate
from sreels.inference.derived import derive
from sreels.inference.fast import fit_image, usable, usable_by_edge
from sreels.inference.report import write_figures
from sreels.plots import draw_profiles, draw_spectrum_images
from tests.inference.fasthelpers import windows_of


@pytest.fixture(scope="module")
def small():
    """A 90-row interface, simulated and fitted once."""
    sim = simulate(Scenario(rows=90, row_nm=12.0, electrode_width_nm=300.0), rng=5)
    res = fit_image(windows_of(sim))
    return sim, res, derive(res.position.y_nm, res.columns, usable_by_edge(res.status))


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [fig._suptitle.get_text()]


def test_fmt_pm_rounds_the_error_to_two_digits():
    assert fmt_pm(400.1234, 0.6123, "nm") == "400.12 ± 0.61 nm"
    assert fmt_pm(0.2800341, 2.53e-5, "nm") == "0.280034 ± 0.000025 nm"
    assert fmt_pm(161.0, 12.0) == "161 ± 12"
    assert fmt_pm(np.nan, 1.0) == "n/a" and "(no error)" in fmt_pm(5.0, np.nan)


def test_neighbour_scatter_cancels_trends_and_has_the_noise_sd():
    rng = np.random.default_rng(0)
    y = np.arange(20000.0)
    assert np.nanmax(np.abs(neighbour_scatter(3.0 + 0.5 * y))) < 1e-9
    s = neighbour_scatter(0.01 * y + rng.normal(0, 0.2, y.size))
    assert np.isnan(s[0]) and np.isnan(s[-1])
    assert 0.19 < np.nanstd(s) < 0.21


def test_runs():
    assert runs([0, 1, 1, 0, 1]) == [(1, 2), (4, 4)] and runs([0, 0]) == []


def test_profiles_figure_shows_errors_numbers_and_pt(small):
    sim, res, d = small
    fig = draw_profiles(res, d)
    try:
        t = "\n".join(texts(fig))
        # the study's numbers with their errors, as summary.json has them
        assert fmt_pm(d["electrode_width_nm"], d["electrode_width_nm_err"], "nm") in t
        assert fmt_pm(d["ti_boundary_nm"], d["ti_boundary_nm_err"], "nm") in t
        assert fmt_pm(d["r_oo_max_nm"], d["r_oo_max_nm_err"], "nm") in t
        main = [ax for ax in fig.axes if ax.get_title(loc="left").startswith("(")]
        assert [ax.get_title(loc="left")[:3] for ax in main] == ["(a)", "(b)", "(c)", "(d)"]
        strips = [ax for ax in fig.axes if ax.get_ylabel().startswith("scatter")]
        assert len(strips) == 4
        ok = usable(res.status)
        for strip, key in zip(strips, ("li_rel", "ti3_fraction", "peak_b_ev", "r_oo_nm")):
            err = np.nanmedian(res.columns[f"{key}_err"][ok])
            lo, hi = strip.get_ylim()
            assert (hi - lo) < 20 * err, f"{key}: the 1-sigma band is too thin to see"
        # the Pt rows (no Ti, no O) are greyed in every profile panel
        for ax in main:
            assert any(p.get_label() == "Pt (no Ti, no O)" for p in ax.patches)
    finally:
        plt.close(fig)


def test_profiles_headline_counts_usable_rows_per_edge(small):
    """O-K withheld on every row: the headline read "0 of 90 rows usable" (every edge at once) while the
    c_Li and Ti3+ panels showed their rows; it now counts each edge's."""
    sim, res, d = small
    st = np.array([s + "|no_o" if s != "ok" else "no_o" for s in res.status])
    n_li, n_ti = int(usable(st, "li").sum()), int(usable(st, "ti").sum())
    assert n_li > 50 and n_ti > 50 and not usable(st).any()
    want = f"usable rows: c_Li {n_li}, Ti³⁺ {n_ti}, R_OO 0 of 90"
    fig = draw_profiles(dataclasses.replace(res, status=st), d)
    try:
        assert fig._suptitle.get_text().startswith(f"sreels fit (fast path): {want};"), fig._suptitle.get_text()
    finally:
        plt.close(fig)
    from sreels.plots import usable_rows_text

    assert usable_rows_text(st) == want
    # a row whose R_OO is beyond the rule keeps its O-K peaks, not its R_OO: not counted for R_OO
    st = np.array(list(res.status))
    n_o = int(usable(st, "o").sum())
    st[:3] = [s + "|o_r_beyond_rule" for s in st[:3]]
    assert int(usable(st, "o").sum()) == n_o
    assert usable_rows_text(st).endswith(f"R_OO {n_o - int(usable(st[:3], 'o').sum())} of 90")


def test_profiles_figure_says_what_was_not_measured(small):
    sim, res, d = small
    one = fit_image({"high": windows_of(sim)["high"]})
    d1 = derive(one.position.y_nm, one.columns, usable_by_edge(one.status))
    assert any("c_Li not available" in n for n in d1["notes"])
    assert not any(n.startswith("no electrode") for n in d1["notes"])
    assert np.isfinite(d1["r_oo_parent_nm"])  # parent rows from the far third without Li-K
    fig = draw_profiles(one, d1)
    try:
        assert any("Li-K not measured" in s for s in texts(fig))
        assert fmt_pm(d1["ti_boundary_nm"], d1["ti_boundary_nm_err"], "nm") in "\n".join(texts(fig))
    finally:
        plt.close(fig)


def test_a_single_spectrum_gets_its_fits_and_a_note(small, tmp_path):
    sim, res, d = small
    wins = {k: dataclasses.replace(w, counts=w.counts[40:41], position=dataclasses.replace(w.position, size=1, offset_nm=float(w.position.y_nm[40])))
            for k, w in windows_of(sim).items()}
    one = fit_image(wins)
    d1 = derive(one.position.y_nm, one.columns, usable_by_edge(one.status))
    assert d1["notes"] and "1 row(s)" in d1["notes"][0]
    notes = write_figures(one, d1, tmp_path)
    assert (tmp_path / "spectrum_fits.png").stat().st_size > 10_000
    assert not (tmp_path / "profiles.png").exists() and any("no profile figure" in n for n in notes)


def test_spectrum_images_have_colour_bars_and_do_not_saturate(small):
    sim = small[0]
    fig = draw_spectrum_images(sim)
    try:
        bars = [c for ax in fig.axes for c in ax.child_axes if "counts per" in c.get_xlabel()]
        assert len(bars) == 3
        for ax in fig.axes:
            for im in ax.images:
                data = np.asarray(im.get_array(), float)
                rows = ~sim.profiles.in_pt
                assert np.mean(data[rows] > im.norm.vmax) < 0.002, ax.get_title()
        assert any("AlPO$_4$" in s for s in texts(fig)) == bool((sim.profiles.host_fraction < 0.95).any())
        assert "(nm)" in fig.axes[0].get_ylabel()
        assert any("OO}$ (nm)" in ax.get_xlabel() for ax in fig.axes)  # R_OO in nm, as in the CSV
    finally:
        plt.close(fig)


def test_lowloss_figure_shows_the_zlp_line(small, tmp_path):
    """With a low-loss window: the ZLP line, t/lambda and resolution across the rows; the title reads the
    distortion off the rows (its peak-to-peak); without one, no figure."""
    from sreels.plots import lowloss_figure

    sim, res, _ = small
    assert lowloss_figure(res, tmp_path / "lowloss.png")
    assert (tmp_path / "lowloss.png").stat().st_size > 10_000
    cols = {k: v for k, v in res.columns.items() if k not in ("zlp_shift_ev",)}
    assert not lowloss_figure(dataclasses.replace(res, columns=cols), tmp_path / "none.png")
    pp = np.ptp(res.columns["zlp_shift_ev"])
    assert abs(pp - np.ptp(sim.truth_columns()["zlp_shift_ev"])) < 0.01


def test_residuals_title_counts_only_the_fitted_pixels(small):
    """χ²/N over the pixels a fit used: the O-K fit's pulls are zero outside each row's peak window,
    which the old title averaged in (the demo's O-K panel read 0.06 for 0.25 over the fitted pixels)."""
    from sreels.plots import chi2_per_pixel

    fit = small[1].fits["O-K"]
    p = fit.pulls()
    used = np.broadcast_to(fit.weights, p.shape) > 0
    assert 0.05 < used.mean() < 0.9  # each row's fit window is a part of the O-K window
    rows = np.sum(np.where(used, p, 0.0) ** 2, 1) / used.sum(1)
    assert chi2_per_pixel(fit) == pytest.approx(np.median(rows[used.any(1)]), rel=1e-12)
    assert chi2_per_pixel(fit) > 2 * np.median(np.mean(p**2, 1))


def test_residuals_title_is_not_swamped_by_one_absurd_row(small):
    """One non-converged row (a measured Fe/Cr scan's Li-K row at chi^2_red 1.8e30) made the title's mean over
    every pixel read 1.76e28; the median over rows reads the typical row, and the absurd row is counted apart."""
    from sreels.plots import chi2_per_pixel

    fit = small[1].fits["Li-K"]
    p = fit.pulls()
    sigma = 1.0 / np.sqrt(np.broadcast_to(fit.weights, p.shape))
    data = np.array(fit.data, float)
    data[10] = fit.model[10] + 1e15 * sigma[10]  # pulls 1e15: chi^2/N 1e30 on that row
    bad = dataclasses.replace(fit, data=data)
    typical = chi2_per_pixel(fit)
    assert 0.2 < typical < 2.0  # 0.48 (the PSF and the deconvolution lower the per-pixel variance)
    assert chi2_per_pixel(bad) == pytest.approx(typical, rel=0.05), chi2_per_pixel(bad)
    from sreels.plots import chi2_summary

    n = p.shape[0]
    assert chi2_summary(bad) == f"χ²/N = {chi2_per_pixel(bad):.3g} (median of {n} rows); 1 row > 100"
    assert chi2_summary(fit) == f"χ²/N = {typical:.3g} (median of {n} rows)"
