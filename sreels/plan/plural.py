"""The Fisher information of the joint fit's plural model (a DualEELS design, ``sreels fit --method bayes``'s default).

The plural model (:mod:`sreels.inference.bayes.plural`) keeps the single-scattering model's parameters and adds,
per row r and window w, columns with fixed shapes to the linear amplitudes: extra background columns (flat
priors) and, under Li-K, the directions of the multiple-scattering tail's noise (prior N(0, 1)); the model's edge
columns are convolved with the row's low loss, the tail itself is a fixed part of the model, and the tail's
remaining noise variance (``tail_var``) is added to the data's.  Its information on theta, every amplitude
profiled out (a Gaussian prior adds its precision to M), is

    F = sum_r G_r' W_r G_r - B_r M_r^-1 B_r',  B_r = G_r' W_r A_r,  M_r = A_r' W_r A_r + diag(prec),

A_r = [background_w, host, AlPO4, extra_w] of every window, W_r = 1 / (max(lambda, 1) + v_read + tail_var).

Exposure of each window (s_w the core-loss window's factor, s_L the low loss's, rf the readout's): lambda, G and
the background / host / AlPO4 columns scale with s_w (the tail's mean too: it is the low loss times the exposure
ratio s_w / s_L); the detector's readout variance with rf.  The tail's noise is the low loss's, through the
Fourier log (degree-1 homogeneous in the low loss: its linearisation does not change with s_L), times the
exposure ratio: its covariance is  T(s) = s_w^2 / s_L T_P + rf (s_w / s_L)^2 T_R  (T_P from the low loss's shot
noise, T_R from its readout).  The plan keeps the design's split of T into nuisance columns and the diagonal rest
and scales both by  gamma_r = p_r s_w^2 / s_L + (1 - p_r) rf (s_w / s_L)^2,  p_r the shot noise's share of row
r's whitened tail variance at the design (:func:`tail_poisson_share`): the nuisance columns' prior precision
becomes 1 / gamma_r, the rest gamma_r tail_var.  Exact at the design (tested against
:func:`sreels.inference.bayes.crlb.fisher`) and for a dose factor s on every window and the low loss alike when
the readout is negligible (T and the data's variance both scale by s: the fit's own split does not move; tested
against a design prepared from scratch); otherwise the fit would split T afresh (directions above whitened
variance 1 as columns), which the plan does not redo (an eigen-decomposition per row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inference.bayes import plural as bp

__all__ = ["PluralTerms", "gamma", "projection", "tail_poisson_share", "terms_of"]


@dataclass(frozen=True)
class PluralTerms:
    """One window's plural part at the design's truth: its fixed per-row columns and how they scale."""

    extra: np.ndarray          # (rows, bins, Q) fixed columns (extra background with flat priors, tail noise)
    prec: np.ndarray           # (Q,) prior precisions at the design: 0 flat, 1 for the tail's noise directions
    tail_var: np.ndarray       # (rows, bins) the tail's noise variance not in the columns (0 without a tail)
    poisson_share: np.ndarray  # (rows,) p_r: the low loss's shot noise's share of the tail's whitened variance
    A: np.ndarray | None = None       # (rows, bins, 3 + Q) background, host, AlPO4 at the design, then ``extra``
    G_full: np.ndarray | None = None  # (rows, bins, P) d mu / d theta at the design, every parameter's column


def terms_of(data, sim=None) -> tuple:
    """:class:`PluralTerms` per window of prepared DualEELS data (``from_simulation(sim, plural=True)``)."""
    out = []
    shares = None
    for i, (wd, p) in enumerate(zip(data.windows, data.plural)):
        R, C = wd.data.shape
        dev, prec = p.fixed_columns()
        extra = np.ascontiguousarray(np.transpose(dev, (1, 2, 0))) if dev.size else np.zeros((R, C, 0))
        tv = np.zeros((R, C)) if p.tail_var is None else np.asarray(p.tail_var, float)
        ps = np.ones(R)
        if p.tail_var is not None:
            if shares is None and sim is not None:
                shares = tail_poisson_share(sim, data, i)
            if shares is not None:
                ps = shares
        out.append(PluralTerms(extra, np.asarray(prec, float), tv, ps))
    return tuple(out)


#: rows of the image on which the tail's shot-noise share is computed (interpolated between): every this many
SHARE_ROW_STEP = 24


def tail_poisson_share(sim, data, i: int) -> np.ndarray:
    """p_r (rows,): the share of row r's whitened tail-noise variance tr(W T_P) / tr(W (T_P + T_R)) that comes from
    the low loss's shot noise (the rest from its readout), from :func:`sreels.inference.bayes.plural.tail_covariance`
    evaluated as :func:`~sreels.inference.bayes.plural.tail_window` does, on every :data:`SHARE_ROW_STEP`-th row
    (and the last) and interpolated linearly between them."""
    from scipy.ndimage import uniform_filter

    inst = sim.config.instrument
    ll = _lowloss_of(sim)
    rv = ll.readout_var
    wd = data.windows[i]
    w = wd.window
    ratio = w.exposure_s / inst.lowloss_exposure_s
    span, step, thr_ev, factor = bp._tail_steps(ll, wd.energy_ev, w.scale_ev, ratio)
    lin = bp._smooth_plural(ll.electrons, ll.threshold, ll.axis.scale_ev)
    R = lin.shape[0]
    rows = np.unique(np.r_[np.arange(0, R, SHARE_ROW_STEP), R - 1])
    # the data's noise that whitens the tail's (as plural_windows: the smoothed data + the detector's readout)
    row_var = (np.maximum(uniform_filter(wd.data, size=(3, 7), mode="nearest"), 1.0)
               + wd.readout_var - data.plural[i].tail_var)[rows]
    pois = np.maximum(lin[rows], 0.0)
    both = np.concatenate([pois, np.full_like(pois, rv)])
    cov = bp.tail_covariance(np.concatenate([lin[rows]] * 2), both, ll.axis, np.tile(ll.centre_ev[rows], 2),
                             np.tile(thr_ev[rows], 2), step, span, bp.BAYES_TAIL_FWHM_EV, wd.energy_ev, factor,
                             diagonal=True)
    tr = cov / np.tile(row_var, (2, 1))
    tp, tr_ = tr[:len(rows)].sum(1), tr[len(rows):].sum(1)
    share = tp / np.maximum(tp + tr_, 1e-300)
    return np.interp(np.arange(R), rows, share)


def gamma(terms: PluralTerms, s_w: float, s_l: float, rfactor: float) -> np.ndarray:
    """(rows,) the factor on the tail's noise covariance at core-loss factor ``s_w`` and low-loss factor ``s_l``."""
    p = terms.poisson_share
    return p * s_w ** 2 / s_l + (1.0 - p) * rfactor * (s_w / s_l) ** 2


