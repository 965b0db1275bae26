"""The joint fit's Fisher information for any exposure per window and readout noise.

The joint (Bayesian) fit compares whitened, binned data with mu = A_r(theta) a_r per row r
(:mod:`sreels.inference.bayes.likelihood`): A_r the columns of the model (background per
window, host, AlPO4), a_r the per-row amplitudes it marginalises, and a Gaussian noise of
variance V = lambda + v_read per bin (lambda the expected electrons, v_read the readout and
quantisation variance carried through the PSF whitening, :mod:`sreels.inference.bayes.data`).
Its information on the parameters theta, with the amplitudes profiled out, is

    F = sum_r G_r' [W_r - W_r A_r (A_r' W_r A_r)^-1 A_r' W_r] G_r  (+ 1/sigma^2 of Gaussian priors),

G_r = d mu_r / d theta at fixed amplitudes, W_r = diag(1 / V).  Scaling a window's exposure by
s scales its lambda, G and A by s and leaves v_read: every term is recomputed from G, A and
lambda taken once at the design's truth (:class:`JointJacobian`), so a change of dose, of
exposure split, of gain or of readout noise costs matrix products, not a new model.  At s = 1
F equals :func:`sreels.inference.bayes.crlb.fisher` (tested).  Below ~20 electrons per bin the
Gaussian likelihood (and so F) is an approximation (:data:`GAUSSIAN_MIN_ELECTRONS`).

A DualEELS design (a low-loss window) is planned with the joint fit's plural model by default
(``joint_jacobian(plural=...)``): more per-row amplitude columns, the Li-K tail's noise in the weights and
its own scaling with the exposures (:mod:`.plural`); ``scale`` may then give the low-loss window's factor last
(:func:`exposure_factors`; a scalar dose factor keeps the low loss's exposure).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from ..forward.simulate import simulate
from ..inference.bayes.crlb import derived_gradient
from ..inference.bayes.data import QUANTISATION_VAR, _axis_operator, from_simulation
from ..inference.bayes.likelihood import GAUSSIAN_MIN_ELECTRONS, REL_STEP, Likelihood
from ..inference.bayes.model import ImageModel
from ..inference.bayes.params import DERIVED, default_values, row_profiles
from ..inference.bayes.priors import Priors, build_priors
from ..resources import single_threaded_blas
from .design import Design

#: Per-row profiles predicted for the joint fit (row_profiles keys).
ROW_KEYS = ("li_rel", "ti3_fraction", "r_oo_nm")


@dataclass(frozen=True)
class WindowJacobian:
    """One window at the design's truth, arrays (rows, bins): G (rows, bins, Pa), contiguous, holds only the
    columns ``act`` of the parameters that change this window's model (the others' columns are exactly 0)."""

    name: str
    G: np.ndarray          # d mu / d theta[act] at fixed amplitudes, (rows, bins, Pa)
    cols: np.ndarray       # (rows, bins, 3): background, host, AlPO4
    lam: np.ndarray        # expected electrons per bin
    readout_var: np.ndarray
    mask: np.ndarray
    i0: int = 0            # first channel of the fit region in the window
    bin: int = 1           # channels per bin
    channels: int = 0      # channels of the window
    act: np.ndarray = None  # indices (Pa,) of the parameters in G

    def full_G(self, P: int) -> np.ndarray:
        """G with every parameter's column (rows, bins, P), zeros for those that do not change this window."""
        g = np.zeros(self.G.shape[:2] + (P,))
        g[..., self.act] = self.G
        return g


@dataclass(frozen=True)
class JointJacobian:
    design: Design
    priors: Priors
    theta: np.ndarray
    windows: tuple
    y_nm: np.ndarray
    prior_info: np.ndarray   # (P,) 1 / sigma^2 of Gaussian priors, 0 for flat ones
    readout_counts2: float   # readout^2 + quantisation variance (counts^2) the readout_var was built with
    gain: float
    simulation: object = None  # the noise-free simulation behind it (reused by the fast path's prediction)
    #: the plural model's terms per window (:class:`.plural.PluralTerms`, a DualEELS design), None: single scattering
    plural: tuple | None = None

    @property
    def names(self) -> tuple:
        return self.priors.pset.names

    @property
    def n_exposures(self) -> int:
        """Exposure factors a ``scale`` array may give: one per core-loss window, and the low loss's last (plural)."""
        return len(self.windows) + (self.plural is not None)


