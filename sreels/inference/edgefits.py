"""Per-edge fits, every row at once: Li-K amount and Ti3+/Ti4+ MLLS (O-K: :mod:`.okpeaks`).

Each fit is a weighted least-squares problem per row solved by the batched
Levenberg-Marquardt of :mod:`.batchfit`; the power-law background (ln A, r) is a free
part of every fit so that its uncertainty reaches every derived quantity.  References
are the forward model's own per-atom shapes convolved with the resolution
(:func:`sreels.forward.model.reference_spectra`), shifted by interpolation on a fine grid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..axes import EnergyAxis
from .background import fit_power_law
from .batchfit import BatchResult, _inverse, levenberg_marquardt, result_at

FINE_STEP_EV = 0.01
#: Iterations of the variable-projection fit (:func:`_projected_fit`) before a row is handed to the
#: full-parameter iteration (on the Li-K fit of a 1024-row block of a simulated map: 9 a row (median),
#: 16 (90 %), 28 (99 %); a row or two wander for 200)
PROJECTED_MAX_ITER = 40
#: name of the multiple-valence-scattering component of :func:`fit_linear_edges`
PLURAL_TAIL = "plural tail"


@dataclass(frozen=True)
class Shifted:
    """A reference on a fine grid, evaluated at E - delta for every row by linear interpolation."""

    e0: float
    values: np.ndarray
    slope: np.ndarray

    step: float

    @classmethod
    def build(cls, energy_ev, values):
        """From a uniform grid; a grid coarser than FINE_STEP_EV is linearly resampled."""
        energy_ev = np.asarray(energy_ev, float)
        step = energy_ev[1] - energy_ev[0]
        if step > 1.01 * FINE_STEP_EV:
            e = np.arange(energy_ev[0], energy_ev[-1], FINE_STEP_EV)
            values, energy_ev, step = np.interp(e, energy_ev, values), e, FINE_STEP_EV
        v = np.asarray(values, float)
        return cls(float(energy_ev[0]), v, np.gradient(v, step), float(step))

    def index(self, energy_ev, delta):
        """Where (E - delta) falls on the grid: indices i, i + 1 and weights 1 - f, f, (rows, n) each
        (shared by every reference built on the same grid, :meth:`interpolate`)."""
        # (in place, each operation as (E - delta - e0) / step, floor, clip: ~4x faster than with temporaries)
        pos = np.subtract(energy_ev[None, :], np.asarray(delta, float)[:, None])
        pos -= self.e0
        pos /= self.step
        i = np.floor(pos)
        np.clip(i, 0, self.values.size - 2, out=i)
        np.subtract(pos, i, out=pos)
        f = np.clip(pos, 0.0, 1.0, out=pos)
        i = i.astype(np.intp)
        return i, i + 1, 1 - f, f

    @staticmethod
    def _lerp(table, i, i1, g, f):
        """table[i] g + table[i1] f (gathers by take, products in place)."""
        v = table.take(i)
        v *= g
        t = table.take(i1)
        t *= f
        v += t
        return v

    def interpolate(self, where, slopes=True):
        """Values (and d/dE) at the positions :meth:`index` gave (of this grid)."""
        v = self._lerp(self.values, *where)
        return (v, self._lerp(self.slope, *where)) if slopes else v

    def at(self, energy_ev, delta):
        """Values and d/dE at (E - delta): energy (n,), delta (rows,) -> (rows, n) each."""
        return self.interpolate(self.index(energy_ev, delta))


def variance_model(counts, gain, readout):
    """Per-pixel variance for the weights: gain * (smoothed counts) + readout^2.

    Smoothing over 9 channels keeps Poisson weights from biasing amplitudes low.  The
    detector PSF lowers the per-pixel variance but not that of the broad sums the fits
    rely on, so the uncorrelated value is the honest one for them.
    """
    k = np.ones(9) / 9
    from scipy.ndimage import convolve1d
    sm = convolve1d(np.asarray(counts, float), k, axis=-1, mode="nearest")
    return gain * np.maximum(sm, 1.0) + readout**2


def _powerlaw_cols(e, e_ref, log_a, r):
    x = np.log(e / e_ref)
    b = np.exp(log_a[:, None] - r[:, None] * x[None, :])
    return b, x


@dataclass(frozen=True)
class EdgeFit:
    result: BatchResult
    names: tuple
    e_ref: float
    energy: np.ndarray
    model: np.ndarray     # (rows, n) best-fit model in the fit window
    data: np.ndarray
    weights: np.ndarray   # (rows, n) inverse variances used
    ref_scale: float = 1.0  # references were divided by this before fitting
    jac: np.ndarray | None = None  # (rows, n, parameters) at the solution

    def response(self, dy):
        """Linear change of the parameters for data changes ``dy`` (..., rows, n): (..., rows, parameters),
        cov J' W dy (the covariance not widened for poor fits: the weights' own)."""
        jw = self.jac * self.weights[:, :, None]
        g = np.einsum("rnp,...rn->...rp", jw, dy)
        return np.einsum("rpq,...rq->...rp", self.result.cov, g)

    def pulls(self) -> np.ndarray:
        """Normalised residuals (data - model) * sqrt(weight)."""
        return (self.data - self.model) * np.sqrt(self.weights)

    def value(self, name):
        return self.result.params[:, self.names.index(name)]

    def err(self, name):
        return self.result.stderr[:, self.names.index(name)]

    def cov(self, a, b):
        return self.result.cov[:, self.names.index(a), self.names.index(b)]


def _window(axis: EnergyAxis, counts, variance, lo, hi, mask=None):
    axis.require(lo, hi, f"the {lo:.0f}-{hi:.0f} eV fit window")
    sl = axis.slice(lo, hi)
    e = axis.energy_ev[sl]
    w = 1.0 / variance[:, sl]
    if mask is not None:
        w = np.where(mask[:, sl], 0.0, w)
    return e, np.asarray(counts, float)[:, sl], w


def rows_at(table, step, e, delta, slopes=True):
    """Per-row tables on losses m * step (m = 0, 1, ...) at E - delta_r: (values, d/dE), (rows, n) each
    (0 outside the table); ``table`` (..., rows, lags): a stack of tables at the same positions gives
    (..., rows, n) (the positions computed once); ``slopes=False``: the values only."""
    pos = (e[None, :] - np.asarray(delta, float)[:, None]) / step
    i = np.clip(np.floor(pos).astype(int), 0, table.shape[-1] - 2)
    f = np.clip(pos - i, 0.0, 1.0)
    rows, lags = table.shape[-2:]
    inside = (pos >= 0) & (pos <= lags - 1)
    # the gathers by flat index (row r, lag i at r * lags + i) on the rows' tables laid end to end
    flat = i + (np.arange(rows) * lags)[:, None]
    t = np.reshape(table, table.shape[:-2] + (rows * lags,))
    t0, t1 = t.take(flat, axis=-1), t.take(flat + 1, axis=-1)
    v = np.where(inside, t0 * (1 - f) + t1 * f, 0.0)
    return (v, np.where(inside, (t1 - t0) / step, 0.0)) if slopes else v


def fit_linear_edges(axis, counts, variance, refs, names, lo, hi, pre_hi,
                     delta=None, mask=None, fit_delta=True, weight=None, tail=None, tail_amp=None,
                     tail_step=None, curvature=False, exponents=None, projected=False, whole_window=True) -> EdgeFit:
    """Power law + linear amplitudes of fixed references shifted by "delta" (eV).

    Parameters: ln A, r, one amplitude per reference, and "delta" if ``delta`` (starting
    values, rows,) is given and ``fit_delta``; with ``fit_delta=False`` the references are
    held at the given shifts.  ``refs`` is (fine energy grid, {name: reference}).  Plural scattering
    (:func:`.lowloss.plural_kernel`): ``weight`` (rows,) multiplies the references (the unscattered
    fraction exp(-t/lambda)); ``tail`` (rows, lags) is each row's multiple scattering on losses
    m dE (dE = ``tail_step``, else the channel width), one more linear component "plural tail" shifted
    with the references, or with ``tail_amp``
    (a number) a fixed part of the model (``tail_amp`` x tail).  ``curvature``: the background is
    log-quadratic, ln B = ln A - r x - s x^2 with x = ln(E / E_ref) and a free "s" per row (a plasmon tail
    under the edge, whose local exponent changes across the window), else a power law.  ``exponents``:
    the background's starting (r[, s]) (e.g. the image's mean spectrum's fit, on the same window), else
    the pre-edge power law's r (and s = 0).  ``projected`` (held shifts only): the amplitudes solved
    exactly at every step, only the exponents iterated (:func:`_projected_fit`; for fits whose
    full-parameter iteration crawls: Li-K's 30 model evaluations a row became ~9 and ~0.6 of its CPU
    time, reaching the least-squares minimum; the O amount's 3-4 are not improved on).  ``whole_window``
    False: where a channel has no weight in any row (a masked gap), the fit (its energies, model, data,
    weights, Jacobian and chi^2 per degree of freedom) is returned on the channels with weight only, not
    evaluated once more on the whole window.
    """
    rows = np.shape(counts)[0]
    d0 = np.zeros(rows) if delta is None else np.asarray(delta, float)
    fit_shift = delta is not None and fit_delta
    ef, refs = refs
    scale = max(np.max(np.abs(refs[n])) for n in names)
    sh = {n: Shifted.build(ef, refs[n] / scale) for n in names}
    grid = next(iter(sh.values()))  # every reference is on the same fine grid: positions computed once
    fixed_part = None
    if tail is not None:
        tail = np.broadcast_to(np.asarray(tail, float), (rows, np.shape(tail)[-1]))
        t_scale = max(float(np.max(np.abs(tail))), 1e-300)
        if tail_amp is None:
            names = (*names, PLURAL_TAIL)
            tail_n = tail / t_scale
        else:  # a known part of the data: taken off before the power law's start and the fit (whose
            # windows lie in [lo, hi]: only those channels)
            win = axis.slice(lo, max(hi, pre_hi))
            fixed_part = float(tail_amp) * rows_at(tail, tail_step or axis.scale_ev, axis.energy_ev[win], d0,
                                                   slopes=False)
            counts = np.array(counts, float)
            counts[:, win] -= fixed_part
    e_all, y_all, w_all = _window(axis, counts, variance, lo, hi, mask)
    # channels without weight in any row (a masked gap) add nothing to the fit: left out of it
    keep = (w_all > 0).any(0)
    ch = slice(None) if keep.all() else np.flatnonzero(keep)
    e, y, w = e_all[ch], y_all[:, ch], w_all[:, ch]
    pl = fit_power_law(axis, counts, lo, pre_hi, variance)
    e_ref = pl.e_ref_ev
    wt = None if weight is None else np.broadcast_to(np.asarray(weight, float), (rows,))[:, None]
    nb = 3 if curvature else 2  # background parameters: ln A, r (and the log-quadratic's s)
    k = len(names)
    npar = nb + k + (1 if fit_shift else 0)

    def shapes(ee, dd, idx, slopes):
        """The components (each (len(idx), n)) at E - dd on energies ee, and their d/dE."""
        where = grid.index(ee, dd)
        vals, sls = [], []
        for name in names:
            if name == PLURAL_TAIL:
                v, sl = rows_at(tail_n[idx], tail_step or axis.scale_ev, ee, dd)
            else:
                v, sl = sh[name].interpolate(where) if slopes else (sh[name].interpolate(where, False), None)
                if wt is not None:
                    v, sl = v * wt[idx], (None if sl is None else sl * wt[idx])
            vals.append(v)
            sls.append(sl)
        return vals, sls

    def make_model(ee):
        """``model(p, idx) -> (m, J)`` on energies ee, J as (rows, parameters, n)
        (:func:`.batchfit.levenberg_marquardt` with ``transposed``)."""
        x = np.log(ee / e_ref)
        x2 = x**2
        # held shifts: the components never change, evaluated once, (rows, components, n)
        fixed = None if fit_shift else np.stack(shapes(ee, d0, np.arange(rows), False)[0], axis=1)

        def lincomb(vs, p):
            """sum_i vs[i] p[:, i] (rows, n), summed in that order into one new array."""
            acc = vs[0] * p[:, :1]
            for i in range(1, len(vs)):
                acc += vs[i] * p[:, i:i + 1]
            return acc

        def model(p, idx):
            jac = np.empty((p.shape[0], npar, ee.size))
            # the background written where the Jacobian holds it (each value as exp(ln A - r x - s x^2))
            lb = jac[:, 0]
            np.multiply(p[:, 1:2], x[None, :], out=lb)
            np.subtract(p[:, :1], lb, out=lb)
            if curvature:
                lb -= p[:, 2:3] * x2[None, :]
            bb = np.exp(lb, out=lb)
            if fit_shift:
                vals, slopes = shapes(ee, p[:, nb + k], idx, True)
                for i, v in enumerate(vals):
                    jac[:, nb + i] = v
                np.negative(lincomb(slopes, p[:, nb:nb + k]), out=jac[:, nb + k])
            else:
                jac[:, nb:nb + k] = fixed if idx.size == rows else fixed[idx]
                vals = [jac[:, nb + i] for i in range(k)]
            m = lincomb(vals, p[:, nb:nb + k])
            m += bb  # (= bb + the components' sum)
            np.multiply(bb, -x[None, :], out=jac[:, 1])
            if curvature:
                np.multiply(bb, -x2[None, :], out=jac[:, 2])
            return m, jac
        return model, fixed

    model, fixed = make_model(e)
    # starting amplitudes: linear least squares on the power law's extrapolation
    b, _ = _powerlaw_cols(e, e_ref, pl.log_a, pl.r)
    tv = np.swapaxes(fixed, 1, 2) if fixed is not None else np.stack(shapes(e, d0, np.arange(rows), False)[0], axis=-1)
    z = (y - b) * np.sqrt(w)
    A = tv * np.sqrt(w)[:, :, None]
    At = np.swapaxes(A, 1, 2)
    amp = np.linalg.solve(At @ A + 1e-12 * np.eye(len(names)), At @ z[:, :, None])[:, :, 0]
    p0 = np.column_stack([pl.log_a, pl.r] + ([np.zeros(rows)] if curvature else []) + [amp]
                         + ([d0] if fit_shift else []))
    if exponents is not None:
        p0[:, 1:nb] = np.broadcast_to(np.asarray(exponents, float), (rows, nb - 1))
    if fit_shift or not projected or e.size == 0:
        res = levenberg_marquardt(model, p0, y, w, transposed=True)
    else:  # held shifts: every parameter but the background's exponents is linear (variable projection)
        res = _projected_fit(model, fixed, np.log(e / e_ref), p0, y, w, nb)
    n_all = e_all.size
    if isinstance(ch, slice) or not whole_window:
        m, jac = res.model, np.swapaxes(res.jac, 1, 2)
        if not isinstance(ch, slice):
            e_all, y_all, w_all = e, y, w
    else:  # the whole window's model; chi^2 per degree of freedom of the whole window as before
        m, jt = make_model(e_all)[0](res.params, np.arange(rows))
        res = replace(res, chi2_red=res.chi2_red * max(e.size - npar, 1) / max(e_all.size - npar, 1),
                      model=m, jac=jt)
        jac = np.swapaxes(jt, 1, 2)
    y = y_all
    if fixed_part is not None:
        fp = fixed_part[:, :n_all]  # (both slices start at lo)
        fp = fp if isinstance(ch, slice) or whole_window else fp[:, ch]
        y, m = y + fp, m + fp
    pnames = ("log_a", "r") + (("s",) if curvature else ()) + (*names,) + (("delta",) if fit_shift else ())
    return EdgeFit(res, pnames, e_ref, e_all, m, y, w_all, scale, jac)


def _projected_fit(model, comps, x, p0, y, w, nb) -> BatchResult:
    """Least squares of ``model`` (:func:`fit_linear_edges`' layout: ln A, r[, s], amplitudes) with held
    components ``comps`` (rows, k, n) by variable projection (Golub & Pereyra 1973, SIAM J. Numer. Anal.
    10, 413; Jacobian of Kaufman 1975, BIT 15, 49): the background's amplitude A = exp(ln A) and the
    components' amplitudes are solved exactly for given exponents (r[, s]), and only these are iterated
    (:func:`.batchfit.levenberg_marquardt`).  The linear parameters then sit at their least-squares values
    at every step, where the full-parameter iteration crawled along the valley of correlated amplitudes
    (the Li-K fit: 33 model evaluations a row, stopping 0.07 sigma (median) short of the minimum in Li-K).
    The result (covariance, model, Jacobian) is that of the full parameters at the solution.  Rows whose
    background amplitude comes out <= 0 (ln A undefined: a minimum the power law's positive amplitude
    excludes) are fitted with every parameter from ``p0``, rows not settled in :data:`PROJECTED_MAX_ITER`
    iterations from where the projection got (on a 1024-row Li-K block of a simulated map: 57 rows).
    Measured on that block: 9.1 model evaluations a row against 30 for the full-parameter iteration,
    chi^2 lower by 0.06 (median), up to 13, higher by <= 0.064 (its stopping tolerance 0.01 a step), Li-K moved by 0.07 sigma
    (median |shift|), 0.22 (90 %), 1.4 (max), its error by < 1e-4 (median)."""
    rows, k, n = comps.shape
    xp = np.stack([np.ones_like(x), x, x**2][:nb])          # 1, x (, x^2): -d(ln B)/d(theta_j) = x^j
    xs = xp[1:]
    cw = comps * w[:, None, :]
    ccw = cw @ np.swapaxes(comps, 1, 2)                      # (rows, k, k), held
    cwy = (cw @ y[:, :, None])[:, :, 0]                      # (rows, k)
    q = k + 1

    def lin(th, idx, full):
        """The background's shape b at exponents th, the normal matrix's inverse over (b, components),
        Phi W (x^j b) and the linear solution c."""
        f, fw, wi, yi = (comps, cw, w, y) if full else (comps[idx], cw[idx], w[idx], y[idx])
        b = np.einsum("rt,tn->rn", th, xs)  # (a row's numbers its own whatever rows iterate: not BLAS's 2-D product)
        np.negative(b, out=b)
        np.exp(b, out=b)
        bw = b * wi
        B = np.empty((idx.size, q, n))                         # the linear columns times W b
        np.multiply(bw, b, out=B[:, 0])
        np.multiply(fw, b[:, None, :], out=B[:, 1:])
        S = np.einsum("rqn,jn->rqj", B, xp)                    # Phi W (b, x b (, x^2 b))
        G = np.empty((idx.size, q, q))
        G[:, :, 0] = S[:, :, 0]
        G[:, 0, 1:] = S[:, 1:, 0]
        G[:, 1:, 1:] = ccw if full else ccw[idx]
        h = np.empty((idx.size, q))
        h[:, 0] = np.einsum("rn,rn->r", bw, yi)
        h[:, 1:] = cwy if full else cwy[idx]
        Gi = _inverse(G)  # (a singular row: pseudo-inverse; NaN where not finite)
        c = np.einsum("rij,rj->ri", Gi, h)
        return f, b, S[:, :, 1:], Gi, c

    def projected(th, idx):
        with np.errstate(over="ignore", invalid="ignore"):  # a trial step far out: non-finite, rejected
            return _projected(th, idx)

    def _projected(th, idx):
        f, b, P, Gi, c = lin(th, idx, idx.size == rows)
        m = np.einsum("rk,rkn->rn", c[:, 1:], f)
        m += c[:, :1] * b
        # d m / d theta_j at fixed c: D_j = -c0 x^j b; Kaufman's Jacobian is its part orthogonal (in W)
        # to the linear columns, D_j - Phi^T G^-1 Phi W D_j, = -b (c0 x^j + e_0j) - sum_i e_ij f_i with
        # e = G^-1 Phi W (x^j b) (-c0)
        e = np.einsum("rij,rjt->rit", Gi, P) * -c[:, :1, None]  # (rows, q, nth)
        J = (c[:, :1, None] * xs[None] + e[:, 0, :, None]) * b[:, None, :]
        J += np.einsum("rit,rin->rtn", e[:, 1:], f)
        np.negative(J, out=J)
        return m, J

    th0 = np.array(p0[:, 1:nb], float)
    r = levenberg_marquardt(projected, th0, y, w, transposed=True, predicted=True, max_iter=PROJECTED_MAX_ITER)
    all_idx = np.arange(rows)
    with np.errstate(over="ignore", invalid="ignore"):
        c = lin(r.params, all_idx, True)[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.column_stack([np.log(c[:, 0]), r.params, c[:, 1:]])
    ok = np.isfinite(p).all(1) & r.converged
    if ok.all():
        m, J = model(p, all_idx)
        return result_at(p, m, J, y, w, r.converged, r.n_iter)
    # the rest by every parameter's iteration: from where the projection got (or, where A <= 0, from p0)
    sub = np.flatnonzero(~ok)
    start = np.where(np.isfinite(p[sub]).all(1)[:, None], p[sub], p0[sub])
    rb = levenberg_marquardt(lambda pp, ii: model(pp, sub[ii]), start, y[sub], w[sub], transposed=True, predicted=True)
    good = np.flatnonzero(ok)
    m, J = np.empty_like(y), np.empty((rows, p.shape[1], n))
    m[good], J[good] = model(p[good], good)
    p[sub], m[sub], J[sub] = rb.params, rb.model, rb.jac
    conv = r.converged.copy()
    conv[sub] = rb.converged
    return result_at(p, m, J, y, w, conv, max(r.n_iter, rb.n_iter))


def global_shift(axis, mean_counts, ref, lo, hi, search_ev=10.0) -> float:
    """Energy offset (eV) of a spectrum relative to a reference by cross-correlating their
    derivatives over [lo - search, hi + search]; resolves offsets of several eV."""
    sl = axis.slice(max(lo - search_ev, axis.offset_ev), min(hi + search_ev, axis.end_ev))
    d = np.gradient(np.asarray(mean_counts, float)[sl])
    t = np.gradient(np.asarray(ref, float)[sl])
    d = (d - d.mean()) / (d.std() + 1e-30)
    t = (t - t.mean()) / (t.std() + 1e-30)
    n = int(search_ev / axis.scale_ev)
    lags = np.arange(-n, n + 1)
    cc = np.array([np.sum(d[max(0, L):d.size + min(0, L)] * t[max(0, -L):t.size - max(0, L)]) for L in lags])
    i = int(np.argmax(cc))
    if 0 < i < cc.size - 1:  # parabolic refinement
        den = cc[i - 1] - 2 * cc[i] + cc[i + 1]
        frac = 0.5 * (cc[i - 1] - cc[i + 1]) / den if den != 0 else 0.0
    else:
        frac = 0.0
    return float((lags[i] + frac) * axis.scale_ev)
