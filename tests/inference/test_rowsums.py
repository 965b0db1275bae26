"""Sums over rows whose value does not depend on the rows' order or blocks (sreels.inference.rowsums), the row sample
of the plural tails' covariance, and per-row numbers that do not depend on the other rows of a block: what makes a
Dask fit's numbers the in-memory fit's bit for bit."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sreels.inference.rowsums import PIECE_ROWS, add_sums, row_mean, row_sums, sum_value

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(float, st.tuples(st.integers(1, 60), st.integers(1, 4)), elements=finite), st.randoms())
def test_a_sum_over_rows_is_faithful_in_any_order_and_blocks(v, rnd):
    """Any values (24 decades, signs mixed, ties): the blocks' components, added in any order, round to fsum's sum
    within one unit in its last place, or ~2^-100 of the largest value where the rows cancel."""
    exact = np.array([math.fsum(v[:, j]) for j in range(v.shape[1])])
    tol = np.maximum(np.spacing(np.abs(exact)), 2.0**-100 * v.shape[0] * np.abs(v).max(0))
    assert np.all(np.abs(sum_value(row_sums(v)) - exact) <= tol)
    perm = list(range(v.shape[0]))
    rnd.shuffle(perm)
    cuts = sorted(rnd.sample(range(1, v.shape[0]), min(v.shape[0] - 1, rnd.randint(0, 5)))) if v.shape[0] > 1 else []
    parts = [row_sums(p) for p in np.split(v[perm], cuts)]
    assert np.all(np.abs(sum_value(add_sums(parts)) - exact) <= tol)


def test_measured_like_sums_are_the_correctly_rounded_sum_in_any_order_and_blocks():
    """Values with full mantissas (noise, 10 decades between columns, rows scaled by up to 1e8, signs mixed): the
    correctly rounded sum (math.fsum's), bit for bit, for any permutation and cut into blocks, in 400 draws (it can
    differ only where the exact sum lies within ~2^-100 of the largest value from a rounding boundary)."""
    rng = np.random.default_rng(11)
    for trial in range(400):
        n, c = int(rng.integers(1, 2500)), int(rng.integers(1, 5))
        v = rng.normal(0.0 if trial % 2 else 5.0, 1.0, (n, c)) * 10.0 ** rng.integers(-5, 6, (1, c))
        if trial % 3 == 0:
            v *= 10.0 ** rng.uniform(-4, 4, (n, 1))
        exact = np.array([math.fsum(v[:, j]) for j in range(c)])
        cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, int(rng.integers(0, 9))), replace=False)) \
            if n > 1 else []
        parts = [row_sums(p) for p in np.split(v[rng.permutation(n)], cuts)]
        assert np.array_equal(sum_value(row_sums(v)), exact), trial
        assert np.array_equal(sum_value(add_sums(parts[::-1])), exact), trial


def test_long_images_are_summed_in_pieces_to_the_same_sums():
    """More rows than a piece (PIECE_ROWS): pieces' components are summed again; still fsum's sum, whatever the
    blocks; numpy's own sum differs from it in its last bits (the reason for all this)."""
    rng = np.random.default_rng(4)
    v = rng.normal(1e3, 30.0, (3 * PIECE_ROWS + 17, 64)) * rng.lognormal(0, 1, (1, 64))
    exact = np.array([math.fsum(v[:, j]) for j in range(v.shape[1])])
    assert np.array_equal(sum_value(row_sums(v)), exact)
    blocks = [v[i:i + 300] for i in range(0, v.shape[0], 300)][::-1]
    assert np.array_equal(sum_value(add_sums([row_sums(b) for b in blocks])), exact)
    assert np.array_equal(row_mean(v), exact / v.shape[0])
    assert not np.array_equal(v.sum(0), exact)   # (pairwise summation: 1 ulp off in some columns)
    assert row_sums(np.empty((0, 3))).shape == (3, 3) and np.all(row_mean(np.empty((0, 3))) == 0.0)


def test_the_tails_moments_are_a_row_sample_gathered_in_the_image_order():
    """An image's mean and covariance from every stride-th row: blocks (in any order, cut anywhere) collect their
    rows of the sample and the combined moments are the whole image's bit for bit; up to COVARIANCE_ROWS rows every
    row."""
    from sreels.inference.deconvolve import (COVARIANCE_ROWS, ImageStats, image_stats, sample_stride,
                                             sampled_moments, stats_scope)

    rng = np.random.default_rng(2)
    n = COVARIANCE_ROWS + 1500
    a = rng.normal(0, 1, (n, 12)) @ rng.normal(0, 1, (12, 12)) + 50.0
    mu, cov = sampled_moments(a)
    assert sample_stride(n) == 2 and sample_stride(COVARIANCE_ROWS) == 1
    assert np.allclose(mu, a[::2].mean(0), rtol=1e-14) and np.allclose(cov, np.cov(a[::2].T, bias=True), rtol=1e-12)
    cuts = [0, 777, 1500, 2900, n]
    parts = []
    for i0, i1 in reversed(list(zip(cuts[:-1], cuts[1:]))):
        with image_stats(ImageStats(rows=np.arange(i0, i1), image_rows=n)) as stats, stats_scope("w"):
            assert sampled_moments(a[i0:i1]) is None   # (collecting)
        parts.append(stats.parts)
    got = ImageStats.combine(parts)["w"][0]
    assert np.array_equal(got[0], mu) and np.array_equal(got[1], cov)