def exposure_factors(jac: JointJacobian, scale) -> tuple:
    """(s (nw,), s_L) from ``scale``: a scalar is a dose factor on every core-loss exposure, the low loss's kept
    (:func:`.design.scale_dose`); an array gives one factor per core-loss window (the low loss's then 1), or, for
    the plural model, one more, last, for the low-loss window."""
    nw = len(jac.windows)
    a = np.asarray(scale, float)
    if a.ndim == 0:
        return np.full(nw, float(a)), 1.0
    if jac.plural is not None and a.size == nw + 1:
        return a[:nw], float(a[nw])
    return np.broadcast_to(a, (nw,)), 1.0


def dose_scaled(jac: JointJacobian, scale0, s: float):
    """``scale0`` (a scalar or one factor per exposure, the plural model's low loss last: :func:`exposure_factors`)
    with the dose factor ``s`` on its core-loss exposures only (:func:`.design.scale_dose`)."""
    a = np.asarray(scale0, float)
    if a.ndim == 0:
        return s * a
    a = a.copy()
    a[:len(jac.windows)] *= s
    return a


def priors_for(design: Design) -> Priors:
    """The joint fit's default priors for the design's instrument and Ti3+ mode."""
    return build_priors(design.instrument, {"model": {"ti3_mode": design.scenario.ti3_mode}})


def truth(design: Design, priors: Priors) -> np.ndarray:
    v = default_values(design.scenario, design.instrument)
    return np.array([v[n] for n in priors.pset.names])


#: the plural model's Li-K tail covariance on every this many rows of the noise-free image, the rows between from
#: their neighbours' (:func:`sreels.inference.bayes.plural.tail_window`'s ``row_step``; None: every row, as the fit
#: of a measured image does)
TAIL_ROW_STEP = 16


def joint_jacobian(design: Design, priors: Priors | None = None, chunk: int = 4, on_simulation=None,
                   plural: bool | None = None) -> JointJacobian:
    """G, the model columns and the expected electrons of every bin the joint fit uses, at the
    design's truth (a noise-free simulation through the fit's own whitening and binning).
    ``on_simulation(sim)``, if given, is called with the noise-free simulation as soon as it exists (sreels
    plan starts the fast path's prediction on it there, beside the Jacobian's finite differences).
    ``plural``: the joint fit's plural model (:mod:`.plural`; ``sreels fit --method bayes``'s default on a DualEELS
    input); default: whenever the design records a low-loss window."""
    priors = priors or priors_for(design)
    if plural is None:
        plural = bool(design.instrument.lowloss_window)
    sc, inst, det = design.scenario, design.instrument, design.detector
    theta = truth(design, priors)
    with single_threaded_blas():
        sim = simulate(sc, inst, det, rng=0, noise_free=True)
        if on_simulation is not None:
            on_simulation(sim)
        data = from_simulation(sim, plural=plural, source="plan", tail_row_step=TAIL_ROW_STEP if plural else None)
        model = ImageModel(data, priors.pset)
        like = Likelihood(model, chunk=chunk)
        a, _, _ = like.fit_rows(theta)
        nw = like.nw
        lo, hi = priors.bounds.T
        h = REL_STEP * (hi - lo)
        P = theta.size
        G = [np.empty((P,) + wd.data.shape) for wd in data.windows]   # (P, R, C): a chunk is one block

        def mu(cols):  # (B, R, C) per window at the fixed amplitudes a
            return [a[None, :, i, None] * c.background + a[None, :, nw, None] * c.host
                    + a[None, :, nw + 1, None] * c.alpo4 for i, c in enumerate(cols)]

        # forward differences (down where theta sits on its upper bound; REL_STEP: within 1.6e-5 of central ones),
        # theta itself in every batch: 5 instead of 8 evaluations of the columns per batch of 4 parameters
        step = np.where(theta + h <= hi, theta + h, np.maximum(theta - h, lo))
        for s in range(0, P, chunk):
            idx = np.arange(s, min(s + chunk, P))
            pts = np.vstack([theta] + [np.where(np.arange(P) == i, step, theta) for i in idx])
            cols = model.columns(pts)
            m = mu(cols)
            k = idx.size
            for w in range(nw):
                np.subtract(m[w][1:], m[w][:1], out=G[w][s:s + k])
                G[w][s:s + k] /= (step - theta)[idx, None, None]
            if s == 0:
                c0 = cols
    acts = [np.flatnonzero(np.any(g != 0, axis=(1, 2))) for g in G]
    terms = None
    if data.plural:
        from .plural import terms_of
        terms = terms_of(data, sim)
    # the detector's readout variance (the plural model's tail_var, added to it by the preparation, apart: it scales
    # with the exposures, .plural)
    rvs = [wd.readout_var - (0.0 if terms is None else t.tail_var) for wd, t in
           zip(data.windows, terms or (None,) * nw)]
    wins = tuple(WindowJacobian(wd.window.name, np.ascontiguousarray(g[act].transpose(1, 2, 0)),
                                np.stack([c.background[0], c.host[0], c.alpo4[0]], -1),
                                np.maximum(wd.data, 0.0), rv, wd.mask, wd.i0, wd.bin, wd.window.channels,
                                act)
                 for wd, g, c, act, rv in zip(data.windows, G, c0, acts, rvs))
    info = np.array([1.0 / priors.dists[n].sigma ** 2 if hasattr(priors.dists[n], "sigma") else 0.0
                     for n in priors.pset.names])
    q = QUANTISATION_VAR if det.quantise else 0.0
    if terms is not None:   # the plural projection's arrays at the design, built once (.plural.projection)
        terms = tuple(dataclasses.replace(t, A=np.ascontiguousarray(np.concatenate([w.cols, t.extra], axis=2)),
                                          G_full=w.full_G(theta.size)) for w, t in zip(wins, terms))
    return JointJacobian(design, priors, theta, wins, data.y_nm, info, det.readout_noise_counts ** 2 + q,
                         det.gain_counts_per_e, sim, terms)


