"""Plural scattering in the Bayesian data model, from the measured low loss (a DualEELS input).

The data stay counts (whitened electrons, :mod:`.data`), so the Gaussian limit of the Poisson
likelihood stays right; the model is convolved FORWARD with each row's measured low loss
(Egerton 2011, Sec. 4.2: J = Z exp(S / I_0), Poisson in t/lambda).  With the low loss L_r of row r
(whitened like the core loss: electrons before the camera's PSF), Z_r its zero-loss part (up to the
first minimum after the ZLP, :func:`sreels.inference.lowloss.elastic_threshold`), I_t its sum and
u_r = I_0 / I_t the unscattered fraction:

- windows from :data:`~sreels.inference.lowloss.MIN_DECONVOLVE_EV` up (Ti-L2,3 and O-K): the
  single-scattering columns of the model (host X and AlPO4 Y, the analytic O-K peaks included) are
  convolved per row with K_r = u_r delta + [L_r - Z_r] / I_t on lags from the row's ZLP maximum,
  integral 1 (the plural part [L_r - Z_r] / I_t is denoised across rows by the fast path's
  :func:`~sreels.inference.lowloss.denoise_rows`).  K_r's plural part carries the measured ZLP's width
  once more on top of the model's resolution (dividing it out moved no study parameter's noise-free MAP by more
  than 0.05 sigma: the plasmons are ~10 eV wide).  The kernel's own noise is not in the likelihood (R_OO
  pulls within target without it; the per-row Ti3+ reads +0.7 sigma at t/lambda 0.31, not explained,
  validation/16).  What the convolution brings in from below the fit
  region is the plurally scattered power-law background, E^-r [1 + a_r / E + ...] with a_r ~ r <lag>_r
  varying with t/lambda row by row: not absorbed by the model's one power law (noise-free residuals
  ~0.3 sigma), it is by three more per-row columns E^-(r0 + 1, 2, 3) with flat priors.
- the window that starts inside the low-loss range (Li-K, 40 eV): as the fast path, the edge
  columns times u_r plus the row's multiple scattering M_r (:func:`~sreels.inference.lowloss.plural_kernel`,
  Fourier log of the row's own low loss, not denoised across rows) times the exposure ratio, a fixed part
  of the model; the single plasmon's Drude tail gets E^-5, E^-7, E^-9 columns (flat priors).  M_r's noise
  (the 250x less exposed low loss's, larger than the core loss's own and smooth in energy) is carried per
  row: nuisance columns along the leading directions of its covariance (from seeded replicas pooled over
  the rows), prior N(0, 1), marginalised with the other amplitudes (:func:`tail_window`).  Its errors are
  independent from row to row; the h10b model's tail denoised across rows had an error shared by every
  row that the likelihood did not carry (c_Li pulls sd 3-12, validation/16).  These columns still under-carry
  the tail's noise along the c_Li direction: c_Li pull sd 1.28-1.33 at t/lambda 0.59 and 1.47-1.51 at 0.92
  (validation/16; the tail's noise alone moves the linearised c_Li by 1.0 sigma).
  The tail is known up to the low loss's last channel less :data:`TAIL_END_MARGIN_EV`, which ends that
  window's fit region.
- rows beside a jump of u_r (:func:`mixed_rows`, the Pt edge) are left out.

The energy reference: the model keeps fitting its own energy shift per row (the SR distortion
curve's parameters, :mod:`.params`); the ZLP maxima only place each row's kernel and tail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import uniform_filter, uniform_filter1d

from ...axes import EnergyAxis
from ..edgefits import rows_at
from ..lowloss import (MIN_DECONVOLVE_EV, TAIL_REPLICAS, TAIL_SEED, _row_key, denoise_rows,
                       plural_kernel, read_zlp)

#: the Li-K window's fit region ends this far below the low loss's last channel (eV): the tail at loss E
#: needs the low loss up to E, and plural_kernel tapers its last 10 eV
TAIL_END_MARGIN_EV = 15.0
#: powers of the extra background columns under Li-K (the Drude tail's series in (E_p / E)^2) and their scale (eV)
EXTRA_POWERS = (5.0, 7.0, 9.0)
EXTRA_REF_EV = 60.0
#: the Li-K tail's lag step and reconvolution FWHM (eV).  The fast path's 0.5 eV / 1 eV
#: (:data:`~sreels.inference.lowloss.TAIL_STEP_EV`) flattens the double plasmon's peak at 49 eV (-0.27
#: sigma per bin of the core loss against the forward model's multiple scattering, noise-free, t/lambda 0.57);
#: 0.1 eV / 0.5 eV follows it but its replicas overstate its noise 2.6x (their denoising keeps other components);
#: 0.25 eV / 0.6 eV: within 0.1 sigma per bin, replicas' spread 1.28 sigma for an actual 1.26 sigma (measured)
BAYES_TAIL_STEP_EV = 0.25
BAYES_TAIL_FWHM_EV = 0.6
#: noise replicas of the Li-K tail per row (the fast path's count, :data:`~sreels.inference.lowloss.TAIL_REPLICAS`):
#: pooled over the rows they estimate the tail noise's covariance (:func:`tail_window`)
BAYES_TAIL_REPLICAS = TAIL_REPLICAS
#: directions of the Li-K tail's noise kept as per-row nuisance columns: whitened variance above this (the data's
#: own noise along them); ~25 at t/lambda 0.57, holding ~95 % of the tail's noise variance (measured, 40 rows)
ROW_TAIL_KEEP = 1.0
#: rows over which each row's tail-noise level is averaged (:func:`_tail_noise_columns`)
ROW_TAIL_SMOOTH = 9
#: rows next to a jump of the unscattered fraction u = exp(-t/lambda) larger than this are left out
#: (:func:`mixed_rows`); the default image's largest step inside the electrolyte is 0.0022
MIXED_DU = 0.005
#: extra background columns of a window above the low-loss range: E^-(r0 + q), r0 the window's configured exponent
BG_EXTRA_POWERS = (1.0, 2.0, 3.0)


@dataclass(frozen=True)
class PluralWindow:
    """Plural scattering of one window's fit region (rows, bins)."""

    unscattered: np.ndarray                 # (rows,) u_r = I_0 / I_t
    kernel_tf: np.ndarray | None = None     # (rows, nf) rfft of K_r on lags k h (h: the bin), length nfft
    nfft: int = 0
    tail: np.ndarray | None = None          # (rows, bins) electrons: the multiple scattering, fixed
    extra: np.ndarray | None = None         # (columns, rows, bins) fixed per-row columns (theta-independent)
    extra_prec: np.ndarray | None = None    # (columns,) prior precisions of ``extra``'s amplitudes (None: all flat)
    tail_var: np.ndarray | None = None      # (rows, bins) the tail's remaining noise variance, added to the data's

    @property
    def n_nuisance(self) -> int:
        return 0 if self.extra is None else self.extra.shape[0]

    def fixed_columns(self):
        """The window's theta-independent per-row columns (Q, rows, bins) with flat priors (the extra
        background columns) and their prior precisions (Q,), zero."""
        if self.extra is None:
            return np.zeros((0, 0, 0)), np.zeros(0)
        prec = np.zeros(self.extra.shape[0]) if self.extra_prec is None else np.asarray(self.extra_prec, float)
        return self.extra.astype(float), prec

    def convolve(self, cols: np.ndarray) -> np.ndarray:
        """Columns (B, R, C) convolved per row with K_r (linear, causal: lag >= 0)."""
        c = cols.shape[-1]
        f = sfft.rfft(cols, n=self.nfft, axis=-1, workers=-1)
        f *= self.kernel_tf
        return sfft.irfft(f, n=self.nfft, axis=-1, workers=-1)[..., :c]


