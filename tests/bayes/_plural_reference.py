"""The Li-K tail's noise columns as sreels.inference.bayes.plural computed them before s23 (commit fc449ad),
kept as the slow reference of the faster code: the binned tail's Jacobian by three FFTs per bin and row, the
covariance by the tridiagonal product, and a full eigen-decomposition (numpy's eigh) per row."""

import numpy as np
from scipy import fft as sfft
from scipy import sparse

from sreels.axes import EnergyAxis
from sreels.inference.bayes.plural import ROW_TAIL_KEEP, bin_weights, tail_linearisation


def reference_tail_covariance(counts, var, axis: EnergyAxis, centre_ev, threshold_ev, step_ev: float, span_ev: float,
                    fwhm_ev: float, energy_ev: np.ndarray, factor: float, batch: int = 8) -> np.ndarray:
    """:func:`sreels.inference.bayes.plural.tail_covariance` as it was computed before s23: the binned tail's
    Jacobian B dT/dJ by three FFTs per bin and row, the covariance by the tridiagonal product
    (B G) R diag(var) R^T (B G)^T (its shared steps: :func:`~sreels.inference.bayes.plural.tail_linearisation`)."""
    from sreels.inference.deconvolve import _resample

    y = np.asarray(counts, dtype=float)
    var = np.asarray(var, dtype=float)
    rows, nch = y.shape
    centre = np.asarray(centre_ev, dtype=float)
    lin = tail_linearisation(y, axis, centre, threshold_ev, step_ev, span_ev, fwhm_ev)   # the shared steps
    keep, n, m, taper, mask, i0, ok, ex = lin.keep, lin.n, lin.m, lin.taper, lin.mask, lin.i0, lin.ok, lin.ex
    c1, c2 = np.where(ok, np.conj(lin.h1), 0.0), np.where(ok, np.conj(lin.h2), 0.0)
    # the resampling's noise: a step channel shares at most one stored channel with each neighbour
    rt = sparse.csr_matrix(_resample(np.eye(nch), axis, step_ev)[0][:, :keep].T)      # (keep, nch)
    d0 = (rt.multiply(rt) @ var.T).T
    d1 = (rt[:-1].multiply(rt[1:]) @ var.T).T
    if abs(rt[:-2].multiply(rt[2:])).sum() > 0:
        raise ValueError(f"tail_covariance: lag step {step_ev} eV under two stored channels of {axis.scale_ev} eV")
    nb, b = energy_ev.shape
    i, w0, w1 = bin_weights(energy_ev, centre, step_ev, m)
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