def readout_factor(jac: JointJacobian, gain: float | None = None, readout_counts: float | None = None) -> float:
    """Factor on the readout variance (electrons^2) for another gain or readout noise."""
    g = jac.gain if gain is None else float(gain)
    q = jac.readout_counts2 - jac.design.detector.readout_noise_counts ** 2
    r2 = jac.readout_counts2 if readout_counts is None else float(readout_counts) ** 2 + q
    return (r2 / g ** 2) / (jac.readout_counts2 / jac.gain ** 2)


@functools.lru_cache(maxsize=8)
def _readout_bands(channels: int, decay: float, i0: int, nbins: int, b: int) -> tuple:
    """Diagonals (k = 0, 1, ...) of Q = (S K^-1)(S K^-1)', S the binning of the fit region: the
    correlation of white readout noise after the whitening K^-1 of :mod:`..inference.bayes.data`
    (its diagonal is the factor ``fac`` the likelihood uses).  Kept while > 1e-6 of the diagonal."""
    if decay <= 0:
        return (np.full(nbins, float(b)),)
    ident, _, _, inv = _axis_operator(channels, float(decay), "e")   # the whitening's own K^-1 (cached)
    if ident:
        return (np.full(nbins, float(b)),)
    S = inv[i0:i0 + nbins * b].reshape(nbins, b, channels).sum(1)
    # the diagonals of S S' one at a time (O(bins x channels) each; the whole product cost bins^2 x channels,
    # ~1.5 GFLOP for the Ti-L/O-K window)
    out = [np.einsum("ij,ij->i", S, S)]
    for k in range(1, nbins):
        d = np.einsum("ij,ij->i", S[:-k], S[k:])
        if np.max(np.abs(d)) < 1e-6 * out[0].max():
            break
        out.append(d)
    return tuple(out)


#: The likelihood's variance floor (electrons): V = max(expected, 1) + readout (PreparedData.with_variance);
#: the plan's weights are the fit's, so that below ~1 electron per bin they are the same.
VARIANCE_FLOOR_E = 1.0


#: Rows per block of the covariance's products (temporaries of ~8 x 850 x 16 doubles stay in cache).
ROW_BLOCK = 8


def _row_blocks(R: int):
    return [slice(r, min(r + ROW_BLOCK, R)) for r in range(0, R, ROW_BLOCK)]


