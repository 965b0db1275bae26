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

#: Finite-difference step as a fraction of each parameter's prior width (the optimiser's Jacobian and
#: ``sreels plan``'s; here, not in :mod:`.optimize`, so that the plan does not import lmfit).
REL_STEP = 2e-6


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
        self.dd = sum(np.sum(w * wd.data ** 2, axis=1) for w, wd in zip(self.w, self.data.windows))
        self.n_data = int(sum(wd.mask.sum() for wd in self.data.windows))

    def with_data(self, data: PreparedData) -> "Likelihood":
        """The same model with new data or variance (the kernels are shared, not rebuilt)."""
        return Likelihood(self.model, data, self.chunk)

    # ------------------------------------------------------------------ core
    def _normal(self, cols):
        """M (B, R, K, K) and z (B, R, K) of the per-row linear problem."""
        nw = self.nw
        B, R = cols[0].host.shape[:2]
        K = nw + 2
        M = np.zeros((B, R, K, K))
        z = np.zeros((B, R, K))
        for i, (c, w, wd) in enumerate(zip(cols, self.w, self.data.windows)):
            wp, wx, wy = w * c.background, w * c.host, w * c.alpo4
            M[..., i, i] = np.einsum("brc,brc->br", wp, c.background)
            M[..., i, nw] = M[..., nw, i] = np.einsum("brc,brc->br", wp, c.host)
            M[..., i, nw + 1] = M[..., nw + 1, i] = np.einsum("brc,brc->br", wp, c.alpo4)
            M[..., nw, nw] += np.einsum("brc,brc->br", wx, c.host)
            xy = np.einsum("brc,brc->br", wx, c.alpo4)
            M[..., nw, nw + 1] += xy
            M[..., nw + 1, nw] += xy
            M[..., nw + 1, nw + 1] += np.einsum("brc,brc->br", wy, c.alpo4)
            z[..., i] = np.einsum("brc,rc->br", wp, wd.data)
            z[..., nw] += np.einsum("brc,rc->br", wx, wd.data)
            z[..., nw + 1] += np.einsum("brc,rc->br", wy, wd.data)
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

    def _batch(self, theta, profile):
        cols = self.model.columns(theta)
        M, z = self._normal(cols)
        try:
            _, quad, logdet = self._solve(M, z)
        except np.linalg.LinAlgError:
            quad = np.full(M.shape[:2], np.nan)
            logdet = quad
        chi2 = self.dd[None, :] - quad
        out = -0.5 * np.sum(chi2 if profile else chi2 + logdet, axis=1)
        return out

    def __call__(self, theta, profile: bool = False) -> np.ndarray:
        """ln L (B,) for theta (B, P) (constant terms dropped); NaN -> -inf, counted."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        out = np.empty(theta.shape[0])
        for s in range(0, theta.shape[0], self.chunk):
            with np.errstate(all="ignore"):
                out[s:s + self.chunk] = self._batch(theta[s:s + self.chunk], profile)
        bad = ~np.isfinite(out)
        self.n_evals += theta.shape[0]
        self.n_nan += int(bad.sum())
        out[bad] = -np.inf
        return out

    # ------------------------------------------------------- one parameter vector
    def fit_rows(self, theta):
        """Best amplitudes (R, K), the prediction per window (R, C) and chi2 per row at one theta."""
        cols = self.model.columns(np.atleast_2d(theta))
        M, z = self._normal(cols)
        a, quad, _ = self._solve(M, z)
        a = a[0]
        pred = []
        for i, c in enumerate(cols):
            pred.append(a[:, i, None] * c.background[0] + a[:, self.nw, None] * c.host[0]
                        + a[:, self.nw + 1, None] * c.alpo4[0])
        return a, tuple(pred), self.dd - quad[0]

    def residuals(self, theta) -> np.ndarray:
        """Whitened residuals (d - mu) / sqrt(V) of every used bin at the profiled amplitudes."""
        _, pred, _ = self.fit_rows(theta)
        return np.concatenate([(np.sqrt(w) * (wd.data - p))[wd.mask]
                               for w, wd, p in zip(self.w, self.data.windows, pred)])

    def residuals_batch(self, theta, out: np.ndarray | None = None) -> np.ndarray:
        """Whitened residuals (B, N) at the profiled amplitudes for a batch theta (B, P),
        written into ``out`` (any (B, N) float array view) if given."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        if out is None:
            out = np.empty((theta.shape[0], self.n_data))
        for s in range(0, theta.shape[0], self.chunk):
            cols = self.model.columns(theta[s:s + self.chunk])
            M, z = self._normal(cols)
            a, _, _ = self._solve(M, z)
            j = 0
            for i, (c, sw, wd) in enumerate(zip(cols, self.sw, self.data.windows)):
                r = wd.data - a[..., i, None] * c.background
                r -= a[..., self.nw, None] * c.host
                r -= a[..., self.nw + 1, None] * c.alpo4
                r *= sw
                r = r.reshape(r.shape[0], -1) if self.all_used else r[:, wd.mask]
                out[s:s + r.shape[0], j:j + r.shape[1]] = r
                j += r.shape[1]
        self.n_evals += theta.shape[0]
        return out
