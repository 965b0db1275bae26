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


def _plain_lm(model, p0, y, w, max_iter=200, dchi2=1e-2, lam0=1e-3):
    """Levenberg-Marquardt as batchfit's docstring defines it, without its shortcuts: the normal
    equations of every iterating row formed anew each iteration from its stored Jacobian
    (rows, channels, parameters)."""
    p = np.array(p0, float)
    rows, npar = p.shape
    m, J = model(p, np.arange(rows))
    chi2 = np.sum(w * (y - m) ** 2, 1)
    lam, done = np.full(rows, lam0), ~np.isfinite(chi2)
    it = 0
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        Jw = J[idx] * w[idx, :, None]
        A = np.einsum("rnp,rnq->rpq", Jw, J[idx])
        g = np.einsum("rnp,rn->rp", Jw, y[idx] - m[idx])
        d = np.diagonal(A, axis1=1, axis2=2)
        step = np.linalg.solve(A + lam[idx, None, None] * np.eye(npar) * np.maximum(d, 1e-30)[:, :, None],
                               g[:, :, None])[:, :, 0]
        p_new = p[idx] + step
        m_new, J_new = model(p_new, idx)
        c_new = np.sum(w[idx] * (y[idx] - m_new) ** 2, 1)
        better = np.isfinite(c_new) & (c_new <= chi2[idx])
        settled = np.abs(chi2[idx] - c_new) < np.maximum(dchi2, 1e-9 * chi2[idx])
        b = idx[better]
        p[b], m[b], J[b], chi2[b] = p_new[better], m_new[better], J_new[better], c_new[better]
        lam[idx] = np.where(better, lam[idx] / 5.0, lam[idx] * 10.0)
        done[idx] |= settled | (lam[idx] > 1e12)
    Jw = J * w[:, :, None]
    cov = np.linalg.inv(np.einsum("rnp,rnq->rpq", Jw, J))
    return p, cov, chi2, it


def test_the_batched_lm_keeps_the_plain_iterates_in_both_jacobian_layouts():
    """Normal equations kept per row (formed once per accepted step) and the transposed Jacobian give
    the plain algorithm's parameters, iterations and covariances: a power law plus two Gaussians of
    free position per row, with starts far enough off that rows need different numbers of steps
    (rejected steps included)."""
    from sreels.inference.batchfit import levenberg_marquardt

    rng = np.random.default_rng(21)
    rows, x = 40, np.linspace(-1.0, 1.0, 150)
    truth = np.column_stack([rng.uniform(3, 5, rows), rng.uniform(1, 3, rows), rng.uniform(20, 60, rows),
                             rng.uniform(-0.3, 0.3, rows), rng.uniform(10, 30, rows)])

    def parts(p, idx):
        e = np.exp(p[:, :1] - p[:, 1:2] * (x[None, :] + 2.0))
        g1 = np.exp(-0.5 * ((x[None, :] - p[:, 3:4]) / 0.1) ** 2)
        g2 = np.exp(-0.5 * ((x[None, :] - p[:, 3:4] - 0.4) / 0.15) ** 2)
        m = e + p[:, 2:3] * g1 + p[:, 4:5] * g2
        dc = p[:, 2:3] * g1 * (x[None, :] - p[:, 3:4]) / 0.01 + p[:, 4:5] * g2 * (x[None, :] - p[:, 3:4] - 0.4) / 0.0225
        return m, [e, -e * (x[None, :] + 2.0), g1, dc, g2]

    m_true, _ = parts(truth, None)
    w = 1.0 / np.maximum(m_true, 1.0)
    y = m_true + rng.normal(size=m_true.shape) / np.sqrt(w)
    p0 = truth + rng.normal(size=truth.shape) * [0.3, 0.3, 5.0, 0.08, 5.0]
    p_ref, cov_ref, chi_ref, it_ref = _plain_lm(lambda p, i: (parts(p, i)[0], np.stack(parts(p, i)[1], -1)), p0, y, w)
    assert it_ref > 5
    for transposed in (False, True):
        axis = 1 if transposed else -1
        res = levenberg_marquardt(lambda p, i: (parts(p, i)[0], np.stack(parts(p, i)[1], axis)), p0, y, w,
                                  transposed=transposed)
        assert res.n_iter == it_ref
        np.testing.assert_allclose(res.params, p_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.cov, cov_ref, rtol=1e-6, atol=1e-14)
        np.testing.assert_allclose(res.chi2_red * (x.size - 5), chi_ref, rtol=1e-10)
        m, J = parts(res.params, None)  # the model and Jacobian kept are those at the solution
        np.testing.assert_allclose(res.model, m, rtol=1e-12)
        np.testing.assert_allclose(res.jac, np.stack(J, axis), rtol=1e-12, atol=1e-300)