def _projection(jac: JointJacobian, s, rfactor: float):
    """F (P, P) of the data with the amplitudes profiled out, coef = M^-1 B' (R, K, P) that projects
    them out of G, and the likelihood's weights W = 1 / V per window (rows, bins) at exposure factors s."""
    nw = len(jac.windows)
    P = jac.theta.size
    R = jac.y_nm.size
    K = nw + 2
    F = np.zeros((P, P))
    M = np.zeros((R, K, K))
    B = np.zeros((R, P, K))
    Ws = []
    for i, w in enumerate(jac.windows):
        idx = np.array([i, nw, nw + 1])                                # background, host, AlPO4
        a = w.act
        Pa = a.size
        W = np.where(w.mask, 1.0 / (np.maximum(s[i] * w.lam, VARIANCE_FLOOR_E) + rfactor * w.readout_var), 0.0)
        s2 = s[i] ** 2
        Fa = np.zeros((Pa, Pa))
        Ba = np.empty((R, Pa, 3))
        for r in _row_blocks(R):   # blocks of rows: the temporary G W stays in cache (x2.5 against one pass)
            g = w.G[r]
            gw = g * W[r, :, None]                                     # (rows, C, Pa)
            Fa += g.reshape(-1, Pa).T @ gw.reshape(-1, Pa)
            Ba[r] = np.matmul(gw.transpose(0, 2, 1), w.cols[r])        # (rows, Pa, 3)
        F[a[:, None], a] += s2 * Fa
        B[:, a[:, None], idx] += s2 * Ba
        M[:, idx[:, None], idx] += s2 * np.matmul((w.cols * W[..., None]).transpose(0, 2, 1), w.cols)
        Ws.append(W)
    dg = np.sqrt(np.clip(np.einsum("rkk->rk", M), 1e-300, None))
    Ms = M / (dg[:, :, None] * dg[:, None, :]) + 1e-12 * np.eye(K)
    Bs = B / dg[:, None, :]
    coef = np.linalg.solve(Ms, Bs.transpose(0, 2, 1)) / dg[:, :, None]   # (R, K, P) = M^-1 B'
    F -= np.einsum("rpk,rkq->pq", B, coef)
    return 0.5 * (F + F.T), coef, Ws


def _pair_sum(w: WindowJacobian, om: np.ndarray, E: np.ndarray, k: int, P: int) -> np.ndarray:
    """sum_r sum_c om[r, c] u_{r,c} u_{r,c+k}' (P, P) for u = G - A E_r (the amplitudes projected out: E_r the
    window's rows of coef, (R, 3, P)) without forming u: G G' - (G A') E - E' (A G') + E' (A A') E, each term a
    product over the window's active columns.  ``om`` (R, C) is 0 where c + k is past the row's end."""
    R, C, Pa = w.G.shape
    a = w.act
    GG = np.zeros((Pa, Pa))
    X = np.empty((R, Pa, 3))
    Y = np.empty((R, 3, Pa))
    Aw = w.cols * om[..., None]                                        # (R, C, 3)
    for r in _row_blocks(R):
        g = w.G[r]
        gw = g * om[r, :, None]                                        # (rows, C, Pa)
        n = gw.shape[0] * C - k
        GG += gw.reshape(-1, Pa)[:n].T @ g.reshape(-1, Pa)[k:]        # rows flattened: om = 0 across rows
        X[r] = np.matmul(gw[:, :C - k].transpose(0, 2, 1), w.cols[r, k:])   # sum_c om G_c A_{c+k}'
        if k:
            Y[r] = np.matmul(Aw[r, :C - k].transpose(0, 2, 1), g[:, k:])   # sum_c om A_c G_{c+k}'
    if not k:
        Y = X.transpose(0, 2, 1)
    Z = np.matmul(Aw[:, :C - k].transpose(0, 2, 1), w.cols[:, k:])    # (R, 3, 3)
    T = np.zeros((P, P))
    T[a[:, None], a] = GG
    T[a, :] -= np.einsum("rak,rkp->ap", X, E)
    T[:, a] -= np.einsum("rkp,rka->pa", E, Y)
    T += np.einsum("rkp,rkl,rlq->pq", E, Z, E, optimize=True)
    return T


