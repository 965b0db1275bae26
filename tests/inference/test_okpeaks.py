"""The O-K measurement shared by fit and calibrate (inference/okpeaks.py): its definitions on
the forward model without noise, its resolution independence, and the other-edge search."""

import dataclasses

import numpy as np
import pytest

from sreels.axes import EnergyAxis
from sreels.config import Instrument, Scenario
from sreels.errors import SreelsInputError
from sreels.forward.simulate import simulate
from sreels.inference.okpeaks import measure_o_k, noise_ratio_counts, noise_scale, noise_scale_of, other_edges_in


@pytest.mark.parametrize("resolution", [0.5, 1.0])
def test_threshold_of_the_forward_model_is_the_study_s_529_ev(resolution):
    """The model's pre-peaks are placed so that the measured threshold is 529.0 eV, whatever the
    resolution (the inflection is read at a fixed effective resolution); peak b then sits
    C / R^2 above it (the Ti-L2,3 contribution under O-K is removed by the fast path, not here:
    its L1 step 564 eV moves peak b by ~0.15 eV, so this test reads the O-K edge alone)."""
    inst = dataclasses.replace(Instrument(), resolution_fwhm_ev=resolution)
    sim = simulate(Scenario(rows=40, row_nm=47.0, first_row_nm=0.0), inst, rng=1, noise_free=True)
    w = sim.windows["high"]
    m = measure_o_k(w.energy, w.electrons, None, resolution)
    th = m.threshold_ev - sim.shift_ev
    assert np.isfinite(th).all()
    assert np.abs(th - 529.0).max() < 0.04, th


def test_noise_scale_recovers_a_gain():
    rng = np.random.default_rng(2)
    lam = np.full((50, 400), 2000.0) * np.linspace(1, 0.5, 400)
    y = 3.0 * rng.poisson(lam)
    assert noise_scale(y, np.maximum(y, 1.0)) == pytest.approx(3.0, rel=0.05)


def test_the_noise_scale_is_the_pixels_median_and_adds_over_blocks():
    """The median of the ratios from their histogram: the pixels' median (np.median) within 1e-4 on 0.4 M Poisson
    pixels; the blocks' histograms added give exactly the whole image's scale, and so do the histograms divided by
    the rows (an image average's form); no ratios, or more than half of them zero (flat integer counts), give 1."""
    rng = np.random.default_rng(5)
    y = rng.poisson(np.linspace(50.0, 5000.0, 1024)[None, :] * rng.uniform(0.5, 2.0, (400, 1)), (400, 1024)) * 2.5
    var = np.maximum(y, 1.0)
    d2 = y[:, :-2] - 2 * y[:, 1:-1] + y[:, 2:]
    exact = float(np.median(d2**2 / 6.0 / var[:, 1:-1])) / 0.4549
    k = noise_scale(y, var)
    assert k == pytest.approx(exact, rel=1e-4) and k == pytest.approx(2.5, rel=0.05)
    parts = [noise_ratio_counts(y[i:i + 37], var[i:i + 37]) for i in range(0, 400, 37)]
    assert noise_scale_of(sum(parts)) == k
    assert noise_scale_of(sum(parts) / 400.0) == k
    assert noise_scale_of(np.zeros(12000)) == 1.0
    assert noise_scale(np.full((3, 50), 7.0), np.ones((3, 50))) == 1.0


def _spectrum(th=530.0, eb=565.0, cr=None, n=1, noise=5.0, seed=3):
    rng = np.random.default_rng(seed)
    e = np.arange(470.0, 620.0, 0.2)
    y = 1e10 * e**-3.0 + 2000 / (1 + np.exp(-(e - th) / 0.4)) * np.exp(-np.clip(e - th, 0, None) / 80)
    y = y + 600 * np.exp(-0.5 * ((e - eb) / 3.0) ** 2)
    if cr is not None:  # a white line + step, as Cr-L3 at 575 eV
        y = y + 3000 * np.exp(-0.5 * ((e - cr - 2) / 1.0) ** 2) + 800 / (1 + np.exp(-(e - cr) / 0.5))
    return EnergyAxis(470.0, 0.2, e.size), y[None, :] + rng.normal(0, noise, (n, e.size))


def test_synthetic_peak_b_and_threshold():
    ax, y = _spectrum()
    m = measure_o_k(ax, y, np.full(y.shape, 25.0), 0.5)
    assert m.peak_b_ev[0] == pytest.approx(565.0, abs=0.2)
    assert abs(m.peak_b_ev[0] - 565.0) < 3 * m.peak_b_err_ev[0] + 0.05
    assert m.threshold_ev[0] == pytest.approx(530.0, abs=0.6)
    assert not any(v[0] for v in m.flags.values())


def test_the_measurement_without_its_figure_view_gives_the_same_numbers():
    """``figures=False`` (a Dask fit's blocks) leaves out the EdgeFit view for figures and nothing else: every
    number and flag bit for bit those of the measurement with it, on noisy rows with a Cr-L edge in the window."""
    ax, y = _spectrum(n=12, cr=575.0)
    var = np.full(y.shape, 25.0)
    with_fig, without = measure_o_k(ax, y, var, 0.5), measure_o_k(ax, y, var, 0.5, figures=False)
    assert with_fig.fit is not None and without.fit is None
    for f in dataclasses.fields(with_fig):
        a, b = getattr(with_fig, f.name), getattr(without, f.name)
        if f.name == "flags":
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        elif isinstance(a, np.ndarray):
            assert np.array_equal(a, b, equal_nan=True), f.name
        elif f.name != "fit":
            assert a == b, f.name


