"""The Li-K tail's noise columns as sreels.inference.bayes.plural computed them before s23 (commit fc449ad),
kept as the slow reference of the faster code: the binned tail's Jacobian by three FFTs per bin and row, the
covariance by the tridiagonal product, and a full eigen-decomposition (numpy's eigh) per row."""

import numpy as np
from scipy import fft as sfft
from scipy import sparse

from sreels.axes import EnergyAxis
from sreels.inference.bayes.plural import ROW_TAIL_KEEP


def reference_tail_covariance(counts, var, axis: EnergyAxis, centre_ev, threshold_ev, step_ev: float, span_ev: float,
                    fwhm_ev: float, energy_ev: np.ndarray, factor: float, batch: int = 8) -> np.ndarray:
    """The covariance (rows, bins, bins) of the binned multiple-scattering tail of :func:`tail_window` (the
    steps of :func:`sreels.inference.lowloss.plural_tails` at lag step ``step_ev``, times ``factor``, linearly
    interpolated at ``energy_ev`` (bins, bin) less each row's ZLP centre and summed per bin) for independent
    noise of variance ``var`` (rows, channels) in the low-loss ``counts``, linearised at ``counts``.

    Every step but the logarithm is linear: the resampling R onto ``step_ev`` channels (counts conserved;
    a step of at least two stored channels shares at most one with each neighbour, so R diag(var) R^T is
    tridiagonal; a finer step is refused), the taper, the zero-loss mask Z.  With q = J / Z in Fourier space and
    the tail I_0 irfft[g (q - 1 - ln q)], its change is
    dT = I_0 irfft[h1 dJ + h2 dZ] + dI_0 irfft[g (q - 1 - ln q)], h1 = g (1 - 1/q) / Z, h2 = -g (q - 1) / Z,
    where the principal logarithm's branch does not matter (d ln q = dq / q).  The binning's rows B
    (interpolation weights on the lags) are correlated with the kernels by FFT, so each row's B dT/dJ costs
    three transforms per bin; the covariance is then (B G) R diag(var) R^T (B G)^T.  Checked against central
    differences (1e-9) and 2000 replicas (tests/bayes/test_dualeels.py)."""
    from sreels.forward.lowloss import zlp_tf
    from sreels.inference.deconvolve import _resample

    y = np.asarray(counts, dtype=float)
    var = np.asarray(var, dtype=float)
    rows, nch = y.shape
    js, ax = _resample(y, axis, step_ev)
    e = ax.energy_ev
    centre = np.asarray(centre_ev, dtype=float)
    thr = np.asarray(threshold_ev, dtype=float)
    end = np.minimum(e[-1], centre + span_ev + 10.0)
    keep = int(np.searchsorted(e, end.max(), side="right"))
    js, e = js[:, :keep], e[:keep]
    n = sfft.next_fast_len(2 * e.size, real=True)
    g = zlp_tf(sfft.rfftfreq(n, d=step_ev), fwhm_ev)[None, :]
    m = min(int(np.ceil(span_ev / step_ev)) + 1, n)
    taper = 0.5 - 0.5 * np.cos(np.pi * np.clip((end[:, None] - e[None, :]) / 10.0, 0.0, 1.0))
    mask = (e[None, :] <= thr[:, None]).astype(float)
    j = js * taper
    z = j * mask
    i0 = z.sum(1)
    jf, zf = sfft.rfft(j, n=n, axis=1), sfft.rfft(z, n=n, axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = jf / zf
        exc = g * (q - 1.0 - np.log(q))
        h1 = g * (1.0 - 1.0 / q) / zf
        h2 = -g * (q - 1.0) / zf
    ok = (g > 1e-8) & np.isfinite(exc) & np.isfinite(h1) & np.isfinite(h2)   # as _log_ratio_excess
    ex = sfft.irfft(np.where(ok, exc, 0.0), n=n, axis=1)[:, :m]
    c1, c2 = np.where(ok, np.conj(h1), 0.0), np.where(ok, np.conj(h2), 0.0)
    # the resampling's noise: a step channel shares at most one stored channel with each neighbour
    rt = sparse.csr_matrix(_resample(np.eye(nch), axis, step_ev)[0][:, :keep].T)      # (keep, nch)
    d0 = (rt.multiply(rt) @ var.T).T
    d1 = (rt[:-1].multiply(rt[1:]) @ var.T).T
    if abs(rt[:-2].multiply(rt[2:])).sum() > 0:
        raise ValueError(f"tail_covariance: lag step {step_ev} eV under two stored channels of {axis.scale_ev} eV")
    nb, b = energy_ev.shape
    pos = (energy_ev.reshape(-1)[None, :] - centre[:, None]) / step_ev
    i = np.clip(np.floor(pos).astype(int), 0, m - 2)
    fr = np.clip(pos - i, 0.0, 1.0)
    inside = (pos >= 0) & (pos <= m - 1)
    w0, w1 = np.where(inside, 1.0 - fr, 0.0), np.where(inside, fr, 0.0)
    bidx = np.repeat(np.arange(nb), b)[None, :]
    out = np.empty((rows, nb, nb))
    for s in range(0, rows, batch):  # row batches bound the temporaries
        sl = slice(s, min(s + batch, rows))
        rr = np.arange(sl.stop - sl.start)[:, None]
        bm = np.zeros((sl.stop - sl.start, nb, n))
        np.add.at(bm, (rr, bidx, i[sl]), w0[sl])
        np.add.at(bm, (rr, bidx, i[sl] + 1), w1[sl])
        bh = sfft.rfft(bm, axis=-1)
        # sum_a B[a] K[a - k] = irfft(rfft(B) conj(rfft(K)))[k]
        k1 = sfft.irfft(bh * c1[sl, None, :], n=n, axis=-1)[..., :keep]
        k2 = sfft.irfft(bh * c2[sl, None, :], n=n, axis=-1)[..., :keep]
        bx = np.einsum("rba,ra->rb", bm[..., :m], ex[sl])
        bg = (i0[sl, None, None] * (k1 * taper[sl, None, :] + k2 * mask[sl, None, :])
              + bx[:, :, None] * mask[sl, None, :]) * factor                  # (rows, bins, keep)
        y1 = bg * d0[sl, None, :]
        y1[..., :-1] += bg[..., 1:] * d1[sl, None, :]
        y1[..., 1:] += bg[..., :-1] * d1[sl, None, :]
        out[sl] = y1 @ np.swapaxes(bg, 1, 2)
    return out


def reference_tail_noise_columns(cov: np.ndarray, row_var: np.ndarray) -> tuple:
    """Per-row nuisance columns (Q, rows, bins), prior N(0, 1), and the remaining variance (rows, bins) of
    a noise of covariance ``cov`` (rows, bins, bins), for data of noise variance ``row_var`` (rows, bins):
    each row's whitened covariance's eigenvectors with eigenvalue above :data:`ROW_TAIL_KEEP`, scaled by
    the square root of it (Q the most any row keeps; a row's further columns are its next eigenvectors)."""
    sd = np.sqrt(row_var)
    w = cov / (sd[:, :, None] * sd[:, None, :])
    lam, vec = np.linalg.eigh(w)                                   # ascending, per row
    q = int(np.max(np.sum(lam > ROW_TAIL_KEEP, axis=1)))
    lam_k, v = np.maximum(lam[:, ::-1][:, :q], 0.0), vec[:, :, ::-1][:, :, :q]     # (rows, q), (rows, bins, q)
    cols = np.transpose(v * np.sqrt(lam_k)[:, None, :], (2, 0, 1)) * sd[None]
    rest = np.einsum("rbb->rb", w) - np.einsum("rbq,rq->rb", v ** 2, lam_k)
    return cols, np.maximum(rest, 0.0) * row_var