def _terms(jac: JointJacobian, scale, rfactor: float, spread: bool):
    """F (P, P) of the data and, if ``spread``, H = sum_r G~' W C W G~ with C the true covariance of
    the whitened, binned noise: Poisson (diagonal) + readout and quantisation, which the whitening
    K^-1 correlates between neighbouring bins (the likelihood keeps only the diagonal of that part).

    Works on G as (rows x bins, Pa) (:attr:`WindowJacobian.G`, the parameters that change the window):
    every product is one BLAS call on contiguous memory, and G~ = s (G - A coef) is never formed
    (:func:`_pair_sum`); a window's exposure factor s enters as s^2 (F, B, M) and s (G~) on the arrays
    taken at s = 1.

    The plural model (``jac.plural``): F of :func:`.plural.projection`; H = F, i.e. the spread is taken as the
    fit's own F^-1 (the readout's correlation between bins, 0.1 % of sigma on the single-scattering default
    design, and the off-diagonal part of the tail's remaining noise, which the fit keeps as a variance, are left
    out; validation/16: the plural MAP's Laplace sigma equals its spread, pull sd 0.82-1.22)."""
    if jac.plural is not None:
        from .plural import projection
        s, s_l = exposure_factors(jac, scale)
        F = projection(jac, s, s_l, rfactor)[0]
        return F, (F.copy() if spread else None)
    nw = len(jac.windows)
    s = np.broadcast_to(np.asarray(scale, float), (nw,))
    P = jac.theta.size
    F, coef, Ws = _projection(jac, s, rfactor)
    if not spread:
        return F, None
    c0 = rfactor * jac.readout_counts2 / jac.gain ** 2   # readout variance per channel before whitening (e^2)
    decay = jac.design.detector.psf_decay
    bands = [_readout_bands(w.channels, float(decay), w.i0, w.G.shape[1], w.bin) if c0 > 0
             else (np.zeros(w.G.shape[1]),) for w in jac.windows]
    # v: Poisson (white after the whitening) + the readout's diagonal, the true variance of every bin
    v = [s[i] * w.lam + c0 * b[0] for i, (w, b) in enumerate(zip(jac.windows, bands))]
    # where the likelihood's variance is that true one on every used bin (W v = 1: its readout_var is the
    # diagonal of the whitened readout's covariance, tested), sum_r u' diag(v) u is F itself: only the
    # off-diagonal readout bands are added
    model_var = all(np.allclose(W * vv, w.mask, rtol=1e-9, atol=0) for W, vv, w in zip(Ws, v, jac.windows))
    H = F.copy() if model_var else np.zeros((P, P))
    for i, w in enumerate(jac.windows):
        E = coef[:, [i, nw, nw + 1], :]                                  # (R, 3, P)
        s2 = s[i] ** 2
        C = w.G.shape[1]
        if not model_var:
            H += _pair_sum(w, s2 * Ws[i] ** 2 * v[i], E, 0, P)
        for k, d in enumerate(bands[i][1:], 1):   # sum_r u_r Q u_r' off the diagonal (Q nearly tridiagonal)
            om = np.zeros_like(Ws[i])
            om[:, :C - k] = s2 * d * Ws[i][:, :C - k] * Ws[i][:, k:]      # pairs (c, c + k) of one row
            t = _pair_sum(w, om, E, k, P)
            H += c0 * (t + t.T)
    return F, 0.5 * (H + H.T)


def fisher(jac: JointJacobian, scale=1.0, rfactor: float = 1.0, include_prior: bool = True) -> np.ndarray:
    """F (P, P) of the joint fit's likelihood with the exposures times ``scale`` (a dose factor, or one per window:
    :func:`exposure_factors`) and the readout variance times ``rfactor``: the inverse of the covariance the
    fit reports."""
    with single_threaded_blas():  # small products: BLAS threads only spin on a busy machine
        F, _ = _terms(jac, scale, rfactor, False)
    return F + np.diag(jac.prior_info) if include_prior else F


def covariances(jac: JointJacobian, scale=1.0, rfactor: float = 1.0) -> tuple:
    """(spread, reported) covariances of :func:`covariance` from one evaluation of F and H."""
    with single_threaded_blas():
        F, H = _terms(jac, scale, rfactor, True)
    try:
        Fi = np.linalg.inv(F + np.diag(jac.prior_info))
    except np.linalg.LinAlgError:
        return np.full(F.shape, np.nan), np.full(F.shape, np.nan)
    return Fi @ H @ Fi, Fi