def test_another_edge_cuts_the_peak_b_search():
    """A Cr-L3 white line at 575 eV (exspy's onset table): found, and peak b is not put on it."""
    ax, y = _spectrum(eb=563.0, cr=575.0)
    m = measure_o_k(ax, y, np.full(y.shape, 25.0), 0.5)
    assert "Cr-L3" in m.other_edges and m.cut_ev < 575.0
    assert m.peak_b_ev[0] == pytest.approx(563.0, abs=0.4)
    found = other_edges_in(ax.energy_ev, y[0], np.full(y.shape[1], 25.0), 530.0, 535.0, 600.0)
    assert [n for n, _ in found if n == "Cr-L3"]


def test_no_o_edge_is_flagged_not_measured():
    e = np.arange(470.0, 620.0, 0.2)
    rng = np.random.default_rng(0)
    y = (1e10 * e**-3.0)[None, :] + rng.normal(0, 5, (3, e.size))
    y[:, e > 530] += 0.5  # a step far below the noise: no O-K edge
    m = measure_o_k(EnergyAxis(470.0, 0.2, e.size), y, np.full(y.shape, 25.0), 0.5)
    assert m.flags["no_o"].all() and np.isnan(m.peak_b_ev).all()


def test_window_without_room_for_the_background_is_refused():
    ax, y = _spectrum()
    e = ax.energy_ev
    keep = e >= 527.0
    with pytest.raises(SreelsInputError, match="pre-edge window"):
        measure_o_k(EnergyAxis(float(e[keep][0]), 0.2, int(keep.sum())), y[:, keep], None, 0.5,
                    onset_search_ev=(515.0, 545.0))


def test_peak_a_basis_on_the_fitted_columns_only_gives_the_whole_axis_numbers():
    """The peak-a fit's continuum interpolated on the columns its windows read (:class:`.okpeaks._Columns`)
    gives exactly what the continuum over the whole axis gave, near the axis' ends too."""
    from sreels.inference.edgefits import Shifted
    from sreels.inference.okpeaks import _Columns, _peak_columns, _peak_fit

    rng = np.random.default_rng(3)
    e = EnergyAxis(500.0, 0.1, 400).energy_ev
    rows = 50
    c = rng.uniform(505.0, 535.0, rows)
    c[:2] = (500.5, 539.5)  # windows cut by the axis' ends
    ref = Shifted.build(np.arange(480.0, 560.0, 0.01), 1.0 / (1.0 + np.exp(-(np.arange(480.0, 560.0, 0.01) - 520.0))))
    d = rng.normal(0.0, 2.0, rows)
    full = ref.interpolate(ref.index(e, d), slopes=False)
    s = 50.0 * np.exp(-0.5 * ((e[None, :] - c[:, None]) / 1.3) ** 2) + 20.0 * full + rng.normal(0, 1.0, (rows, e.size))
    var = np.ones_like(s)
    i0 = np.clip(np.searchsorted(e, c), 0, e.size - 1)
    c0, c1 = _peak_columns(i0, 3.0, e)
    cols = _Columns(c0, c1, ref.interpolate(ref.index(e[c0:c1], d), slopes=False))
    a = _peak_fit(e, s, var, i0, 3.0, e[-1], 1.3, full, fixed_sigma=np.full(rows, 1.3))
    b = _peak_fit(e, s, var, i0, 3.0, e[-1], 1.3, cols, fixed_sigma=np.full(rows, 1.3))
    for x, y in zip(a, b):
        assert np.array_equal(x, y, equal_nan=True)


def test_largest_peak_on_the_searched_columns_equals_the_whole_rows():
    """:func:`.okpeaks._largest_peak` (read on the columns ``ok`` covers) gives the whole rows' indices and flags:
    windows at either end of the axis, rows without a window or a peak, NaN and -inf values, ties."""
    from sreels.inference.okpeaks import _largest_peak, _largest_peak_rows

    rng = np.random.default_rng(7)
    rows, n = 60, 300
    for lo, hi in ((0, 40), (120, 190), (250, 300), (0, 300), (5, 6)):
        v = rng.normal(size=(rows, n)).round(1)   # (ties)
        v[3] = np.nan
        v[4, lo:hi] = -np.inf
        v[5, :] = np.linspace(0, 1, n)            # monotonic: no interior maximum
        ok = np.zeros((rows, n), bool)
        ok[:, lo:hi] = rng.random((rows, hi - lo)) < 0.9
        ok[6] = False                             # a row without a window
        ok[7, lo:hi] = True
        for o in (ok, np.broadcast_to(ok[7], (rows, n))):
            i0, h0 = _largest_peak_rows(v, o)
            i1, h1 = _largest_peak(v, o)
            assert np.array_equal(i0, i1) and np.array_equal(h0, h1)
    assert np.array_equal(_largest_peak(v, np.zeros((rows, n), bool))[0], np.zeros(rows, int))