def test_a_row_fitted_among_other_rows_gets_its_own_numbers():
    """The batched power-law fit and the linear algebra behind the batched fits give a row the same bits whatever
    rows share its batch (BLAS's 2-D products did not: their rows depend on how many rows they are given), and a
    singular row beside it does not send it to the pseudo-inverse."""
    from sreels.axes import EnergyAxis
    from sreels.inference.background import fit_power_law
    from sreels.inference.batchfit import _inverse, _solve

    rng = np.random.default_rng(9)
    ax = EnergyAxis(400.0, 0.25, 300)
    y = rng.poisson(5e3 * (ax.energy_ev / 400.0)[None, :] ** -3.2 * rng.uniform(0.5, 2, (200, 1))).astype(float)
    whole = fit_power_law(ax, y, 400.0, 470.0, np.maximum(y, 1.0))
    for sl in (slice(64, 65), slice(3, 6), slice(5, 12), slice(100, 137), slice(0, 200)):
        part = fit_power_law(ax, y[sl], 400.0, 470.0, np.maximum(y[sl], 1.0))
        assert np.array_equal(part.r, whole.r[sl]) and np.array_equal(part.log_a, whole.log_a[sl])
    A = rng.normal(0, 1, (6, 4, 4))
    A = A @ np.swapaxes(A, 1, 2) + np.diag([1e-6, 1, 1, 1])   # ill-conditioned, not singular
    b = rng.normal(0, 1, (6, 4))
    sing = A.copy()
    sing[2] = 0.0
    assert np.array_equal(_inverse(sing)[[0, 1, 3, 4, 5]], _inverse(A)[[0, 1, 3, 4, 5]])
    assert np.array_equal(_solve(sing, b)[[0, 1, 3, 4, 5]], _solve(A, b)[[0, 1, 3, 4, 5]])
    assert np.array_equal(_inverse(sing)[2], np.zeros((4, 4)))   # (the pseudo-inverse of zero)


@pytest.mark.parametrize("rows", [1, 5, 64])
def test_the_plural_tails_projection_of_a_row_is_its_own(rows):
    """denoise_rows' projection of a row on the image's components: the same bits alone or among 300 rows."""
    from sreels.inference.lowloss import denoise_rows

    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (300, 3)) @ rng.normal(0, 1, (3, 90)) + rng.normal(0, 0.01, (300, 90)) + 10.0
    from sreels.inference.deconvolve import ImageStats, image_stats, stats_scope

    with image_stats(ImageStats(rows=np.arange(300), image_rows=300)) as st, stats_scope("t"):
        denoise_rows(a)
    totals = ImageStats.combine([st.parts])
    out = []
    for sl in (slice(0, 300), slice(7, 7 + rows)):
        with image_stats(ImageStats(totals)), stats_scope("t"):
            out.append(denoise_rows(a[sl]))
    assert np.array_equal(out[1], out[0][7:7 + rows])


def test_a_block_sees_the_noise_of_the_image_mean_not_its_own():
    """The variance of the image's mean spectrum, against which other edges are looked for in it (edges under O-K's
    post-edge, transition-metal L3 lines; they cut or withhold numbers): blocks' sums of the unscaled variances
    (daskfit._means) give a block the whole image's, bit for bit; its own rows gave it 9x the variance."""
    import dataclasses

    from sreels.config import Instrument, Scenario
    from sreels.forward.simulate import simulate
    from sreels.inference.daskfit import _means
    from sreels.inference.fast import FitSettings, _Run, resolve_instrument, unscaled_variance

    from .fasthelpers import windows_of

    sim = simulate(Scenario(rows=45), Instrument(plural_scattering=False, lowloss_window=False), rng=8)
    wins = {k: dataclasses.replace(v, name=k) for k, v in windows_of(sim).items()}
    s, _ = resolve_instrument(wins, FitSettings())
    k, w = next((k, w) for k, w in wins.items() if w.energy.end_ev >= 550.0)
    whole = _Run(s, 45, [set() for _ in range(45)]).mean_noise(w)
    blocks = [dataclasses.replace(w, counts=w.counts[i:i + 5]) for i in range(0, 45, 5)]
    parts = [({k: (row_sums(b.counts), row_sums(unscaled_variance(b, s)), 5)}, None) for b in blocks]
    _, mean_vars, _ = _means(*parts[::-1])
    got = _Run(s, 5, [set() for _ in range(5)], mean_vars=mean_vars).mean_noise(blocks[3])
    assert np.array_equal(got, whole)
    own = _Run(s, 5, [set() for _ in range(5)]).mean_noise(blocks[3])
    assert 7.0 < np.median(own / whole) < 11.0   # (45 rows against 5: 9x the variance)