def test_a_fit_with_a_gap_of_no_weight_ignores_the_gap_and_models_it():
    """The channels without weight in every row are left out of the iterations: the data there do not
    matter, the model there is the fitted background plus amplitudes times the shapes, and the reduced
    chi^2 is per degree of freedom of the whole window (as when they were iterated with weight 0)."""
    from sreels.axes import EnergyAxis
    from sreels.inference.edgefits import fit_linear_edges

    rng = np.random.default_rng(3)
    ax = EnergyAxis(480.0, 0.1, 1700)
    e = ax.energy_ev
    fine = np.arange(440.0, 660.0, 0.01)
    shape = 1.0 / (1.0 + np.exp(-(fine - 529.0) / 1.5)) * (fine / 529.0) ** -2.5
    rows = 12
    amp = rng.uniform(2e3, 4e3, rows)
    delta = rng.uniform(-0.5, 0.5, rows)
    m = 4e5 * (e[None, :] / 500.0) ** -rng.uniform(3, 3.4, rows)[:, None] \
        + amp[:, None] * np.interp(e[None, :] - delta[:, None], fine, shape)
    y = rng.poisson(m).astype(float)
    gap = (e > 526.0) & (e < 584.0)
    mask = np.broadcast_to(gap, y.shape)
    fits = []
    for junk in (0.0, 1e9):
        y2 = np.where(gap, y + junk, y)
        fits.append(fit_linear_edges(ax, y2, np.maximum(m, 1.0), (fine, {"O": shape}), ("O",), 495.0, 634.0, 526.0,
                                     delta=delta, mask=mask, fit_delta=False))
    a, b = fits
    np.testing.assert_array_equal(a.result.params, b.result.params)
    sl = ax.slice(495.0, 634.0)
    assert a.model.shape == (rows, sl.stop - sl.start) and (a.weights[:, gap[sl]] == 0).all()
    p = a.result.params
    x = np.log(a.energy / a.e_ref)
    want = np.exp(p[:, :1] - p[:, 1:2] * x[None, :]) \
        + p[:, 2:3] * np.interp(a.energy[None, :] - delta[:, None], fine, shape / a.ref_scale)
    np.testing.assert_allclose(a.model, want, rtol=1e-6)  # (linear interpolation on the 0.01 eV grid vs np.interp)
    chi = np.sum(a.weights * (a.data - a.model) ** 2, 1) / (a.data.shape[1] - 3)
    np.testing.assert_allclose(a.result.chi2_red, chi, rtol=1e-9)
    z = (p[:, 2] / a.ref_scale - amp) / (a.err("O") / a.ref_scale)  # the amplitudes found, within their errors
    assert np.all(np.abs(z) < 4.0)


def _curved_edges(rows, seed):
    """A Li-K-like window: a log-quadratic background under an edge and a broad peak, per-row truths."""
    from sreels.axes import EnergyAxis

    rng = np.random.default_rng(seed)
    ax = EnergyAxis(40.0, 0.1, 700)
    fine = np.arange(20.0, 120.0, 0.01)
    refs = {"edge": 1.0 / (1.0 + np.exp(-(fine - 56.0) / 0.8)) * (fine / 56.0) ** -2.0,
            "peak": np.exp(-0.5 * ((fine - 49.0) / 3.0) ** 2)}
    e = ax.energy_ev
    e_ref = 50.0
    x = np.log(e / e_ref)
    truth = np.column_stack([rng.uniform(8.5, 9.0, rows), rng.uniform(3.0, 5.0, rows), rng.uniform(-2.0, 2.0, rows),
                             rng.uniform(2e2, 4e2, rows), rng.uniform(50.0, 150.0, rows)])
    delta = rng.uniform(-0.3, 0.3, rows)
    bg = np.exp(truth[:, :1] - truth[:, 1:2] * x - truth[:, 2:3] * x**2)
    m = bg + sum(truth[:, 3 + i, None] * np.interp(e[None, :] - delta[:, None], fine, refs[n])
                 for i, n in enumerate(("edge", "peak")))
    return ax, (fine, refs), m, delta, truth, rng, e_ref