def covariance(jac: JointJacobian, scale=1.0, rfactor: float = 1.0, kind: str = "spread") -> np.ndarray:
    """Covariance of the joint fit's estimates (P, P).

    ``kind="reported"``: F^-1, what the fit reports (its likelihood's curvature).  ``kind="spread"``:
    the sandwich F^-1 H F^-1, the spread of the estimates over repeated images when the noise is
    the detector's (Poisson + readout correlated by the PSF whitening).  The two agree where shot
    noise dominates; where readout dominates the fit's diagonal weights overstate the noise of
    smooth features and the spread is smaller than the reported error.
    """
    with single_threaded_blas():
        F, H = _terms(jac, scale, rfactor, kind == "spread")
    Fp = F + np.diag(jac.prior_info)
    try:
        Fi = np.linalg.inv(Fp)
    except np.linalg.LinAlgError:
        return np.full(Fp.shape, np.nan)
    return Fi if H is None else Fi @ H @ Fi


def one_step(jac: JointJacobian, scale=1.0):
    """The joint fit linearised at the truth: a function of prepared (whitened, binned) data of the design
    (every exposure times ``scale``) that returns theta_hat - theta = (F + prior)^-1 sum_r G~_r' W_r (d_r - mu_r),
    one Gauss-Newton step from the truth with the fit's own model, weights and profiled amplitudes (mu: the
    noise-free data).  Its spread over detector draws is what :func:`covariance` (``kind="spread"``)
    predicts; where it equals the MAP image by image, the MAP's spread is that prediction too (validation 06)."""
    from ..inference.bayes.data import from_simulation as _prep

    nw = len(jac.windows)
    s = np.broadcast_to(np.asarray(scale, float), (nw,))
    F, coef, Ws = _projection(jac, s, 1.0)
    Fi = np.linalg.inv(F + np.diag(jac.prior_info))
    P = jac.theta.size
    Gt = [s[i] * (w.full_G(P) - np.matmul(w.cols, coef[:, [i, nw, nw + 1], :])) for i, w in enumerate(jac.windows)]
    mu = [k * wd.data for k, wd in zip(s, _prep(jac.simulation).windows)]

    def step(data) -> np.ndarray:
        score = sum(np.einsum("rcp,rc->p", g, W * (wd.data - m)) for g, W, wd, m in zip(Gt, Ws, data.windows, mu))
        return Fi @ score
    return step


def min_electrons(jac: JointJacobian, scale=1.0) -> float:
    """The fewest expected electrons in a used bin at ``scale`` (Gaussian regime if >= 20)."""
    s = exposure_factors(jac, scale)[0]
    return float(min((k * w.lam[w.mask]).min() for k, w in zip(s, jac.windows)))


def gradients(jac: JointJacobian, rows_nm) -> dict:
    """d(number)/d(theta): the derived numbers (D, P) and the per-row profiles at ``rows_nm`` (P each)."""
    pr = jac.priors
    g = {f"derived:{k}": v for k, v in zip(DERIVED, derived_gradient(pr, jac.theta))}
    lo, hi = pr.bounds.T
    h = 1e-6 * (hi - lo)
    P = jac.theta.size
    pts = np.vstack([jac.theta + np.diag(h), jac.theta - np.diag(h)])
    y = np.asarray(rows_nm, float)
    prof = row_profiles(pr.pset.as_dict(pts), pr.pset.ti3_mode, y)
    for k in ROW_KEYS:
        d = (prof[k][:P] - prof[k][P:]) / (2 * h[:, None])           # (P, rows)
        for j, yy in enumerate(y):
            g[f"{k}@{yy:g}"] = d[:, j]
    return g


def sigmas(F: np.ndarray, grads: dict) -> dict:
    """1-sigma of every number with a gradient: sqrt(g' F^-1 g)."""
    try:
        cov = np.linalg.inv(F)
    except np.linalg.LinAlgError:
        return {k: float("nan") for k in grads}
    return sigmas_cov(cov, grads)


def sigmas_cov(cov: np.ndarray, grads: dict) -> dict:
    """1-sigma of every number with a gradient: sqrt(g' cov g)."""
    return {k: float(np.sqrt(max(g @ cov @ g, 0.0))) for k, g in grads.items()}


__all__ = ["GAUSSIAN_MIN_ELECTRONS", "JointJacobian", "covariance", "covariances", "dose_scaled", "fisher", "gradients", "joint_jacobian", "min_electrons", "one_step",
           "readout_factor", "sigmas", "sigmas_cov"]
