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
  and the per-row Ti3+ pulls within target without it, validation/16).  What the convolution brings in from below the fit
  region is the plurally scattered power-law background, E^-r [1 + a_r / E + ...] with a_r ~ r <lag>_r
  varying with t/lambda row by row: not absorbed by the model's one power law (noise-free residuals
  ~0.3 sigma), it is by three more per-row columns E^-(r0 + 1, 2, 3) with flat priors.
- the window that starts inside the low-loss range (Li-K, 40 eV): as the fast path, the edge
  columns times u_r plus the row's multiple scattering M_r (the Fourier log of
  :func:`~sreels.inference.lowloss.plural_kernel` of the row's own low loss, not denoised across rows, to first
  order about that low loss smoothed: :func:`binned_tail`) times the exposure ratio, a fixed part
  of the model; the single plasmon's Drude tail gets E^-5 ... E^-13 columns (flat priors).  M_r's noise
  (the 250x less exposed low loss's, larger than the core loss's own and smooth in energy) is carried per
  row: nuisance columns along the leading eigen-directions of each row's own covariance, which is the exact
  linearisation of the tail's steps (:func:`tail_covariance`, evaluated on the low loss smoothed
  above the ZLP in energy and over rows), prior N(0, 1), marginalised with the other amplitudes (:func:`tail_window`).  Its errors
  are independent from row to row; the h10b model's tail denoised across rows had an error shared by every
  row that the likelihood did not carry (c_Li pulls sd 3-12, validation/16).  The earlier covariance, from 8
  seeded replicas per row pooled over the rows, under-carried the tail's noise along c_Li (pull sd 1.47 at
  t/lambda 0.92); with the exact one and the Drude columns up to E^-13 every pull of validation/16 (52 images
  per t/lambda 0.31 / 0.59 / 0.92) is within target: means -0.25 to +0.21, sd 0.82-1.22.
  The tail is known up to the low loss's last channel less :data:`TAIL_END_MARGIN_EV`, which ends that
  window's fit region.
- rows beside a jump of u_r (:func:`mixed_rows`, the Pt edge) are left out.