@dataclass(frozen=True)
class LowLoss:
    """A low-loss window in whitened electrons (rows, channels) and its reading."""

    electrons: np.ndarray
    axis: EnergyAxis
    centre_ev: np.ndarray
    fwhm_ev: np.ndarray
    threshold: np.ndarray
    t_over_lambda: np.ndarray
    readout_var: float = 0.0   # readout + quantisation variance per channel (electrons^2), low frequencies

    @property
    def unscattered(self) -> np.ndarray:
        return np.exp(-self.t_over_lambda)


def read_lowloss(electrons, axis: EnergyAxis, readout_var: float = 0.0) -> LowLoss:
    """The ZLP reading of :func:`sreels.inference.lowloss.read_zlp` on whitened electrons (``readout_var``:
    the readout noise's variance per channel in electrons^2)."""
    e = np.asarray(electrons, dtype=float)
    centre, fwhm, thr, tl, _ = read_zlp(e, axis)
    return LowLoss(e, axis, centre, fwhm, thr, tl, float(readout_var))


def tail_end_ev(axis: EnergyAxis) -> float:
    """Where the Li-K window's fit region must end (eV) for its tail to be known."""
    return axis.end_ev - TAIL_END_MARGIN_EV


def _mass_on_lags(ll: LowLoss, h: float, nk: int) -> np.ndarray:
    """[L_r - Z_r] / I_t integrated over lag bins [(k - 1/2) h, (k + 1/2) h) from each row's ZLP maximum,
    (rows, nk): cumulative sums interpolated at the bins' edges (counts conserved)."""
    y = ll.electrons
    ax = ll.axis
    idx = np.arange(y.shape[1])[None, :]
    plural = np.where(idx >= ll.threshold[:, None], y, 0.0)
    it = y.sum(1)
    cum = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(plural, 1)], 1) / it[:, None]
    edges_lag = h * (np.arange(nk + 1) - 0.5)
    pos = (ll.centre_ev[:, None] + edges_lag[None, :] - (ax.offset_ev - 0.5 * ax.scale_ev)) / ax.scale_ev
    pos = np.clip(pos, 0.0, y.shape[1])
    i = np.clip(np.floor(pos).astype(int), 0, y.shape[1] - 1)
    fr = pos - i
    r = np.arange(y.shape[0])[:, None]
    c = cum[r, i] * (1 - fr) + cum[r, i + 1] * fr
    return np.diff(c, axis=1)


