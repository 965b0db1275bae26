"""The detector likelihood with per-row linear amplitudes marginalised analytically.

Noise model (after whitening, :mod:`.data`): independent Gaussian per bin with fixed
variance V = lambda_hat + readout', lambda_hat the expected electrons (first from the
smoothed data, then from the MAP prediction), readout' the readout and quantisation
variance carried through the whitening.  This is the Gaussian limit of the Poisson
likelihood: valid where every bin holds >~ 20 electrons (the default study image has
> 200 in every bin of both fit regions; :func:`count_regime` reports the minimum and
the run warns below 20).  Holding V fixed drops the log V(theta) term, a relative
correction of order 1 / (2 lambda) to the Fisher information.

Per row r the model is linear in a = (b_w for each window, H, G) (:mod:`.model`):
mu = A_r a.  With flat priors on a the marginal likelihood is

    -2 ln L(theta) = sum_r [ d_r' W d_r - z_r' M_r^-1 z_r + ln det M_r ] + const,
    M_r = A_r' W A_r,  z_r = A_r' W d_r,

so the sampler sees tens of parameters, not thousands (``profile=True`` drops ln det M,
giving the profile likelihood the optimiser uses).
"""

from __future__ import annotations

import numpy as np

from .data import PreparedData
from .model import ImageModel

#: Bins with fewer expected electrons than this are outside the Gaussian regime.
GAUSSIAN_MIN_ELECTRONS = 20.0

#: Forward-difference step as a fraction of each parameter's prior width (``sreels plan``'s Jacobian of the model's
#: columns, :func:`sreels.plan.fisher.joint_jacobian`; here, not in :mod:`.optimize`, so that the plan does not import
#: lmfit).  The columns are smooth and free of the profiled solves' noise: every number of the plan (default, 1/10-dose
#: and fine designs) is within 1.6e-5 of the central differences at 2e-6 used before (the forward differences'
#: truncation error, linear in the step: 1.6e-3 at 2e-6, 1.6e-4 at 2e-7, 2e-6 at 2e-9: no rounding showing).
REL_STEP = 2e-8
#: ... of the MAP's Jacobian, of the profiled residuals (:func:`.optimize.jacobian`): their per-row solves are
#: ill-conditioned and leave a noise of ~1e-5 in the whitened residuals (norm 620) of the plural model at low dose
#: (the default DualEELS design at the core-loss dose 0.00387, seed 69003, one vector at a time as
#: :meth:`Likelihood.residuals_batch` takes them), which forward differences at 2e-6 read as slope (a background
#: exponent's column 1 % long).
#: At 2e-5 they agree with central ones within 0.1 % in every derived number's sd, at the design's dose too
#: (0.2 %); at 2e-4 their truncation error shows (5 %).
MAP_REL_STEP = 2e-5


def count_regime(data: PreparedData) -> dict:
    """Minimum and median expected electrons per used bin (from the current variance)."""
    vals = np.concatenate([(v - w.readout_var)[w.mask] for v, w in zip(data.variance, data.windows)])
    return {"min_electrons_per_bin": float(vals.min()), "median_electrons_per_bin": float(np.median(vals)),
            "gaussian_valid": bool(vals.min() >= GAUSSIAN_MIN_ELECTRONS)}