The energy reference: the model keeps fitting its own energy shift per row (the SR distortion
curve's parameters, :mod:`.params`); the ZLP maxima only place each row's kernel and tail.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import sparse
from scipy.ndimage import gaussian_filter1d, uniform_filter, uniform_filter1d

from ...axes import EnergyAxis
from ..edgefits import rows_at
from ..lowloss import MIN_DECONVOLVE_EV, denoise_rows, elastic_threshold, log_ratio_thickness, read_zlp

#: the Li-K window's fit region ends this far below the low loss's last channel (eV): the tail at loss E
#: needs the low loss up to E, and plural_kernel tapers its last 10 eV
TAIL_END_MARGIN_EV = 15.0
#: powers of the extra background columns under Li-K (the Drude tail's series in (E_p / E)^2) and their scale (eV);
#: with E^-5 ... E^-9 only, the noise-free MAP's c_Li read -0.28 / -0.23 / -0.18 sigma at t/lambda 0.31 / 0.59 /
#: 0.92, with E^-11 and E^-13 as well +0.00 / +0.01 / -0.01 (full fits of noise-free images, measured)
EXTRA_POWERS = (5.0, 7.0, 9.0, 11.0, 13.0)
EXTRA_REF_EV = 60.0
#: the Li-K tail's lag step and reconvolution FWHM (eV).  The fast path's 0.5 eV / 1 eV
#: (:data:`~sreels.inference.lowloss.TAIL_STEP_EV`) flattens the double plasmon's peak at 49 eV (-0.27
#: sigma per bin of the core loss against the forward model's multiple scattering, noise-free, t/lambda 0.57);
#: 0.1 eV / 0.5 eV follows it but its replicas overstate its noise 2.6x (their denoising keeps other components);
#: 0.25 eV / 0.6 eV: within 0.1 sigma per bin, replicas' spread 1.28 sigma for an actual 1.26 sigma (measured).
#: A low loss recorded coarser than this (0.25-1 eV per channel is common) is not resampled onto finer lags: the
#: step is then its own channel (:func:`tail_step_ev`; lags finer than a stored channel only split its counts)
BAYES_TAIL_STEP_EV = 0.25
BAYES_TAIL_FWHM_EV = 0.6
#: the low loss's plural part is smoothed by a Gaussian of this sd (stored channels) and over this many rows where
#: the tail's noise is linearised (:func:`_smooth_plural`); 0 channels: the row's own noisy low loss
LIN_SMOOTH_CHANNELS = 10.0
LIN_SMOOTH_ROWS = 9
#: ... and by no more than this sd in eV (10 channels at 0.1 eV; :func:`lin_smooth_channels`): the first-order tail
#: about a smoothed low loss is off by the second order in what the smoothing takes out, which grows with its width.
#: At 0.4 eV/channel (1 eV resolution, t/lambda 0.55, 40 rows, noise-free) 10 channels (4 eV) left the Li-K window
#: 0.185 sigma rms at the truth (0.79 without the tail's noise columns), 1 eV 0.012 (0.055); on a noisy 330-row
#: image of that design the MAP's li_max_rel moved from -16.8 to +0.5 sigma off the truth (measured)
LIN_SMOOTH_EV = 1.0
#: directions of the Li-K tail's noise kept as per-row nuisance columns: whitened variance above this (the data's
#: own noise along them); ~25 at t/lambda 0.57, holding ~95 % of the tail's noise variance (measured, 40 rows)
ROW_TAIL_KEEP = 1.0
#: the leading eigenpairs of the rows' whitened tail covariances (:func:`_leading_eigh`): subspace dimension,
#: spare columns beyond the wanted ones, convergence tolerance (residual over the row's largest eigenvalue) and
#: iterations before a row is decomposed in full
LEADING_K = 48
LEADING_SPARE = 12
LEADING_TOL = 1e-9
LEADING_ITERATIONS = 4
#: rows next to a jump of the unscattered fraction u = exp(-t/lambda) larger than this are left out
#: (:func:`mixed_rows`); the default image's largest step inside the electrolyte is 0.0022
MIXED_DU = 0.005
#: ... and larger than this many times the image's median step between neighbouring rows (the measured LSMO/STO
#: pair's 10 rows, t/lambda 0.33-0.45, were every one "mixed" by MIXED_DU alone: no data left to fit)
MIXED_TYPICAL = 5.0
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
    the readout noise's variance per channel in electrons^2), each row's elastic threshold read on the rows
    averaged over :data:`LIN_SMOOTH_ROWS` and its distance from the row's ZLP maximum taken as the median over as
    many rows (:func:`stable_threshold`), t/lambda with it."""
    e = np.asarray(electrons, dtype=float)
    centre, fwhm, _, _, _ = read_zlp(e, axis)
    thr = stable_threshold(e, axis, centre, fwhm)
    return LowLoss(e, axis, centre, fwhm, thr, log_ratio_thickness(e, thr)[0], float(readout_var))


def stable_threshold(y, axis: EnergyAxis, centre_ev, fwhm_ev) -> np.ndarray:
    """Each row's elastic threshold (channel): :func:`~sreels.inference.lowloss.elastic_threshold` (the minimum after
    the ZLP) of the rows averaged over :data:`LIN_SMOOTH_ROWS`, its distance from the row's ZLP maximum the median
    of the neighbouring rows' (as many).  The minimum of one row's valley between the ZLP and the plasmon is a noisy
    argmin where the valley holds a few electrons per channel: at 1/10 of the default dose it fell 0-7 eV beyond the
    noise-free one (95th percentile 6 eV), and the Li-K tail's Fourier log of a row whose zero-loss part took in the
    plasmon's onset was off by up to 5e4 x the data's noise (whitened rms of the row); read this way 0-2.7 eV (95 %:
    -0.1 to +2.7 eV over three draws), worst row 8-150 x (60 draws, measured).  At the default dose -0.1 to +0.3 eV
    (95 %, against -0.1 to +1.2 eV).  A median keeps a step of the valley's place (the Pt collector's edge)."""
    from scipy.ndimage import median_filter

    y = np.asarray(y, dtype=float)
    nr = min(LIN_SMOOTH_ROWS, y.shape[0])
    thr = elastic_threshold(uniform_filter1d(y, nr, axis=0, mode="nearest"), axis, centre_ev, fwhm_ev)
    c = np.clip(np.round((np.asarray(centre_ev, float) - axis.offset_ev) / axis.scale_ev), 0, y.shape[1] - 1).astype(int)
    return np.clip(c + median_filter(thr - c, size=nr, mode="nearest"), 0, y.shape[1] - 1)


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


def tail_step_ev(axis: EnergyAxis) -> float:
    """The Li-K tail's lag step (eV) for a low loss stored on ``axis``: :data:`BAYES_TAIL_STEP_EV`, or the stored
    channel where that is coarser (then no resampling: :func:`tail_covariance` needs a step of at least one stored
    channel).  The default dispersions (0.05, 0.1 eV) keep 0.25 eV exactly."""
    scale = float(axis.scale_ev)
    return scale if scale > BAYES_TAIL_STEP_EV * (1.0 + 1e-6) else BAYES_TAIL_STEP_EV


def lin_smooth_channels(scale_ev: float | None) -> float:
    """The sd (stored channels) of :func:`_smooth_plural`'s Gaussian on a low loss of ``scale_ev`` per channel:
    :data:`LIN_SMOOTH_CHANNELS`, or :data:`LIN_SMOOTH_EV` where those channels are wider (coarser than 0.1 eV per
    channel; the default dispersions keep 10 channels exactly; None: 10 channels)."""
    if scale_ev is None or not float(scale_ev) * LIN_SMOOTH_CHANNELS > LIN_SMOOTH_EV * (1.0 + 1e-6):
        return LIN_SMOOTH_CHANNELS
    return LIN_SMOOTH_EV / float(scale_ev)


def _tail_steps(ll: LowLoss, energy_ev: np.ndarray, scale_ev: float, exposure_ratio: float) -> tuple:
    """The Li-K tail's lag span (eV), lag step (:func:`tail_step_ev`), each row's elastic threshold (eV) and its factor
    to electrons per core-loss channel, for a window of channels ``energy_ev`` (bins, bin) of ``scale_ev``."""
    span = float(energy_ev.max() - np.min(ll.centre_ev)) + 2.0
    step = tail_step_ev(ll.axis)
    return span, step, ll.axis.energy_ev[ll.threshold], (scale_ev / step) * exposure_ratio


def tail_point(ll: LowLoss, energy_ev: np.ndarray, scale_ev: float, exposure_ratio: float) -> tuple:
    """Where the Li-K tail is linearised: the low loss smoothed above each row's threshold (:func:`_smooth_plural`)
    and the tail's steps there (:func:`tail_linearisation`), for :func:`binned_tail` and :func:`tail_covariance`."""
    span, step, thr_ev, _ = _tail_steps(ll, energy_ev, scale_ev, exposure_ratio)
    smooth = _smooth_plural(ll.electrons, ll.threshold, ll.axis.scale_ev)
    return smooth, tail_linearisation(smooth, ll.axis, ll.centre_ev, thr_ev, step, span, BAYES_TAIL_FWHM_EV)


