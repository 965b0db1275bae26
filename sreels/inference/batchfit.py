"""Weighted non-linear least squares for many rows at once (Levenberg-Marquardt).

Every row is an independent problem with the same parameter layout; the normal
equations of all rows are formed and solved together, so a 330-row image costs a few
batched (n_par x n_par) solves per iteration instead of 330 optimiser calls.

The model callable returns the prediction and its Jacobian for all rows:
``model(p) -> (m, J)`` with p (rows, n_par), m (rows, n_ch), J (rows, n_ch, n_par).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class BatchResult:
    params: np.ndarray      # (rows, n_par)
    cov: np.ndarray         # (rows, n_par, n_par), from (J^T W J)^-1 at the solution
    chi2_red: np.ndarray    # (rows,)
    converged: np.ndarray   # (rows,) bool
    n_iter: int
    #: the model and its Jacobian at ``params`` (rows, n_ch) and (rows, n_ch, n_par), as the last
    #: evaluation gave them (callers need not evaluate the model once more); None where not kept
    model: np.ndarray | None = field(default=None, repr=False, compare=False)
    jac: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def stderr(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diagonal(self.cov, axis1=1, axis2=2), 0, None))


#: rows per batch of :func:`_normal`'s products (the batch's J W in cache: 20-30 % less CPU time on a 1024-row
#: block of 3-6 parameters and 250-717 channels than the whole block at once, the same numbers; measured)
NORMAL_ROWS = 64


def _normal(J, w, res, transposed=False):
    """J^T W J and J^T W r for every row; ``transposed``: J is (rows, n_par, n_ch).  Each row's products as
    one row alone gives them (the rows in batches of :data:`NORMAL_ROWS`)."""
    rows, npar = J.shape[0], J.shape[1 if transposed else 2]
    A, g = np.empty((rows, npar, npar)), np.empty((rows, npar, 1))
    for b0 in range(0, rows, NORMAL_ROWS):
        sl = slice(b0, b0 + NORMAL_ROWS)
        if transposed:
            JWt = J[sl] * w[sl, None, :]
            np.matmul(JWt, np.swapaxes(J[sl], 1, 2), out=A[sl])
        else:
            JWt = np.swapaxes(J[sl] * w[sl, :, None], 1, 2)  # (rows, n_par, n_ch)
            np.matmul(JWt, J[sl], out=A[sl])
        np.matmul(JWt, res[sl, :, None], out=g[sl])
    return A, g[:, :, 0]


def _by_row(A, ok, out, regular, singular):
    """``out[rows] = regular(rows)`` for the rows of a stack (rows, n, n) where ``ok`` (finite) and LU finds the matrix
    regular, ``singular(rows)`` (a pseudo-inverse) where it finds it singular (a zero determinant: the pivot that
    stops LAPACK's solve and inverse): each row's result its own, whatever the other rows."""
    sing = np.zeros(ok.shape, bool)
    sing[ok] = np.linalg.det(A[ok]) == 0.0
    reg = ok & ~sing
    if reg.any():
        out[reg] = regular(reg)
    if sing.any():
        out[sing] = singular(sing)
    return out


def _solve(A, b):
    """Solve A x = b for a stack (rows, n, n) x (rows, n); singular systems by pseudo-inverse,
    rows with non-finite entries give NaN (they are reported as not converged).  Each row's solution is its own,
    whatever the other rows (a singular row beside it does not send it to the pseudo-inverse)."""
    ok = np.isfinite(A).all((1, 2)) & np.isfinite(b).all(1)
    if ok.all():  # (the usual case: no copies)
        try:
            return np.linalg.solve(A, b[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            pass
    return _by_row(A, ok, np.full(b.shape, np.nan), lambda r: np.linalg.solve(A[r], b[r][:, :, None])[:, :, 0],
                   lambda r: np.einsum("rij,rj->ri", np.linalg.pinv(A[r]), b[r]))


def _inverse(A):
    """Inverse of a stack of matrices (pseudo-inverse where singular, NaN where not finite), each row's its own."""
    out = np.full(A.shape, np.nan)
    ok = np.isfinite(A).all((1, 2))
    if ok.any():
        try:
            out[ok] = np.linalg.inv(A[ok])
        except np.linalg.LinAlgError:
            _by_row(A, ok, out, lambda r: np.linalg.inv(A[r]), lambda r: np.linalg.pinv(A[r]))
    return out


def levenberg_marquardt(model, p0, y, weights, lower=None, upper=None, max_iter=200, dchi2=1e-2,
                        lam0=1e-3, transposed=False, predicted=False) -> BatchResult:
    """Minimise sum_c w_rc (y_rc - m_rc(p_r))^2 for every row r.

    Parameters
    ----------
    model : callable
        ``model(p, idx) -> (m, J)`` for the rows ``idx`` (an index array) at parameters
        ``p`` (len(idx), n_par); only rows still iterating are evaluated.
    p0 : (rows, n_par) starting values.
    y, weights : (rows, n_ch) data and inverse variances.
    lower, upper : (n_par,) optional bounds; steps are clipped into them.
    dchi2 : a row stops when a step changes its chi^2 by less than this (absolute: a chi^2
        change of 0.01 moves parameters by ~0.1 of their standard errors at most).  Rows of real
        data whose shape the model misses can need many iterations: ``max_iter`` allows 200.
    transposed : the model returns J as (rows, n_par, n_ch) (cheaper to build and to reduce);
        ``BatchResult.jac`` is then in that layout too.

    predicted : a row stops only where, besides the step's small chi^2 change, the undamped Gauss-Newton
        step from its current parameters predicts a decrease (g' A^-1 g) below ``dchi2`` too (a strongly
        damped step in a curved valley changes chi^2 little far from the minimum).

    Each row's normal equations are formed once per accepted step (a rejected step reuses them
    with a larger damping).
    """
    # a row that runs away (a measured garbage row: chi2_red 1e30) overflows in its model and chi^2; it is told by
    # its non-finite values (no step, not better, not converged), so numpy's warnings would only reach the user
    with np.errstate(over="ignore", invalid="ignore"):
        return _levenberg_marquardt(model, p0, y, weights, lower, upper, max_iter, dchi2, lam0, transposed, predicted)


def _levenberg_marquardt(model, p0, y, weights, lower, upper, max_iter, dchi2, lam0, transposed, predicted):
    p = np.array(p0, dtype=float)
    rows, npar = p.shape
    lo = np.full(npar, -np.inf) if lower is None else np.asarray(lower, float)
    hi = np.full(npar, np.inf) if upper is None else np.asarray(upper, float)
    p = np.clip(p, lo, hi)
    all_idx = np.arange(rows)
    m, J = model(p, all_idx)
    res = y - m
    chi2 = np.sum(weights * res**2, axis=1)
    A, g = _normal(J, weights, res, transposed)
    lam = np.full(rows, lam0)
    done = ~np.isfinite(chi2)
    eye = np.eye(npar)
    it = 0
    prev = None  # the rows of the last iteration's copies of y and the weights (taken again when they change)
    for it in range(1, max_iter + 1):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        full = idx.size == rows  # every row still iterating: the arrays themselves, no copies
        if full:
            w_i, y_i = weights, y
        elif prev is None or prev.size != idx.size or not np.array_equal(prev, idx):
            w_i, y_i, prev = weights[idx], y[idx], idx
        A_i, g_i = (A, g) if full else (A[idx], g[idx])
        diag = np.diagonal(A_i, axis1=1, axis2=2)
        Ad = A_i + lam[idx, None, None] * eye * np.maximum(diag, 1e-30)[:, :, None]
        step = _solve(Ad, g_i)
        bad = ~np.isfinite(step).all(1)
        done[idx[bad]] = True
        step[bad] = 0.0
        p_new = np.clip(p[idx] + step, lo, hi)
        m_new, J_new = model(p_new, idx)
        res_new = y_i - m_new
        sq = np.multiply(res_new, res_new)
        sq *= w_i
        chi2_new = np.sum(sq, axis=1)
        better = np.isfinite(chi2_new) & (chi2_new <= chi2[idx])
        settled = np.abs(chi2[idx] - chi2_new) < np.maximum(dchi2, 1e-9 * chi2[idx])
        b = idx[better]
        if better.all() and full:  # every row: the new arrays themselves
            p, m, J, chi2 = p_new, m_new, J_new, chi2_new
            A, g = _normal(J_new, w_i, res_new, transposed)
        elif better.all():
            p[b], m[b], J[b], chi2[b] = p_new, m_new, J_new, chi2_new
            A[b], g[b] = _normal(J_new, w_i, res_new, transposed)
        elif full and 2 * b.size >= rows:
            # every row iterated, most improved: the new arrays keep the rejected rows' old values (copying those
            # few rows instead of gathering the improved ones' models and Jacobians into the old arrays)
            An, gn = _normal(J_new, w_i, res_new, transposed)
            rej = ~better
            p_new[rej], m_new[rej], J_new[rej], chi2_new[rej], An[rej], gn[rej] = \
                p[rej], m[rej], J[rej], chi2[rej], A[rej], g[rej]
            p, m, J, chi2, A, g = p_new, m_new, J_new, chi2_new, An, gn
        elif b.size:
            jb = J_new[better]
            p[b], m[b], J[b], chi2[b] = p_new[better], m_new[better], jb, chi2_new[better]
            A[b], g[b] = _normal(jb, w_i[better], res_new[better], transposed)
        lam[idx] = np.where(better, lam[idx] / 5.0, lam[idx] * 10.0)
        if predicted and settled.any():  # the undamped step's predicted decrease at the current point
            sr = idx[settled]
            gn = _solve(A[sr], g[sr])
            settled[settled] = ~(np.einsum("ri,ri->r", gn, g[sr]) > np.maximum(dchi2, 1e-9 * chi2[sr]))
        done[idx] |= settled | (lam[idx] > 1e12)
    cov = _inverse(A)
    dof = max(y.shape[1] - npar, 1)
    converged = done & np.isfinite(chi2) & (lam < 1e12) & np.isfinite(cov).all((1, 2))
    return BatchResult(p, cov, chi2 / dof, converged, it, m, J)


def result_at(p, m, J, y, w, converged, n_iter) -> BatchResult:
    """The BatchResult of parameters ``p`` (rows, n_par) from the model (rows, n_ch) and the transposed
    Jacobian (rows, n_par, n_ch) there (as :func:`levenberg_marquardt` with ``transposed`` returns it):
    covariance (J' W J)^-1, chi^2 per degree of freedom; ``converged`` and finite."""
    chi2 = np.sum(w * (y - m) ** 2, axis=1)
    cov = _inverse((J * w[:, None, :]) @ np.swapaxes(J, 1, 2))
    converged = converged & np.isfinite(chi2) & np.isfinite(cov).all((1, 2))
    return BatchResult(p, cov, chi2 / max(y.shape[1] - p.shape[1], 1), converged, n_iter, m, J)