def kernel_window(ll: LowLoss, bin_ev: float, nbins: int, energy_ev, background_r: float,
                  background_ref_ev: float) -> PluralWindow:
    """K_r for a window above the low-loss range, binned at ``bin_ev``, lags up to the region's span, and
    the extra background columns on ``energy_ev`` (bins, bin) for the window's power law (r0, E_ref)."""
    mass = denoise_rows(_mass_on_lags(ll, bin_ev, nbins))
    u = ll.unscattered
    n = sfft.next_fast_len(2 * nbins, real=True)
    tf = sfft.rfft(mass, n=n, axis=-1) + u[:, None]
    # the plurally scattered power law is E^-r [1 + a_r / E + b_r / E^2 + ...], a_r = r <lag>_r (of order
    # r (1 - u_r) E_p) varying with t/lambda from row to row: three more columns per row, flat priors
    e = energy_ev.reshape(-1) / background_ref_ev
    extra = np.stack([np.broadcast_to((e ** -(background_r + q)).reshape(energy_ev.shape).sum(-1), (u.size, nbins))
                      for q in BG_EXTRA_POWERS])
    return PluralWindow(u, tf, n, extra=extra)


def tail_window(ll: LowLoss, energy_ev: np.ndarray, scale_ev: float, exposure_ratio: float,
                row_var: np.ndarray) -> PluralWindow:
    """The Li-K window's fixed multiple scattering per bin (electrons), each row's from its own low loss,
    and that tail's noise as per-row nuisance columns.

    ``energy_ev`` (bins, bin) the channel centres summed into each bin on the stored axis, ``scale_ev``
    the window's channel width, ``exposure_ratio`` core-loss over low-loss exposure, ``row_var`` (rows, bins)
    the data's noise variance (electrons^2), which whitens the tail's noise.

    The tail's noise (the low loss's shot noise through the Fourier log, times the exposure ratio, 250 for
    the default instrument) is 1.3-1.7 x the core loss's own per bin and smooth in energy: 25-bin means keep
    nearly all of it (measured, t/lambda 0.57), so it lies in a few smooth directions, as the Li-K edge and
    its background do.  Its covariance is estimated from :data:`BAYES_TAIL_REPLICAS` seeded replicas of every
    row (Poisson noise of the whitened electrons through the same steps): pooled over replicas and rows, the
    whitened covariance (N R draws) gives the directions; each row's replicas give its own variance along
    each.  Directions with whitened variance above :data:`ROW_TAIL_KEEP` are per-row amplitude columns with a
    N(0, 1) prior (marginalised with the other linear amplitudes, :mod:`.likelihood`); the rest of the
    covariance's diagonal is added to the data's variance.  The rows' tails are not denoised across rows:
    their errors are then independent from row to row (the denoised tail's error, shared by every row, made
    the c_Li pulls' sd 3-12: validation/16)."""
    y = ll.electrons
    rows = y.shape[0]
    span = float(energy_ev.max() - np.min(ll.centre_ev)) + 2.0
    step = BAYES_TAIL_STEP_EV
    # replicas as the fast path's (sreels.inference.lowloss.apply_low_loss), each row's draws seeded by
    # TAIL_SEED and its own values: Poisson noise of the whitened electrons plus the readout's, which the
    # low loss's few electrons per channel above ~80 eV loss (2-20 at t/lambda 0.59) do not dwarf (~4 e^2)
    sd = np.sqrt(np.maximum(y, 0.0) + ll.readout_var)
    nrep = BAYES_TAIL_REPLICAS
    z = np.stack([np.random.default_rng([TAIL_SEED, _row_key(r)]).standard_normal((nrep, r.size))
                  for r in y], axis=1)
    reps = np.concatenate([y[None], y[None] + z * sd[None]]).reshape(-1, y.shape[1])
    _, tails = plural_kernel(reps, ll.axis, np.tile(ll.centre_ev, nrep + 1),
                             np.tile(ll.axis.energy_ev[ll.threshold], nrep + 1), step, span,
                             fwhm_ev=BAYES_TAIL_FWHM_EV)
    tails = tails * (scale_ev / step) * exposure_ratio       # electrons per core-loss channel
    nb, b = energy_ev.shape
    e = energy_ev.reshape(-1)
    binned = np.stack([rows_at(t, step, e, ll.centre_ev)[0].reshape(rows, nb, b).sum(-1)
                       for t in tails.reshape(nrep + 1, rows, -1)])
    cols, var = _tail_noise_columns(binned[1:] - binned[:1], row_var)
    # the single-scattering valence loss under the window is a Drude tail, E^-3 [1 + O((E_p / E)^2)], not a
    # power law (local exponent -4.7 at 41 eV for E_p = 24.7 eV, Gamma = 10 eV; Egerton 2011, Eq. 3.43):
    # the model's power law plus E^-5, E^-7, E^-9 on the row's ZLP-referenced axis describe a single Drude
    # tail over 41-180 eV within 0.1 % (E_p 24-26 eV, Gamma 10 eV; 0.3 % for Pt's 30 eV, 20 eV); flat priors
    loss = (e[None, :] - ll.centre_ev[:, None]) / EXTRA_REF_EV
    extra = np.stack([(loss ** -q).reshape(rows, nb, b).sum(-1) for q in EXTRA_POWERS])
    prec = np.concatenate([np.zeros(len(extra)), np.ones(cols.shape[0])])
    return PluralWindow(ll.unscattered, tail=binned[0], extra=np.concatenate([extra, cols]), extra_prec=prec,
                        tail_var=var)