def binned_tail(ll: LowLoss, energy_ev: np.ndarray, scale_ev: float, exposure_ratio: float,
                point: tuple | None = None) -> np.ndarray:
    """The Li-K window's fixed multiple scattering per bin (rows, bins), electrons: each row's from its own low loss
    (the tail of :func:`tail_window`, without its noise's covariance), to first order about the smoothed low loss
    L' (``point``, :func:`tail_point`): T(L') + G (L - L'), G the tail's steps linearised at L'.

    Its error is then G (L - L*) up to second order in L' - L*, which the smoothing over ~10 channels and 9 rows
    makes small: exactly the noise :func:`tail_covariance` describes.  The Fourier log of the row's own L, T(L),
    is not linear in L's noise where the low loss holds few electrons per channel: at 1/10 of the default dose
    (0.2-2 electrons per 0.05 eV channel above 80 eV loss, readout 2 e) its error outside the nuisance directions
    was 2.8x the data's variance per bin (median row; T(L) - T_lin there equals T(L) - T*), the Li-K window's
    chi2_red at the truth 5.5, and the MAP wandered (background exponents to their bounds, Ti3+ boundary off by
    tens of sigma); with T(L') + G (L - L') 0.002 and 0.90.  At the default dose 0.039 -> 0.005 (measured, seeds
    67000 and 66000, validation/06 designs)."""
    span, step, thr_ev, factor = _tail_steps(ll, energy_ev, scale_ev, exposure_ratio)
    smooth, lin = tail_point(ll, energy_ev, scale_ev, exposure_ratio) if point is None else point
    from ..deconvolve import _resample

    dj = _resample(ll.electrons - smooth, ll.axis, step)[0][:, :lin.keep] * lin.taper
    dz = dj * lin.mask
    change = np.where(lin.ok, lin.h1 * sfft.rfft(dj, n=lin.n, axis=1) + lin.h2 * sfft.rfft(dz, n=lin.n, axis=1), 0.0)
    # T = I_0 irfft[g (q - 1 - ln q)] (plural_tails' steps, lin.ex its transform's part), dT as tail_covariance's
    tail = (lin.i0 + dz.sum(1))[:, None] * lin.ex + lin.i0[:, None] * sfft.irfft(change, n=lin.n, axis=1)[:, :lin.m]
    tail = np.where(np.all(np.isfinite(tail), axis=1, keepdims=True), tail, 0.0)   # as plural_unscattered
    nb, b = energy_ev.shape
    return rows_at(tail * factor, step, energy_ev.reshape(-1), ll.centre_ev, slopes=False).reshape(-1, nb, b).sum(-1)


def tail_window(ll: LowLoss, energy_ev: np.ndarray, scale_ev: float, exposure_ratio: float,
                row_var: np.ndarray, row_step: int | None = None) -> PluralWindow:
    """The Li-K window's fixed multiple scattering per bin (electrons), each row's from its own low loss,
    and that tail's noise as per-row nuisance columns.

    ``energy_ev`` (bins, bin) the channel centres summed into each bin on the stored axis, ``scale_ev``
    the window's channel width, ``exposure_ratio`` core-loss over low-loss exposure, ``row_var`` (rows, bins)
    the data's noise variance (electrons^2), which whitens the tail's noise.

    The tail's noise (the low loss's shot noise through the Fourier log, times the exposure ratio, 250 for
    the default instrument) is 1.2-2.6 x the core loss's own per bin (t/lambda 0.31-0.92) and smooth in energy,
    so it lies in a few smooth directions, as the Li-K edge and its background do.  Its covariance per row is
    the exact linearisation of the tail's steps (:func:`tail_covariance`), evaluated on the low loss
    smoothed in energy and over rows (:func:`_smooth_plural`: the columns then do not carry the row's own noise).  Whitened
    by the data's noise, each row's covariance is split by its own eigen-decomposition: the directions with
    whitened variance above :data:`ROW_TAIL_KEEP` are per-row amplitude columns with a N(0, 1) prior
    (marginalised with the other linear amplitudes, :mod:`.likelihood`); the rest's diagonal is added to the
    data's variance.  The rows' tails are not denoised across rows: their errors are then independent from
    row to row (the denoised tail's error, shared by every row, made the c_Li pulls' sd 3-12: validation/16).

    ``row_step`` (the plan's, :mod:`sreels.plan.fisher`, on a noise-free low loss; never a measured image's fit): the
    covariance on every ``row_step``-th row only, the rows between from their two neighbours'
    (:func:`_tail_noise_columns_sampled`)."""
    y = ll.electrons
    rows = y.shape[0]
    span, step, thr_ev, factor = _tail_steps(ll, energy_ev, scale_ev, exposure_ratio)
    point = tail_point(ll, energy_ev, scale_ev, exposure_ratio)
    binned = binned_tail(ll, energy_ev, scale_ev, exposure_ratio, point)
    nb, b = energy_ev.shape
    e = energy_ev.reshape(-1)
    # the noise of the whitened electrons: Poisson plus the readout's, which the low loss's few electrons per
    # channel above ~80 eV loss (2-20 at t/lambda 0.59) do not dwarf (~4 e^2)
    lin = point[0]
    if row_step is not None and int(row_step) > 1:
        cols, var = _tail_noise_columns_sampled(ll, lin, thr_ev, step, span, energy_ev, factor, row_var,
                                                int(row_step))
    else:
        w = tail_covariance(lin, np.maximum(lin, 0.0) + ll.readout_var, ll.axis, ll.centre_ev, thr_ev, step, span,
                            BAYES_TAIL_FWHM_EV, energy_ev, factor, whiten=np.sqrt(row_var), linearisation=point[1])
        cols, var = _tail_noise_columns(w, row_var, whitened=True)
    # the single-scattering valence loss under the window is a Drude tail, E^-3 [1 + O((E_p / E)^2)], not a
    # power law (local exponent -4.7 at 41 eV for E_p = 24.7 eV, Gamma = 10 eV; Egerton 2011, Eq. 3.43):
    # the model's power law plus E^-5, E^-7, E^-9 on the row's ZLP-referenced axis describe a single Drude
    # tail over 41-180 eV within 0.1 % (E_p 24-26 eV, Gamma 10 eV; 0.3 % for Pt's 30 eV, 20 eV), which still
    # moved the noise-free c_Li by -0.2 to -0.3 sigma; E^-11 and E^-13 remove that (EXTRA_POWERS); flat priors
    loss = (e[None, :] - ll.centre_ev[:, None]) / EXTRA_REF_EV
    extra = np.stack([(loss ** -q).reshape(rows, nb, b).sum(-1) for q in EXTRA_POWERS])
    prec = np.concatenate([np.zeros(len(extra)), np.ones(cols.shape[0])])
    return PluralWindow(ll.unscattered, tail=binned, extra=np.concatenate([extra, cols]), extra_prec=prec,
                        tail_var=var)