def test_the_projected_fit_recovers_a_noise_free_truth_and_reaches_the_minimum_of_noisy_rows():
    """Variable projection (amplitudes solved exactly, the exponents r, s iterated): noise-free rows give
    the truth (the full-parameter iteration, which crawls along the amplitudes' valley, too, less
    tightly); on Poisson rows every row's chi^2 is at or below the full-parameter iteration's, the
    gradient of chi^2 over every parameter vanishes there (the undamped step predicts < 0.01), and
    the covariance is that of every parameter, (J' W J)^-1 at the solution."""
    from sreels.inference.edgefits import fit_linear_edges

    ax, refs, m, delta, truth, rng, e_ref = _curved_edges(24, 5)
    names = ("edge", "peak")
    # (variances 1e-10 of the counts: the stop at a chi^2 change of 0.01 is then ~1e-6 of an error; the model's
    # interpolation of the references on their 0.01 eV grid differs from np.interp's by ~1e-9 relative)
    fit = fit_linear_edges(ax, m, 1e-10 * m, refs, names, 45.0, 100.0, 54.0, delta=delta,
                           fit_delta=False, curvature=True, exponents=(4.0, 0.0), projected=True)
    got = fit.result.params.copy()
    got[:, 3:] /= fit.ref_scale
    d = np.log(fit.e_ref / e_ref)  # the truth's background written about the fit's E_ref
    truth[:, 0], truth[:, 1] = truth[:, 0] - truth[:, 1] * d - truth[:, 2] * d**2, truth[:, 1] + 2 * truth[:, 2] * d
    np.testing.assert_allclose(got[:, :2], truth[:, :2], rtol=1e-8)
    np.testing.assert_allclose(got[:, 2], truth[:, 2], rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(got[:, 3:], truth[:, 3:], rtol=1e-7)
    y = rng.poisson(m).astype(float)
    var = np.maximum(m, 1.0)
    kw = dict(delta=delta, fit_delta=False, curvature=True)
    full = fit_linear_edges(ax, y, var, refs, names, 45.0, 100.0, 54.0, **kw)
    proj = fit_linear_edges(ax, y, var, refs, names, 45.0, 100.0, 54.0, projected=True, **kw)
    dof = proj.data.shape[1] - 5
    assert proj.result.converged.all()
    assert np.all(proj.result.chi2_red * dof <= full.result.chi2_red * dof + 1e-2)  # (both stop at changes < 0.01)
    J, w, r = np.swapaxes(proj.jac, 1, 2), proj.weights, proj.data - proj.model
    g = np.einsum("rpn,rn->rp", J * w[:, None, :], r)
    A = np.einsum("rpn,rqn->rpq", J * w[:, None, :], J)
    assert np.all(np.einsum("rp,rp->r", g, np.linalg.solve(A, g[:, :, None])[:, :, 0]) < 1e-2)
    np.testing.assert_allclose(proj.result.cov, np.linalg.inv(A), rtol=1e-8)
    np.testing.assert_allclose(proj.result.chi2_red * dof, np.sum(w * r**2, 1), rtol=1e-10)
    # the amplitudes within their errors of the truth (a statistical check: |z| < 4 for 24 x 2 values)
    z = (proj.result.params[:, 3:] / proj.ref_scale - truth[:, 3:]) / (proj.result.stderr[:, 3:] / proj.ref_scale)
    assert np.all(np.abs(z) < 4.0)


def test_the_projected_fit_survives_a_row_without_weight():
    """A row whose channels all lack weight (saturated, masked) has a singular normal matrix: it is
    handed to the every-parameter iteration and the other rows' results are those of a fit without it."""
    from sreels.inference.edgefits import fit_linear_edges

    ax, refs, m, delta, truth, rng, e_ref = _curved_edges(6, 8)
    y = rng.poisson(m).astype(float)
    mask = np.zeros(y.shape, bool)
    mask[2] = True
    kw = dict(fit_delta=False, curvature=True, projected=True)
    a = fit_linear_edges(ax, y, np.maximum(m, 1.0), refs, ("edge", "peak"), 45.0, 100.0, 54.0, delta=delta,
                         mask=mask, **kw)
    keep = np.arange(6) != 2
    b = fit_linear_edges(ax, y[keep], np.maximum(m, 1.0)[keep], refs, ("edge", "peak"), 45.0, 100.0, 54.0,
                         delta=delta[keep], **kw)
    np.testing.assert_allclose(a.result.params[keep], b.result.params, rtol=1e-9)
    np.testing.assert_allclose(a.result.cov[keep], b.result.cov, rtol=1e-7)