def _tail_noise_columns(dev: np.ndarray, row_var: np.ndarray) -> tuple:
    """Per-row nuisance columns (Q, rows, bins), prior N(0, 1), and the remaining variance (rows, bins) of
    a noise whose replicas' deviations are ``dev`` (N, rows, bins), for data of noise variance ``row_var``
    (see :func:`tail_window`)."""
    sd = np.sqrt(row_var)
    w = dev / sd                                                  # whitened
    cov = np.einsum("nrb,nrc->bc", w, w) / (w.shape[0] * w.shape[1])
    lam, vec = np.linalg.eigh(cov)
    keep = lam > ROW_TAIL_KEEP
    v, lam_k = vec[:, keep], lam[keep]
    proj = np.einsum("nrb,bq->nrq", w, v)
    # each row's level (the low loss's counts vary from row to row) as one factor on the pooled covariance,
    # from N Q draws per row averaged over ROW_TAIL_SMOOTH rows (N draws per direction and row alone would
    # leave each row's variances 50 % uncertain, and a noisy variance makes a GLS fit's pulls too wide)
    s_r = np.mean(proj ** 2 / lam_k, axis=(0, 2)) if lam_k.size else np.ones(w.shape[1])
    s_r = uniform_filter1d(s_r, min(ROW_TAIL_SMOOTH, s_r.size), mode="nearest")
    cols = np.sqrt(lam_k)[:, None, None] * np.sqrt(s_r)[None, :, None] * v.T[:, None, :] * sd[None]
    rest = w - np.einsum("nrq,bq->nrb", proj, v)
    return cols, np.mean(rest ** 2, 0) * row_var


def mixed_rows(unscattered) -> np.ndarray:
    """Rows (bool, (rows,)) next to a jump of the unscattered fraction larger than :data:`MIXED_DU`.

    The blur along y mixes neighbouring rows after plural scattering, the model's kernels act on the
    blurred rows: exact where the kernel varies slowly, not at a sharp change of t/lambda (the Pt
    collector's edge, where the row's low loss is partly Pt's while its edges are all the electrolyte's:
    the fitted c_Li of the image moved by 0.5 sigma in a noise-free test with those rows kept)."""
    u = np.asarray(unscattered, dtype=float)
    jump = np.abs(np.diff(u)) > MIXED_DU
    out = np.zeros(u.size, bool)
    out[:-1] |= jump
    out[1:] |= jump
    return out


def plural_windows(windows, ll: LowLoss, exposure_ratio: dict) -> tuple:
    """One :class:`PluralWindow` per prepared window (:class:`.data.WindowData`), aligned with them."""
    out = []
    for wd in windows:
        w = wd.window
        if w.offset_ev >= MIN_DECONVOLVE_EV:
            out.append(kernel_window(ll, wd.bin * w.scale_ev, wd.nbins, wd.energy_ev, w.background_r,
                                     w.background_ref_ev))
        else:
            # the data's noise (the first-pass variance of .data.prepare) whitens the tail's
            row_var = np.maximum(uniform_filter(wd.data, size=(3, 7), mode="nearest"), 1.0) + wd.readout_var
            out.append(tail_window(ll, wd.energy_ev, w.scale_ev, exposure_ratio[w.name], row_var))
    return tuple(out)