def _smooth_plural(y: np.ndarray, threshold: np.ndarray, scale_ev: float | None = None) -> np.ndarray:
    """Low-loss rows (rows, channels) with the part from each row's elastic threshold up smoothed by a
    Gaussian of :func:`lin_smooth_channels` (``scale_ev``: the channels' width in eV; None:
    :data:`LIN_SMOOTH_CHANNELS`) and over :data:`LIN_SMOOTH_ROWS` rows (normalised over that part only: the
    zero-loss peak is kept as it is and does not leak above the threshold): where the tail's noise is
    linearised.  A linearisation point that carries the row's own noise makes the covariance correlate with
    the tail's error, and the MAP's c_Li with it (-0.22 sigma at t/lambda 0.92 smoothed in energy only,
    against rows and energy; -0.24 with the noise-free low loss; 13 images paired, validation/16)."""
    sd = lin_smooth_channels(scale_ev)
    if sd <= 0:
        return y
    above = (np.arange(y.shape[1])[None, :] >= np.asarray(threshold)[:, None]).astype(float)
    nr = min(LIN_SMOOTH_ROWS, y.shape[0])
    num = uniform_filter1d(gaussian_filter1d(y * above, sd, axis=1, mode="nearest"), nr, axis=0,
                           mode="nearest")
    den = uniform_filter1d(gaussian_filter1d(above, sd, axis=1, mode="nearest"), nr, axis=0,
                           mode="nearest")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(above > 0, num / den, y)


@dataclass(frozen=True)
class TailLinearisation:
    """The tail's steps at the low loss (:func:`tail_linearisation`): lags ``e`` (keep,), FFT length ``n``, lags
    kept ``m``, taper and zero-loss mask (rows, keep), I_0 (rows,), the valid frequencies ``ok``, the kernels'
    transforms h1, h2 and the tail's excess ``ex`` (rows, m)."""

    e: np.ndarray
    keep: int
    n: int
    m: int
    taper: np.ndarray
    mask: np.ndarray
    i0: np.ndarray
    ok: np.ndarray
    h1: np.ndarray
    h2: np.ndarray
    ex: np.ndarray


def tail_linearisation(y, axis: EnergyAxis, centre_ev, threshold_ev, step_ev: float, span_ev: float,
                       fwhm_ev: float) -> TailLinearisation:
    """The steps of :func:`tail_covariance` that do not depend on the noise: the low loss ``y`` (rows, channels)
    resampled onto ``step_ev`` lags, tapered and masked, and the linearisation's kernels in Fourier space."""
    from ...forward.lowloss import zlp_tf
    from ..deconvolve import _resample

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
    mask = (e[None, :] <= thr[:, None]).astype(float)          # a prefix of the lags (e ascends)
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
    return TailLinearisation(e, keep, n, m, taper, mask, i0, ok, h1, h2, ex)


def bin_weights(energy_ev, centre, step_ev: float, m: int):
    """The binning's interpolation: each channel of ``energy_ev`` (bins, bin) less each row's ``centre`` between
    lags i and i + 1 of ``step_ev`` (of ``m``) with weights w0, w1 (0 outside the lags), each (rows, bins x bin)."""
    pos = (energy_ev.reshape(-1)[None, :] - centre[:, None]) / step_ev
    i = np.clip(np.floor(pos).astype(int), 0, m - 2)
    fr = np.clip(pos - i, 0.0, 1.0)
    inside = (pos >= 0) & (pos <= m - 1)
    return i, np.where(inside, 1.0 - fr, 0.0), np.where(inside, fr, 0.0)