class Likelihood:
    """ln L(theta) for a batch of parameter vectors, with amplitudes marginalised."""

    def __init__(self, model: ImageModel, data: PreparedData | None = None, chunk: int = 8):
        self.model = model
        self.data = data or model.data
        self.chunk = int(chunk)
        self.nw = len(self.data.windows)
        self.n_evals = 0
        self.n_nan = 0
        self._weights()

    def _weights(self):
        self.w = [np.where(wd.mask, 1.0 / v, 0.0) for wd, v in zip(self.data.windows, self.data.variance)]
        self.sw = [np.sqrt(w) for w in self.w]
        self.all_used = all(bool(wd.mask.all()) for wd in self.data.windows)
        # a DualEELS input (.plural): a window's fixed multiple-scattering tail is taken off its data; the
        # extra columns (background, the tail's noise directions) are per-row amplitudes, with flat or
        # Gaussian priors (.plural.PluralWindow.fixed_columns)
        plural = self.data.plural or (None,) * self.nw
        self.tail = [None if p is None else p.tail for p in plural]
        self.d = [wd.data if t is None else wd.data - t for wd, t in zip(self.data.windows, self.tail)]
        self.dev, self.nuis = [], []          # per window: deviations (Q, R, C) or None; column offsets
        self.dev_rcq, self.dev_rqc = [], []
        off = self.nw + 2
        for p, w, d in zip(plural, self.w, self.d):
            if p is None or p.n_nuisance == 0:
                self.dev.append(None)
                self.dev_rcq.append(None)
                self.dev_rqc.append(None)
                self.nuis.append(None)
                continue
            dev, prec = p.fixed_columns()
            q = dev.shape[0]
            self.dev.append(dev)
            self.dev_rcq.append(np.ascontiguousarray(dev.transpose(1, 2, 0)))   # per row (C, Q): BLAS products
            self.dev_rqc.append(np.ascontiguousarray(dev.transpose(1, 0, 2)))   # per row (Q, C)
            self.nuis.append((off, q, np.einsum("qrc,prc->rqp", dev * w, dev) + np.diag(prec),
                              np.einsum("qrc,rc->rq", dev * w, d), prec))
            off += q
        self.n_cols = off
        self.dd = sum(np.sum(w * d ** 2, axis=1) for w, d in zip(self.w, self.d))
        #: residuals per theta: the used bins, plus one prior row per row and per-row nuisance column
        #: with a Gaussian prior (.plural)
        self.prior_cols = [None if nu is None or not np.any(nu[4] > 0) else np.flatnonzero(nu[4] > 0)
                           for nu in self.nuis]
        self.n_prior = sum(len(self.data.y_nm) * c.size for c in self.prior_cols if c is not None)
        self.n_data = int(sum(wd.mask.sum() for wd in self.data.windows)) + self.n_prior

    def with_data(self, data: PreparedData) -> "Likelihood":
        """The same model with new data or variance (the kernels are shared, not rebuilt)."""
        return Likelihood(self.model, data, self.chunk)

    # ------------------------------------------------------------------ core
    def _normal(self, cols):
        """M (B, R, K, K) and z (B, R, K) of the per-row linear problem."""
        nw = self.nw
        B, R = cols[0].host.shape[:2]
        K = self.n_cols
        M = np.zeros((B, R, K, K))
        z = np.zeros((B, R, K))
        for i, (c, w, d, nu) in enumerate(zip(cols, self.w, self.d, self.nuis)):
            wp, wx, wy = w * c.background, w * c.host, w * c.alpo4
            if nu is not None:  # the tail's nuisance columns: fixed block and their cross terms
                o, q, gnn, zn, _ = nu
                sl = slice(o, o + q)
                M[..., sl, sl] = gnn
                z[..., sl] = zn
                for j, col in ((i, wp), (nw, wx), (nw + 1, wy)):
                    # sum_c col[b, r, c] dev[q, r, c] per row: (R, B, C) @ (R, C, Q), BLAS
                    xt = np.swapaxes(np.matmul(np.swapaxes(col, 0, 1), self.dev_rcq[i]), 0, 1)
                    M[..., j, sl] = xt
                    M[..., sl, j] = xt
            M[..., i, i] = np.einsum("brc,brc->br", wp, c.background)
            M[..., i, nw] = M[..., nw, i] = np.einsum("brc,brc->br", wp, c.host)
            M[..., i, nw + 1] = M[..., nw + 1, i] = np.einsum("brc,brc->br", wp, c.alpo4)
            M[..., nw, nw] += np.einsum("brc,brc->br", wx, c.host)
            xy = np.einsum("brc,brc->br", wx, c.alpo4)
            M[..., nw, nw + 1] += xy
            M[..., nw + 1, nw] += xy
            M[..., nw + 1, nw + 1] += np.einsum("brc,brc->br", wy, c.alpo4)
            z[..., i] = np.einsum("brc,rc->br", wp, d)
            z[..., nw] += np.einsum("brc,rc->br", wx, d)
            z[..., nw + 1] += np.einsum("brc,rc->br", wy, d)
        return M, z

    @staticmethod
    def _solve(M, z):
        """Amplitudes, z' M^-1 z and ln det M per row, Jacobi-scaled Cholesky."""
        dg = np.sqrt(np.clip(np.einsum("...ii->...i", M), 1e-300, None))
        Ms = M / (dg[..., :, None] * dg[..., None, :])
        Ms = Ms + 1e-12 * np.eye(M.shape[-1])
        L = np.linalg.cholesky(Ms)
        u = np.linalg.solve(L, (z / dg)[..., None])[..., 0]
        quad = np.sum(u * u, -1)
        logdet = 2 * np.sum(np.log(np.einsum("...ii->...i", L)), -1) + 2 * np.sum(np.log(dg), -1)
        a = np.linalg.solve(np.swapaxes(L, -1, -2), u[..., None])[..., 0] / dg
        return a, quad, logdet

    def _marginal(self, cols):
        """Per-row amplitudes a (B, R, K), sum_r chi2 terms (B,) = dd - quad and ln det (B,) of the rows'
        linear problems, and their per-row quad and ln det (B, R)."""
        M, z = self._normal(cols)
        a, quad, logdet = self._solve(M, z)
        return a, np.sum(self.dd[None, :] - quad, 1), np.sum(logdet, 1), quad, logdet

    def row_terms(self, cols):
        """Per row (B, R): chi2 at the best amplitudes and ln det M_r."""
        _, _, _, quad, logdet = self._marginal(cols)
        return self.dd[None, :] - quad, logdet

    def _batch(self, theta, profile):
        cols = self.model.columns(theta)
        try:
            _, chi2, logdet, _, _ = self._marginal(cols)
        except np.linalg.LinAlgError:
            chi2 = logdet = np.full(theta.shape[0], np.nan)
        return -0.5 * (chi2 if profile else chi2 + logdet)

    def _chunks(self, theta):
        """(start, n, thetas) per chunk of ``theta`` (B, P): every chunk of exactly ``self.chunk`` parameter vectors,
        the last one padded with copies of its last vector (its first n rows are wanted).  A batch's products and
        solves take other paths (BLAS kernels, summation orders) for another batch size, and the plural model's
        per-row problems are ill-conditioned (its extra columns: ~1e12 after Jacobi scaling), so the same theta
        evaluated alone and in a pair differed by 5e-4 in the whitened residuals (norm 620; the default DualEELS
        design at the core-loss dose 0.00387), ~0.3 in ln L: every vector through one path (what is left, with
        other vectors in its chunk, was ~2e-5 there).  The MAP's residuals go one vector at a time
        (:meth:`residuals_batch`)."""
        for s in range(0, theta.shape[0], self.chunk):
            th = theta[s:s + self.chunk]
            n = th.shape[0]
            if n < self.chunk:
                th = np.concatenate([th, np.repeat(th[-1:], self.chunk - n, axis=0)])
            yield s, n, th

    def __call__(self, theta, profile: bool = False) -> np.ndarray:
        """ln L (B,) for theta (B, P) (constant terms dropped); NaN -> -inf, counted."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        out = np.empty(theta.shape[0])
        for s, n, th in self._chunks(theta):
            with np.errstate(all="ignore"):
                out[s:s + n] = self._batch(th, profile)[:n]
        bad = ~np.isfinite(out)
        self.n_evals += theta.shape[0]
        self.n_nan += int(bad.sum())
        out[bad] = -np.inf
        return out

    # ------------------------------------------------------- one parameter vector
    def fit_rows(self, theta):
        """Best amplitudes (R, K), the prediction per window (R, C) and chi2 per row at one theta."""
        cols = self.model.columns(np.atleast_2d(theta))
        a = self._marginal(cols)[0]
        pred = []
        for i, c in enumerate(cols):
            f = self._fixed(i, a)
            pred.append(a[0, :, i, None] * c.background[0] + a[0, :, self.nw, None] * c.host[0]
                        + a[0, :, self.nw + 1, None] * c.alpo4[0] + (f[0] if np.ndim(f) else f))
        chi2 = sum(np.sum(w * (wd.data - p) ** 2, axis=1) for w, wd, p in zip(self.w, self.data.windows, pred))
        return a[0], tuple(pred), chi2

    def _fixed(self, i, a):
        """Window i's plural tail plus its per-row extra columns at the amplitudes a (B, R, K): (B, R, C),
        or 0 without."""
        out = 0.0 if self.tail[i] is None else self.tail[i][None]
        if self.nuis[i] is not None:
            o, q = self.nuis[i][:2]
            out = out + np.swapaxes(np.matmul(np.swapaxes(a[..., o:o + q], 0, 1), self.dev_rqc[i]), 0, 1)
        return out

    def residuals(self, theta) -> np.ndarray:
        """Whitened residuals (d - mu) / sqrt(V) of every used bin at the profiled amplitudes."""
        _, pred, _ = self.fit_rows(theta)
        return np.concatenate([(np.sqrt(w) * (wd.data - p))[wd.mask]
                               for w, wd, p in zip(self.w, self.data.windows, pred)])

    def residuals_batch(self, theta, out: np.ndarray | None = None) -> np.ndarray:
        """Whitened residuals (B, N) at the profiled amplitudes for a batch theta (B, P),
        written into ``out`` (any (B, N) float array view) if given.

        One vector at a time, whatever ``chunk``: a vector's residuals are then the same bit for bit alone and in
        any batch.  The MAP compares its cost at one vector with its forward-difference Jacobian from a batch; in a
        batch of two the plural model's residuals differed from those of the vector alone by 5e-4 (norm 620: the
        default DualEELS design at the core-loss dose 0.00387, :meth:`_chunks`), more than the changes the trust
        region and the differences read: the optimiser crawled (seed 69003: 175 evaluations, 26 after) and the
        covariance's sd of the derived numbers came out 1-6 % small.  No slower: 114 against 119 ms CPU per vector
        in pairs (default DualEELS image, 19 vectors, median of 4)."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if out is None:
            out = np.empty((theta.shape[0], self.n_data))
        for s in range(theta.shape[0]):
            cols = self.model.columns(theta[s:s + 1])
            a = self._marginal(cols)[0]
            j = 0
            for i, (c, sw, wd) in enumerate(zip(cols, self.sw, self.data.windows)):
                r = wd.data - a[..., i, None] * c.background - self._fixed(i, a)
                r -= a[..., self.nw, None] * c.host
                r -= a[..., self.nw + 1, None] * c.alpo4
                r *= sw
                r = r.reshape(r.shape[0], -1) if self.all_used else r[:, wd.mask]
                out[s, j:j + r.shape[1]] = r[0]
                j += r.shape[1]
            for nu, pc in zip(self.nuis, self.prior_cols):  # per-row nuisance amplitudes' prior rows
                if pc is None:
                    continue
                o, prec = nu[0], nu[4]
                v = (np.sqrt(prec[pc]) * a[..., o + pc]).reshape(a.shape[0], -1)
                out[s, j:j + v.shape[1]] = v[0]
                j += v.shape[1]
        self.n_evals += theta.shape[0]
        return out
