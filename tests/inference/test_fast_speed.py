"""The vectorised forms of the fast path's steps give the numbers of their plain definitions."""

import numpy as np

from sreels.inference.daskfit import _map_tiles
from sreels.inference.load import WindowData
from sreels.inference.lowloss import _log_ratio_excess
from sreels.inference.okpeaks import OTHER_EDGES, O_K_ONSET_EV, one_edge_per_rise, other_edges_in


def _other_edges_loop(e, mean, noise, onset, lo_ev, hi_ev):
    """other_edges_in as its docstring defines it, one candidate onset at a time (np.polyfit lines)."""
    found = []
    for name, e_x in OTHER_EDGES:
        ex0 = e_x + (onset - O_K_ONSET_EV)
        best = None
        if ex0 + 5.0 < lo_ev or ex0 - 5.0 > hi_ev:
            continue
        for ex in ex0 + np.arange(-5.0, 5.01, 0.5):
            pre = (e >= ex - 10) & (e <= ex - 1)
            post = (e >= ex) & (e <= ex + 8)
            if not (lo_ev <= ex <= hi_ev) or pre.sum() < 3 or post.sum() < 3 or ex + 8 > e[-1]:
                continue
            k, b = np.polyfit(e[pre], mean[pre], 1)
            rise = np.mean(mean[post]) - max(np.mean(k * e[post] + b), np.mean(mean[pre]))
            n = np.sqrt(np.mean(noise[post]) / post.sum() + np.mean(noise[pre]) / pre.sum())
            if rise > 5 * n and rise > 0.1 * abs(np.mean(mean[pre])) and (best is None or rise > best[0]):
                best = (rise, float(ex))
        if best is not None:
            found.append((name, best[1], best[0], abs(best[1] - ex0)))
    return one_edge_per_rise(found)


def test_other_edges_in_finds_what_the_one_at_a_time_definition_finds():
    rng = np.random.default_rng(5)
    e = np.arange(400.0, 900.0, 0.1)
    hits = 0
    for _ in range(6):
        m = 1e5 * (e / 400) ** -3
        for _, ex in OTHER_EDGES:  # random steps at random tabulated edges, a few eV off
            if rng.random() < 0.3:
                m = m + rng.uniform(0, 0.4) * 1e5 * (ex / 400) ** -3 * (e >= ex + rng.uniform(-4, 4)) \
                    * np.exp(-(e - ex).clip(0) / 50)
        m = m + rng.normal(0, 1, e.size) * np.sqrt(m) * rng.uniform(0, 3)
        n = e.size - int(rng.integers(0, 3000))
        noise = m / rng.uniform(1, 1000)
        for onset in (529.0, 531.3):
            for lo, hi in ((e[0] + 10, onset - 12), (onset + 5, onset + 48), (e[0] + 10, e[n - 1] - 8)):
                want = _other_edges_loop(e[:n], m[:n], noise[:n], onset, lo, hi)
                assert other_edges_in(e[:n], m[:n], noise[:n], onset, lo, hi) == want
                hits += len(want)
    assert hits > 10  # the spectra hold edges to find


def test_the_fourier_log_in_real_arithmetic_is_numpy_s_complex_log():
    rng = np.random.default_rng(2)
    jf = rng.normal(size=(50, 300)) + 1j * rng.normal(size=(50, 300))
    zf = rng.normal(size=(50, 300)) + 1j * rng.normal(size=(50, 300))
    zf[0, :3] = 0.0  # q not finite: 0, as numpy's where(isfinite) gives
    g = np.exp(-np.linspace(0, 30, 300))[None, :]
    with np.errstate(all="ignore"):
        q = jf / zf
        want = np.where(g > 1e-8, g * (q - 1.0 - np.log(q)), 0.0)
    want = np.where(np.isfinite(want), want, 0.0)
    got = _log_ratio_excess(jf, zf, g)
    assert np.all(got[0, :3] == 0) and np.any(g <= 1e-8)
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_map_blocks_follow_the_storage_chunks_and_cover_every_pixel_once():
    da = __import__("dask.array", fromlist=["array"])
    ny, nx, ch = 10, 7, 4
    data = da.zeros((ny, nx, ch), chunks=(10, 3, ch))  # column strips, as write_map stores a map
    w = WindowData("high", None, data.reshape(-1, ch), None, "m", map_counts=data)
    for step in (2, 5, 30, 1000):
        tiles = _map_tiles({"high": w}, step)
        order = np.concatenate([idx for idx, _ in tiles])
        assert np.array_equal(np.sort(order), np.arange(ny * nx))
        for idx, (ys, xs) in tiles:
            assert idx.size <= step or (xs.stop - xs.start) == 1 and (ys.stop - ys.start) == 1
            assert xs.start // 3 == (xs.stop - 1) // 3  # within one chunk of columns
            iy, ix = np.divmod(idx, nx)
            assert np.array_equal(iy, np.repeat(np.arange(ys.start, ys.stop), xs.stop - xs.start))
            assert np.array_equal(ix, np.tile(np.arange(xs.start, xs.stop), ys.stop - ys.start))
    assert _map_tiles({"high": WindowData("high", None, data.reshape(-1, ch), None, "m")}, 5) is None


def test_filters_on_the_channels_read_equal_the_filters_over_whole_rows():
    from scipy.ndimage import convolve1d, gaussian_filter1d

    from sreels.inference.okpeaks import _filter_on, _gauss_kernel, _gauss_reach

    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 300))
    for lo, hi in ((0, 5), (40, 90), (250, 300), (120, 121)):  # at either end, inside, one channel
        ok = np.zeros(x.shape, bool)
        ok[2:, lo:hi] = True
        sel = slice(max(lo - 1, 0), min(hi + 1, 300))  # the channels and one either side
        for sig, order in ((6.3, 1), (20.0, 0), (10.0, 0)):
            full = gaussian_filter1d(x, sig, axis=-1, order=order, mode="nearest")
            got = _filter_on(x, ok, _gauss_reach(sig),
                             lambda v: gaussian_filter1d(v, sig, axis=-1, order=order, mode="nearest"))
            assert np.array_equal(got[:, sel], full[:, sel])
        k = _gauss_kernel(6.3, 2)[::-1] ** 2
        full = convolve1d(x, k, axis=-1, mode="nearest")
        got = _filter_on(x, ok, k.size, lambda v: convolve1d(v, k, axis=-1, mode="nearest"))
        assert np.array_equal(got[:, sel], full[:, sel])