def tail_covariance(counts, var, axis: EnergyAxis, centre_ev, threshold_ev, step_ev: float, span_ev: float,
                    fwhm_ev: float, energy_ev: np.ndarray, factor: float, batch: int = 4,
                    whiten=None, diagonal: bool = False, linearisation: TailLinearisation | None = None) -> np.ndarray:
    """The covariance (rows, bins, bins) of the binned multiple-scattering tail of :func:`tail_window` (the
    steps of :func:`sreels.inference.lowloss.plural_tails` at lag step ``step_ev``, times ``factor``, linearly
    interpolated at ``energy_ev`` (bins, bin) less each row's ZLP centre and summed per bin) for independent
    noise of variance ``var`` (rows, channels) in the low-loss ``counts``, linearised at ``counts``.

    Every step but the logarithm is linear: the resampling R onto ``step_ev`` channels (counts conserved;
    a step of at least one stored channel shares at most one with each neighbour and none with the lag after
    next, so R diag(var) R^T is tridiagonal; a finer step is refused: :func:`tail_step_ev`), the taper, the
    zero-loss mask Z.  With q = J / Z in Fourier space and the tail I_0 irfft[g (q - 1 - ln q)], its change is
    dT = I_0 irfft[h1 dJ + h2 dZ] + dI_0 irfft[g (q - 1 - ln q)], h1 = g (1 - 1/q) / Z, h2 = -g (q - 1) / Z,
    where the principal logarithm's branch does not matter (d ln q = dq / q).  The binning's rows B
    (interpolation weights on the lags: a few lags per bin) are correlated with the kernels k_i = irfft(h_i):
    (B dT/dJ)[b, k] = sum_a B[b, a] k_i[(a - k) mod n], a row of B times the kernel's circulant matrix, whose
    rows are windows of one array per row; B's row is a band of a few lags, the same for every bin of a row at
    the same interpolation phase (5 phases for 0.4 eV bins on 0.25 eV lags), so each bin's row is a window of
    the kernel filtered by its phase's band: one gather per bin, no transform per bin (bands equal to 1e-11
    are one phase), dZ only on the lags under the zero-loss mask.  With
    R diag(var) R^T = L L^T (L lower bidiagonal, its Cholesky factor) the covariance is the Gram matrix of
    (B G) L, symmetric by construction (where that factor does not exist, e.g. a variance zero on some
    channels, (B G) R diag(var) R^T (B G)^T).  ``whiten`` (rows, bins): the covariance divided by it on both
    sides.  ``diagonal``: only the covariance's diagonal (rows, bins), the factor's squared row norms (no Gram
    product).  ``linearisation``: :func:`tail_linearisation` of these arguments, if already made.  Checked against
    central differences (1e-9) and 2000 replicas
    (tests/bayes/test_dualeels.py) and against the per-bin transforms (tests/bayes/test_dualeels.py, 1e-12)."""
    from numpy.lib.stride_tricks import sliding_window_view

    y = np.asarray(counts, dtype=float)
    var = np.asarray(var, dtype=float)
    rows, nch = y.shape
    centre = np.asarray(centre_ev, dtype=float)
    lin = tail_linearisation(y, axis, centre, threshold_ev, step_ev, span_ev, fwhm_ev) if linearisation is None \
        else linearisation
    keep, n, m, taper, mask, i0, ok, h1, h2, ex = (lin.keep, lin.n, lin.m, lin.taper, lin.mask, lin.i0, lin.ok,
                                                   lin.h1, lin.h2, lin.ex)
    # the kernels' circulant matrices' rows a (lags 0 .. m-1) on columns k < keep: k_i[(a - k) mod n] is
    # rev_i[(m - 1 - a) + k], one contiguous window of rev_i per a
    ridx = (m - 1 - np.arange(m + keep - 1)) % n
    rev1 = sfft.irfft(np.where(ok, h1, 0.0), n=n, axis=1)[:, ridx]
    rev2 = sfft.irfft(np.where(ok, h2, 0.0), n=n, axis=1)[:, ridx]
    # the resampling's noise: a lag of at least one stored channel shares at most one with each neighbour (lags
    # k and k + 2 lie a whole lag apart); a finer one would split channels across lags (tail_step_ev's limit)
    if step_ev < axis.scale_ev * (1.0 - 1e-6):
        raise ValueError(f"tail_covariance: lag step {step_ev} eV under one stored channel of {axis.scale_ev} eV")
    r00, r01, r02 = _resampling_products(float(axis.offset_ev), float(axis.scale_ev), int(nch), float(step_ev), keep)
    if r02:
        raise ValueError(f"tail_covariance: lag step {step_ev} eV shares stored channels of {axis.scale_ev} eV "
                         "beyond its neighbours")
    d0, d1 = (r00 @ var.T).T, (r01 @ var.T).T
    # the binning B (rows, bins, lags): each bin's channels interpolated between two lags, a band of lags
    # a0 .. a0 + width - 1 per bin
    nb, b = energy_ev.shape
    i, w0, w1 = bin_weights(energy_ev, centre, step_ev, m)
    wt = np.stack([w0, w1], -1).reshape(rows, nb, 2 * b)
    lag = np.stack([i, i + 1], -1).reshape(rows, nb, 2 * b)
    a0 = lag.min(-1)
    width = int((lag - a0[..., None]).max()) + 1
    band = np.zeros((rows, nb, width))
    rr3, bb3 = np.arange(rows)[:, None, None], np.arange(nb)[None, :, None]
    np.add.at(band, (rr3, bb3, lag - a0[..., None]), wt)
    bx = np.einsum("rbt,rbt->rb", band, ex[rr3, np.minimum(a0[..., None] + np.arange(width), m - 1)])  # B ex
    # sum_a B[b, a] k[(a - k) mod n] = sum_t band[b, t] rev[m - 1 - a0 - t + k]: bins of a row with the same
    # band (the same interpolation phase: 5 per row for 0.4 eV bins on 0.25 eV lags) share one filtered rev,
    # and each bin's row is a window of it (one gather per bin instead of a product with B)
    key = np.concatenate([np.repeat(np.arange(rows), nb)[:, None], np.round(band, 11).reshape(rows * nb, width)], 1)
    _, first, cls = np.unique(key, axis=0, return_index=True, return_inverse=True)
    cls = cls.reshape(rows, nb)
    start = m - 1 - a0                      # each bin's window
    nz = max(int(mask.sum(1).max()), 1)     # the zero-loss mask: lags 0 .. nz - 1 at most
    length = m + keep - 1

    def filtered(rev):                      # (classes, length): sum_t beta_t rev[j - t], rev zero below 0
        pad = np.concatenate([np.zeros((rows, width - 1)), rev], 1)
        beta, crow = band.reshape(rows * nb, width)[first], first // nb
        out = np.zeros((first.size, length))
        for t in range(width):
            out += beta[:, t, None] * pad[crow, width - 1 - t:width - 1 - t + length]
        return out

    filt1, filt2 = filtered(rev1), filtered(rev2)
    scale = factor * i0[:, None] * taper                         # (rows, keep)
    # S = R diag(var) R^T = L L^T, L lower bidiagonal (diagonal ld, below it ls): (B G) L is the covariance's
    # factor, whose Gram matrix is symmetric by construction; the recursion needs S positive definite
    ld, ls = np.empty((rows, keep)), np.zeros((rows, keep))
    with np.errstate(divide="ignore", invalid="ignore"):
        ld[:, 0] = np.sqrt(d0[:, 0])
        for k in range(1, keep):            # along the lags, every row at once
            ls[:, k - 1] = d1[:, k - 1] / ld[:, k - 1]
            ld[:, k] = np.sqrt(d0[:, k] - ls[:, k - 1] ** 2)
    chol = bool(np.all(np.isfinite(ld)) and np.all(ld > 1e-6 * np.sqrt(d0.max(1, keepdims=True))))
    out = np.empty((rows, nb) if diagonal else (rows, nb, nb))
    if chol:
        fd, fs = scale * ld, scale[:, 1:] * ls[:, :-1]          # (B G) L without the zero-loss terms
        fbuf, tbuf = np.empty((min(batch, rows), nb, keep)), np.empty((min(batch, rows), nb, keep - 1))
    win1, win2 = sliding_window_view(filt1, keep, axis=-1), sliding_window_view(filt2, nz, axis=-1)
    for s in range(0, rows, batch):  # row batches bound the temporaries
        sl = slice(s, min(s + batch, rows))
        nr = sl.stop - sl.start
        bg = win1[cls[sl], start[sl]]                                            # (batch, bins, keep)
        zl = factor * (i0[sl, None, None] * win2[cls[sl], start[sl]] + bx[sl, :, None]) * mask[sl, None, :nz]
        if chol:
            f, t = fbuf[:nr], tbuf[:nr]
            np.multiply(bg, fd[sl, None, :], out=f)
            np.multiply(bg[..., 1:], fs[sl, None, :], out=t)
            f[..., :-1] += t
            f[..., :nz] += zl * ld[sl, None, :nz]
            f[..., :nz - 1] += zl[..., 1:] * ls[sl, None, :nz - 1]
            if diagonal:
                out[sl] = np.einsum("rbk,rbk->rb", f, f)
            else:
                np.matmul(f, np.swapaxes(f, 1, 2), out=out[sl])
        else:                               # S product
            bg *= scale[sl, None, :]
            bg[..., :nz] += zl
            y1 = bg * d0[sl, None, :]
            y1[..., :-1] += bg[..., 1:] * d1[sl, None, :]
            y1[..., 1:] += bg[..., :-1] * d1[sl, None, :]
            out[sl] = np.einsum("rbk,rbk->rb", y1, bg) if diagonal else y1 @ np.swapaxes(bg, 1, 2)
        if whiten is not None:
            wsc = 1.0 / np.asarray(whiten[sl], dtype=float)
            out[sl] *= wsc ** 2 if diagonal else wsc[:, :, None] * wsc[:, None, :]
    return out