def projection(jac, s, s_l: float, rfactor: float):
    """F (P, P) of the plural model's data with every amplitude profiled out, coef = M^-1 B' (R, K, P), the
    weights W per window (rows, bins) and the columns' index per window (K: background of each window, host,
    AlPO4, then each window's extra columns), at core-loss factors ``s`` (nw,) and low-loss factor ``s_l``."""
    from .fisher import VARIANCE_FLOOR_E, _row_blocks

    nw = len(jac.windows)
    P = jac.theta.size
    R = jac.y_nm.size
    qs = [t.extra.shape[2] for t in jac.plural]
    K = nw + 2 + sum(qs)
    M = np.zeros((R, K, K))
    B = np.zeros((R, P, K))
    Ws, idxs, acols = [], [], []
    off = nw + 2
    for i, (w, t) in enumerate(zip(jac.windows, jac.plural)):
        q = qs[i]
        idx = np.r_[i, nw, nw + 1, off:off + q].astype(int)
        off += q
        g = gamma(t, s[i], s_l, rfactor)                                          # (R,)
        V = np.maximum(s[i] * w.lam, VARIANCE_FLOOR_E) + rfactor * w.readout_var + g[:, None] * t.tail_var
        W = np.where(w.mask, 1.0 / V, 0.0)
        # the columns at the design's exposure: the background, host and AlPO4 columns (s times these at s) have
        # flat priors, so their scale does not change the projection; the extra columns do not scale
        A = t.A
        a = w.act
        BA = np.empty((R, a.size, 3 + q))
        Mw = np.empty((R, 3 + q, 3 + q))
        for r in _row_blocks(R):   # blocks of rows: the temporary A W stays in cache
            AW = A[r] * W[r, :, None]                                            # (rows, C, 3 + q)
            BA[r] = np.matmul(w.G[r].transpose(0, 2, 1), AW)                     # G' W A, (rows, Pa, 3 + q)
            Mw[r] = np.matmul(AW.transpose(0, 2, 1), A[r])
        B[:, a[:, None], idx] += s[i] * BA
        pr = np.zeros((R, 3 + q))
        pr[:, 3:] = t.prec[None, :] / g[:, None]            # the tail's noise directions: N(0, gamma) amplitudes
        Mw[:, np.arange(3 + q), np.arange(3 + q)] += pr
        M[:, idx[:, None], idx] += Mw
        Ws.append(W)
        idxs.append(idx)
        acols.append(A)
    dg = np.sqrt(np.clip(np.einsum("rkk->rk", M), 1e-300, None))
    Ms = M / (dg[:, :, None] * dg[:, None, :]) + 1e-12 * np.eye(K)
    Bs = B / dg[:, None, :]
    coef = np.linalg.solve(Ms, Bs.transpose(0, 2, 1)) / dg[:, :, None]
    # F as J'J of the profiled residuals' Jacobian J = W^1/2 (s G - A coef) plus the Gaussian priors' rows
    # (prec^1/2 coef), not as the Schur complement G'WG - B M^-1 B': equal in exact arithmetic, but the Li-K
    # window's extra columns (E^-5 ... E^-13, the tail's noise directions) make M_r ill-conditioned (~1e12 after
    # Jacobi scaling), where the fit's own ridge (1e-12, likelihood._solve) decides and only this form is the one
    # the fit's residuals have (crlb.fisher: derived numbers within 5e-5 with the Schur form, 1e-6 with this one)
    F = np.zeros((P, P))
    for i, (w, t, W, idx, A) in enumerate(zip(jac.windows, jac.plural, Ws, idxs, acols)):
        E = coef[:, idx, :]                                                       # (R, 3 + q, P)
        for r in _row_blocks(R):   # blocks of rows: the (rows, C, P) temporaries stay in cache
            Gt = np.matmul(A[r], E[r])                                            # (rows, C, P)
            np.subtract(s[i] * t.G_full[r], Gt, out=Gt)
            F += (Gt * W[r, :, None]).reshape(-1, P).T @ Gt.reshape(-1, P)
        g = gamma(t, s[i], s_l, rfactor)
        pr = t.prec[None, :] / g[:, None]                                         # (R, q)
        En = E[:, 3:, :]
        F += np.einsum("rkp,rk,rkq->pq", En, pr, En)
    return 0.5 * (F + F.T), coef, Ws, idxs, acols