@functools.lru_cache(maxsize=8)
def _resampling_products(offset_ev: float, scale_ev: float, nch: int, step_ev: float, keep: int) -> tuple:
    """The resampling R (keep lags x nch stored channels, :func:`sreels.inference.deconvolve._resample`'s) as
    the sparse products giving R diag(var) R^T's diagonal and first off-diagonal, and whether any lag shares a
    channel with the lag after next (cached: the same axis for every image)."""
    rt = _resampling_matrix(offset_ev, scale_ev, nch, step_ev, keep)
    return rt.multiply(rt).tocsr(), rt[:-1].multiply(rt[1:]).tocsr(), bool(abs(rt[:-2].multiply(rt[2:])).sum() > 0)


def _resampling_matrix(offset_ev: float, scale_ev: float, nch: int, step_ev: float, keep: int):
    """R (keep lags x nch stored channels, sparse) of :func:`sreels.inference.deconvolve._resample` built from its
    formula instead of resampling the (nch, nch) identity: the cumulative sum of channel c's unit impulse,
    interpolated linearly between the channels' edges, is clip(x - c, 0, 1) at edge position x (in channels), so
    R[k, c] = clip(x_k+1 - c, 0, 1) - clip(x_k - c, 0, 1) with x_k the lag edges' positions (nonzero on the few
    channels a lag overlaps)."""
    from ..deconvolve import _resample

    ax = EnergyAxis(offset_ev, scale_ev, nch)
    if abs(scale_ev - step_ev) < 1e-6 * step_ev:                       # _resample's own: no resampling
        return sparse.identity(nch, format="csr")[:keep]
    new = _resample(np.zeros((1, nch)), ax, step_ev)[1]                # the lags' axis _resample makes
    lo_edge = offset_ev - 0.5 * scale_ev
    x = np.clip((new.offset_ev - 0.5 * step_ev + step_ev * np.arange(keep + 1) - lo_edge) / scale_ev, 0.0, nch)
    width = int(np.ceil(step_ev / scale_ev)) + 2
    c = np.floor(x[:-1]).astype(int)[:, None] - 1 + np.arange(width)[None, :]   # (keep, width) candidate channels
    v = np.clip(x[1:, None] - c, 0.0, 1.0) - np.clip(x[:-1, None] - c, 0.0, 1.0)
    ok = (c >= 0) & (c < nch) & (v != 0.0)
    k = np.broadcast_to(np.arange(keep)[:, None], c.shape)
    return sparse.csr_matrix((v[ok], (k[ok], c[ok])), shape=(keep, nch))


def _tail_noise_columns(cov: np.ndarray, row_var: np.ndarray, whitened: bool = False) -> tuple:
    """Per-row nuisance columns (Q, rows, bins), prior N(0, 1), and the remaining variance (rows, bins) of
    a noise of covariance ``cov`` (rows, bins, bins), for data of noise variance ``row_var`` (rows, bins):
    each row's whitened covariance's eigenvectors with eigenvalue above :data:`ROW_TAIL_KEEP`, scaled by
    the square root of it (Q the most any row keeps; a row's further columns are its next eigenvectors),
    from :func:`_leading_eigh`.  ``whitened``: ``cov`` is already divided by sqrt(row_var) on both sides."""
    sd = np.sqrt(row_var)
    w = cov if whitened else cov / (sd[:, :, None] * sd[:, None, :])
    lam, vec = _leading_eigh(w, ROW_TAIL_KEEP)                     # descending, per row
    q = int(np.max(np.sum(lam > ROW_TAIL_KEEP, axis=1)))
    lam_k, v = np.maximum(lam[:, :q], 0.0), vec[:, :, :q]          # (rows, q), (rows, bins, q)
    cols = np.transpose(v * np.sqrt(lam_k)[:, None, :], (2, 0, 1)) * sd[None]
    rest = np.einsum("rbb->rb", w) - np.einsum("rbq,rq->rb", v ** 2, lam_k)
    return cols, np.maximum(rest, 0.0) * row_var


#: the sampled tail covariance (:func:`_tail_noise_columns_sampled`): the leading eigenpairs kept per sampled row,
#: those with whitened variance above this times :data:`ROW_TAIL_KEEP` in any sampled row (28 of the default
#: design's 24 above 1; 24, 28 or 32 pairs gave the same columns within 1e-5, measured)
SAMPLED_FLOOR = 0.05
#: ... and the sampled rows' refinement (:func:`sampled_rows`): an interval between sampled rows is halved while a row
#: inside it differs from the linear interpolation of its ends' smoothed plural part by more than this (relative, the
#: norm over channels)
SAMPLED_TOL = 1e-2


def _between(samp: np.ndarray, rows: int) -> tuple:
    """For every row: the index j of the sampled row at or before it, the sampled rows a <= r <= b around it and
    its place t in [0, 1] between them (a sampled row: t = 0)."""
    r = np.arange(rows)
    j = np.clip(np.searchsorted(samp, r, side="right") - 1, 0, max(samp.size - 2, 0))
    jb = np.minimum(j + 1, samp.size - 1)
    a, b = samp[j], samp[jb]
    return j, jb, np.where(b > a, (r - a) / np.maximum(b - a, 1), 0.0)


def sampled_rows(lin: np.ndarray, threshold, row_step: int, unscattered) -> np.ndarray:
    """The rows (sorted indices) on which :func:`_tail_noise_columns_sampled` computes the tail's covariance: every
    ``row_step``-th, the last, the rows beside a jump of the unscattered fraction (:func:`mixed_rows`), and more
    where the smoothed low loss ``lin``'s part above the elastic ``threshold`` (channels) is not linear between
    them within :data:`SAMPLED_TOL` (intervals halved: near the jump, which the smoothing over rows spreads)."""
    rows = lin.shape[0]
    samp = np.unique(np.r_[np.arange(0, rows, max(int(row_step), 1)), rows - 1,
                           np.flatnonzero(mixed_rows(unscattered))]).astype(int)
    p = np.where(np.arange(lin.shape[1])[None, :] >= np.asarray(threshold)[:, None], lin, 0.0)
    nrm = np.maximum(np.linalg.norm(p, axis=1), 1e-300)
    while samp.size < rows:
        j, jb, t = _between(samp, rows)
        dev = np.linalg.norm(p - p[samp[j]] * (1.0 - t)[:, None] - p[samp[jb]] * t[:, None], axis=1) / nrm
        bad = np.unique(j[dev > SAMPLED_TOL])
        if not bad.size:
            break
        samp = np.union1d(samp, (samp[bad] + samp[bad + 1]) // 2)
    return samp


def _tail_noise_columns_sampled(ll: LowLoss, lin: np.ndarray, thr_ev, step: float, span: float, energy_ev,
                                factor: float, row_var: np.ndarray, row_step: int) -> tuple:
    """:func:`_tail_noise_columns` of the tail's covariance taken on the rows of :func:`sampled_rows` only.

    For a low loss that changes slowly along the rows (the plan's noise-free image): each sampled row's covariance
    C_s (:func:`tail_covariance` on that row alone), whitened by its own data's noise, keeps its leading eigenpairs
    (:data:`SAMPLED_FLOOR`) as an unwhitened factor L_s (C_s ~ L_s L_s'; the pairs left out are far below
    :data:`ROW_TAIL_KEEP` and go, with every other, into the remaining diagonal).  A row r between sampled
    rows a and b takes C_r = (1 - t) C_a + t C_b (t its place between them), whose factor is [sqrt(1 - t) L_a,
    sqrt(t) L_b]; whitened by row r's own noise, its eigen-problem is that of the factor's small Gram matrix (twice
    the pairs kept, square) instead of the (bins x bins) one; the diagonal C_r's exact one interpolated likewise."""
    rows = lin.shape[0]
    samp = sampled_rows(lin, ll.threshold, row_step, ll.unscattered)
    cs = tail_covariance(lin[samp], np.maximum(lin[samp], 0.0) + ll.readout_var, ll.axis, ll.centre_ev[samp],
                         np.asarray(thr_ev)[samp], step, span, BAYES_TAIL_FWHM_EV, energy_ev, factor)
    sd = np.sqrt(row_var)
    ssd = sd[samp]
    lam, vec = _leading_eigh(cs / (ssd[:, :, None] * ssd[:, None, :]), ROW_TAIL_KEEP)   # descending
    k = max(int(np.max(np.sum(lam > SAMPLED_FLOOR * ROW_TAIL_KEEP, axis=1))), 1)
    lam, vec = np.maximum(lam[:, :k], 0.0), vec[:, :, :k]
    fac = vec * np.sqrt(lam)[:, None, :] * ssd[:, :, None]              # (samples, bins, k): C_s ~ fac fac'
    diag = np.einsum("sbb->sb", cs)
    j, jb, t = _between(samp, rows)      # each row between two sampled ones (a sampled row: t = 0)
    d = diag[j] * (1.0 - t)[:, None] + diag[jb] * t[:, None]
    ab = np.stack([np.sqrt(1.0 - t), np.sqrt(t)], 1).repeat(k, 1)       # (rows, 2k): the factor's column weights
    nb = row_var.shape[1]
    # each row's whitened factor X = [sqrt(1 - t) L_a, sqrt(t) L_b] / sd: its Gram matrix X' X, for the rows between
    # two sampled ones one product (rows, bins) @ (bins, (2k)^2) of their 1 / row_var with the pair's outer products
    gram = np.empty((rows, 4 * k * k))
    spans = [(np.flatnonzero(j == i), np.concatenate([fac[i], fac[min(i + 1, samp.size - 1)]], 1))
             for i in np.unique(j)]
    for r, lab in spans:
        gram[r] = (1.0 / row_var[r]) @ (lab[:, :, None] * lab[:, None, :]).reshape(nb, -1)
    gram = gram.reshape(rows, 2 * k, 2 * k) * (ab[:, :, None] * ab[:, None, :])
    mu, u = np.linalg.eigh(gram)                                       # its nonzero eigenvalues, ascending
    mu, u = mu[:, ::-1], u[:, :, ::-1]
    q = int(np.max(np.sum(mu > ROW_TAIL_KEEP, axis=1)))
    cols = np.empty((q, rows, nb))
    for r, lab in spans:                                               # unwhitened: V sqrt(mu) sd = [L_a, L_b] ab u
        cols[:, r, :] = np.transpose(np.matmul(lab, ab[r, :, None] * u[r, :, :q]), (2, 0, 1))
    rest = d - np.einsum("qrb,qrb->rb", cols, cols)
    return cols, np.maximum(rest, 0.0)


def _leading_eigh(w: np.ndarray, above: float, k: int | None = None, tol: float | None = None,
                  iterations: int | None = None) -> tuple:
    """The leading eigenpairs of symmetric matrices ``w`` (rows, n, n), descending: values (rows, k) and
    vectors (rows, n, k), at least every pair with a value above ``above`` of the row that has most and
    k - :data:`LEADING_SPARE` more.

    Subspace iteration with Rayleigh-Ritz, from the leading eigenvectors of the rows' mean matrix (the rows'
    tail covariances are alike), a few products w @ V (rows, n, k) and k x k eigen-problems per
    iteration instead of a full n x n eigen-decomposition per row; a row is converged when every wanted
    pair's residual |w x - t x| is below ``tol`` times its largest value (then the pairs are its eigenpairs to
    about that accuracy relative to the largest, as LAPACK's are to ~1e-15).  Rows not converged after
    ``iterations``, and every row when the wanted pairs do not leave LEADING_SPARE spare columns, are
    decomposed in full (numpy's eigh)."""
    rows, n = w.shape[:2]
    k = LEADING_K if k is None else int(k)
    tol = LEADING_TOL if tol is None else float(tol)
    iterations = LEADING_ITERATIONS if iterations is None else int(iterations)

    def full(m):
        lam, vec = np.linalg.eigh(m)
        return lam[:, ::-1], vec[:, :, ::-1]

    if k + LEADING_SPARE >= n or rows == 0:
        return full(w)
    _, u0 = np.linalg.eigh(w.mean(0))
    v = np.ascontiguousarray(u0[:, ::-1][:, :k])
    y = (w.reshape(rows * n, n) @ v).reshape(rows, n, k)
    v = np.broadcast_to(v, (rows, n, k))
    lam, vec, res = np.empty((rows, k)), np.empty((rows, n, k)), np.zeros((rows, k))
    act = np.arange(rows)                   # the rows still iterated
    for it in range(iterations):
        if it:
            y = (w if act.size == rows else w[act]) @ v
        h = np.swapaxes(v, 1, 2) @ y
        th, u = np.linalg.eigh(0.5 * (h + np.swapaxes(h, 1, 2)))
        th, u = np.ascontiguousarray(th[:, ::-1]), np.ascontiguousarray(u[:, :, ::-1])
        x, wx = v @ u, y @ u
        lam[act], vec[act] = th, x
        q = int(np.max(np.sum(lam > above, axis=1)))
        if q + LEADING_SPARE > k:
            return full(w)
        # the pairs checked: those above, and at least the leading one (a Ritz value is below its eigenvalue: with
        # none above, the leading pair's convergence shows that the row has none)
        q = max(q, 1)
        d = wx[..., :q] - x[..., :q] * th[:, None, :q]
        res[act, :q] = np.sqrt(np.einsum("rnq,rnq->rq", d, d)) / np.abs(th[:, :1])
        res[act, q:] = np.inf                  # not checked: wanted if a later row has more pairs above
        bad = np.max(res[act, :q], axis=1) > tol
        if not bad.any() or it == iterations - 1:
            break
        # the next basis: w x / t, orthonormalised (Cholesky QR: its columns are nearly orthonormal already)
        act, wx, th = act[bad], wx[bad], th[bad]
        z = wx / np.maximum(th, 1e-14 * th[:, :1])[:, None, :]
        c = np.linalg.cholesky(np.swapaxes(z, 1, 2) @ z)
        v = z @ np.swapaxes(np.linalg.inv(c), 1, 2)
    bad = np.max(res[:, :q], axis=1) > tol  # q is the last iteration's, the most any row has
    if bad.any():
        lb, vb = full(w[bad])
        lam[bad], vec[bad] = lb[:, :k], vb[:, :, :k]
    return lam, vec


def mixed_rows(unscattered) -> np.ndarray:
    """Rows (bool, (rows,)) next to a jump of the unscattered fraction larger than :data:`MIXED_DU`.

    The blur along y mixes neighbouring rows after plural scattering, the model's kernels act on the
    blurred rows: exact where the kernel varies slowly, not at a sharp change of t/lambda (the Pt
    collector's edge, where the row's low loss is partly Pt's while its edges are all the electrolyte's:
    the fitted c_Li of the image moved by 0.5 sigma in a noise-free test with those rows kept)."""
    u = np.asarray(unscattered, dtype=float)
    d = np.abs(np.diff(u))
    # a measured scan's rows differ by their thickness and noise: a jump stands out of the typical step too
    jump = d > max(MIXED_DU, MIXED_TYPICAL * float(np.nanmedian(d))) if d.size else d > MIXED_DU
    out = np.zeros(u.size, bool)
    out[:-1] |= jump
    out[1:] |= jump
    return out


def plural_windows(windows, ll: LowLoss, exposure_ratio: dict, tail_row_step: int | None = None) -> tuple:
    """One :class:`PluralWindow` per prepared window (:class:`.data.WindowData`), aligned with them
    (``tail_row_step``: :func:`tail_window`'s ``row_step``, the plan's)."""
    out = []
    for wd in windows:
        w = wd.window
        if w.offset_ev >= MIN_DECONVOLVE_EV:
            out.append(kernel_window(ll, wd.bin * w.scale_ev, wd.nbins, wd.energy_ev, w.background_r,
                                     w.background_ref_ev))
        else:
            # the data's noise (the first-pass variance of .data.prepare) whitens the tail's
            row_var = np.maximum(uniform_filter(wd.data, size=(3, 7), mode="nearest"), 1.0) + wd.readout_var
            out.append(tail_window(ll, wd.energy_ev, w.scale_ev, exposure_ratio[w.name], row_var,
                                   row_step=tail_row_step))
    return tuple(out)