def _lowloss_of(sim):
    """The low-loss reading of :func:`sreels.inference.bayes.data.prepare` (whitened electrons, ZLP reading)."""
    from ..config import LOWLOSS_NAME
    from ..inference.bayes.data import QUANTISATION_VAR, deconvolve

    det = sim.config.detector
    llw = sim.windows[LOWLOSS_NAME]
    lc = np.asarray(llw.counts, float)
    if not det.dark_subtracted:
        lc = lc - det.dark_offset_counts
    white = deconvolve(lc, det.psf_decay, slice(0, lc.shape[1]), 1, factors=False)[0] / det.gain_counts_per_e
    rv = (det.readout_noise_counts ** 2 + (QUANTISATION_VAR if det.quantise else 0.0)) / det.gain_counts_per_e ** 2
    return bp.read_lowloss(white, llw.energy, rv)


def one_step(jac, kernel_noise: bool = True, tail_noise: bool = True):
    """The plural fit linearised at the truth (one Gauss-Newton step with its own model, weights and profiled
    amplitudes, at the design's exposures): a function of a noisy simulation of the design that returns
    theta_hat - theta.  The image's own noise enters through its core-loss windows (whitened and binned as the fit
    does), the Li-K tail computed from its own low loss (the tail's noise) and the kernels and unscattered fractions
    from its own low loss (the kernel's noise, which the likelihood does not carry); the fit's nuisance columns and
    weights stay the design's.  Cheap: no plural preparation per image (no tail covariance).  ``kernel_noise`` /
    ``tail_noise`` False: the design's (noise-free) kernels and unscattered fractions / Li-K tail instead of the
    image's (which noise source makes the spread, a diagnosis)."""
    import copy

    from ..inference.bayes.data import from_simulation, prepare
    from ..inference.bayes.likelihood import Likelihood
    from ..inference.bayes.model import ImageModel
    from ..inference.lowloss import MIN_DECONVOLVE_EV
    from ..config import LOWLOSS_NAME

    nw = len(jac.windows)
    ones = np.ones(nw)
    F, coef, Ws, idxs, acols = projection(jac, ones, 1.0, 1.0)
    Fi = np.linalg.inv(F + np.diag(jac.prior_info))
    Gt = [t.G_full - np.matmul(A, coef[:, idx, :]) for t, A, idx in zip(jac.plural, acols, idxs)]
    sim0 = jac.simulation
    data0 = from_simulation(sim0, plural=True)
    model = ImageModel(data0, jac.priors.pset)
    like = Likelihood(model)
    a0, pred0, _ = like.fit_rows(jac.theta)
    cols0 = model.columns(jac.theta[None])
    inst = sim0.config.instrument
    regions = {wd.window.name: (wd.window.offset_ev + wd.window.scale_ev * (wd.i0 - 0.5),
                                wd.window.offset_ev + wd.window.scale_ev * (wd.i0 + wd.nbins * wd.bin + 0.5), wd.bin)
               for wd in data0.windows}
    ratio = {w.name: w.exposure_s / inst.lowloss_exposure_s for w in inst.windows}
    ll0 = _lowloss_of(sim0)

    def step(sim) -> np.ndarray:
        counts = {k: w.counts for k, w in sim.windows.items() if k != LOWLOSS_NAME}
        sat = {k: w.saturated for k, w in sim.windows.items() if k != LOWLOSS_NAME}
        data = prepare(counts, sim.config, sim.position.y_nm, sim.position.scale_nm, saturated=sat, regions=regions)
        ll = _lowloss_of(sim)
        ll_k = ll if kernel_noise else ll0
        ll_t = ll if tail_noise else ll0
        pls = []
        for wd, p in zip(data0.windows, data0.plural):
            w = wd.window
            if w.offset_ev >= MIN_DECONVOLVE_EV:
                pls.append(bp.kernel_window(ll_k, wd.bin * w.scale_ev, wd.nbins, wd.energy_ev, w.background_r,
                                            w.background_ref_ev))
            else:
                pls.append(bp.PluralWindow(ll_k.unscattered, tail=bp.binned_tail(ll_t, wd.energy_ev, w.scale_ev, ratio[w.name])))
        m = copy.copy(model)
        m.data = data0.__class__(**{**data0.__dict__, "plural": tuple(pls)})
        cols = m.columns(jac.theta[None])
        score = np.zeros(jac.theta.size)
        for i, (wd, wd0, c, c0, p, p0) in enumerate(zip(data.windows, data0.windows, cols, cols0, pls, data0.plural)):
            if wd.data.shape != wd0.data.shape:
                raise ValueError(f"window {wd.window.name}: {wd.data.shape} bins against the design's {wd0.data.shape}")
            # the model at the truth with this image's kernels and tail, minus the design's (noise-free) one
            dmu = a0[:, nw, None] * (c.host[0] - c0.host[0]) + a0[:, nw + 1, None] * (c.alpo4[0] - c0.alpo4[0])
            if p.tail is not None:
                dmu = dmu + (p.tail - p0.tail)
            r = wd.data - pred0[i] - dmu
            score += np.einsum("rcp,rc->p", Gt[i], Ws[i] * r)
        return Fi @ score
    return step
