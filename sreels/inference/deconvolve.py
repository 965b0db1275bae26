"""Deconvolution of core-loss windows by the low-loss window, every row at once.

:func:`fourier_ratio` (Egerton 2011, Sec. 4.3, Eq. 4.11) for windows that start above the low-loss
range, S = FT^-1[ Z J_k I_l / J_l ], reconvolved with the inversion's own resolution (model ZLP x
camera PSF) so that the fit's references still apply; the row's ZLP shift goes with the plural
scattering, and the noise gain per row (the factor on the channel variances) is returned.  Windows
that start inside the low-loss range (Li-K at 40 eV) are not deconvolved: the fit models their plural
scattering (:func:`sreels.inference.lowloss.plural_kernel`).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import NamedTuple

import numpy as np
from scipy import fft as sfft

from ..axes import EnergyAxis
from ..forward.detector import psf_kernel
from ..forward.lowloss import zlp_tf
from ..resources import fft_workers
from .rowsums import add_sums, row_mean, row_sums, sum_value


_IMAGE = contextvars.ContextVar("sreels_image_stats", default=None)


class _Sum(NamedTuple):
    """A block's sum over its rows of one average (:func:`.rowsums.row_sums`' components) and its rows."""

    comps: np.ndarray
    n: int

    @staticmethod
    def merge(parts):
        return _Sum(add_sums([p.comps for p in parts]), sum(p.n for p in parts))

    def value(self):
        return sum_value(self.comps) / max(self.n, 1)


class _Sample(NamedTuple):
    """A block's rows of an image's row sample (:func:`sampled_moments`): their indices in the image and the rows."""

    idx: np.ndarray
    rows: np.ndarray

    @staticmethod
    def merge(parts):
        return _Sample(np.concatenate([p.idx for p in parts]), np.concatenate([p.rows for p in parts]))

    def value(self):
        return _moments(self.rows[np.argsort(self.idx, kind="stable")])


class ImageStats:
    """The whole image's averages over rows that the deconvolution uses (the power laws' exponents
    from the mean spectrum, the mean ZLP shape), for an image fitted in blocks of rows
    (:mod:`.daskfit`): ``ImageStats(rows=, image_rows=)`` collects each average's part (a block's sum and
    rows, or its rows of a sample: :func:`sampled_moments`) in call order within its scope (``parts``: scope
    -> list; :func:`stats_scope`, one per window, so that a pass may leave a window out); ``rows``: the block's
    rows' indices in the image of ``image_rows`` rows.  ``ImageStats(totals)`` hands out the whole image's averages
    (:meth:`combine` of every block's parts) in the same order.  The sums do not depend on the blocks
    (:mod:`.rowsums`) nor the sample on their order: the averages are the in-memory fit's, bit for bit.

    ``held``: the results of a block's steps that no image average changes (:func:`held_step`), kept
    from an earlier pass over the same block (``held`` of that pass's ImageStats, which ``keep`` names
    the steps to fill) so that a later pass does not compute them again."""

    def __init__(self, totals=None, held=None, keep=(), rows=None, image_rows: int | None = None):
        self.totals, self.parts, self._i, self.scope = totals, {}, {}, None
        self.held, self.keep, self._calls, self._n = dict(held or {}), frozenset(keep), {}, {}
        self.rows, self.image_rows = rows, image_rows

    def _count(self):
        self._calls[self.scope] = self._calls.get(self.scope, 0) + 1

    def _take(self):
        i = self._i.get(self.scope, 0)
        self._i[self.scope] = i + 1
        return self.totals[self.scope][i]

    def step(self, name: str, fn, while_collecting: bool):
        """``fn()``, or its result held from an earlier pass (the n-th call of ``name`` in this scope)."""
        n = self._n.get((self.scope, name), 0)
        self._n[(self.scope, name)] = n + 1
        key = (self.scope, name, n)
        if key in self.held and self.totals is not None:  # the averages fn took are skipped in their order
            value, taken = self.held[key]
            self._i[self.scope] = self._i.get(self.scope, 0) + taken
            self._calls[self.scope] = self._calls.get(self.scope, 0) + taken  # (a step held within another's)
            return value
        c0 = self._calls.get(self.scope, 0)
        value = fn()
        if name in self.keep and (while_collecting or self.totals is not None):
            self.held[key] = (value, self._calls.get(self.scope, 0) - c0)
        return value

    def _average(self, part, value: bool = True):
        """The whole image's average where it is handed out; else the block's ``part()`` collected and its value
        (the block's own average; None unless ``value``)."""
        self._count()
        if self.totals is not None:
            return self._take()
        p = part()
        self.parts.setdefault(self.scope, []).append(p)
        return p.value() if value else None

    def mean(self, v):
        return self._average(lambda: _Sum(row_sums(v), int(v.shape[0])))

    def mean_of(self, total, n: int):
        """As :meth:`mean` for a block's sum over its ``n`` rows given directly (e.g. a histogram; a callable:
        computed only when the block's own sum is wanted)."""
        return self._average(lambda: _Sum(row_sums(np.asarray(total() if callable(total) else total, float)[None]),
                                          int(n)))

    def sample(self, a):
        """The mean and covariance of the image's sampled rows (:func:`sampled_moments`) among this block's rows
        ``a`` (collecting: None)."""
        def part():
            if self.rows is None or self.image_rows is None:
                raise ValueError("ImageStats collecting a row sample needs the block's rows and the image's")
            keep = np.asarray(self.rows) % sample_stride(self.image_rows) == 0
            return _Sample(np.asarray(self.rows)[keep], np.asarray(a, float)[keep])
        return self._average(part, value=False)

    @staticmethod
    def add(blocks):
        """The ``parts`` of several blocks as one block's: each average's sums and rows added, its samples' rows
        gathered (a partial reduction)."""
        return {k: [type(p).merge([b[k][i] for b in blocks]) for i, p in enumerate(v)] for k, v in blocks[0].items()}

    @staticmethod
    def combine(blocks):
        """Whole-image averages (scope -> list) from the ``parts`` of every block (or of :meth:`add`'s groups)."""
        return {k: [p.value() for p in v] for k, v in ImageStats.add(blocks).items()}


@contextlib.contextmanager
def image_stats(stats: ImageStats | None):
    """Within the block, the deconvolution's whole-image averages come from (or go to) ``stats``."""
    token = _IMAGE.set(stats)
    try:
        yield stats
    finally:
        _IMAGE.reset(token)


@contextlib.contextmanager
def stats_scope(name):
    """The averages taken within are counted apart (a window's own: :class:`ImageStats`)."""
    st = _IMAGE.get()
    if st is None:
        yield
        return
    old, st.scope = st.scope, name
    try:
        yield
    finally:
        st.scope = old


def held_step(name: str, fn, while_collecting: bool = False):
    """``fn()`` (a step of a block's deconvolution that depends on its rows only, or on image averages
    already taken), or, within a :class:`ImageStats` that holds it from an earlier pass over the same
    block, its result (:mod:`.daskfit`).  ``while_collecting``: its result in a first pass, whose image
    averages are the block's own, is right (no image average reaches it) and may be kept."""
    st = _IMAGE.get()
    return fn() if st is None else st.step(name, fn, while_collecting)


def collecting() -> bool:
    """True while a block's averages are being collected (a first pass of :mod:`.daskfit`, whose
    outputs are not used): the steps after the averages they take may be skipped."""
    st = _IMAGE.get()
    return st is not None and st.totals is None


def averages_given() -> bool:
    """True while a block is handed the whole image's averages (a later pass of :mod:`.daskfit`): the same objects
    for every block that a process fits."""
    st = _IMAGE.get()
    return st is not None and st.totals is not None


def per_image(cache: dict, objs: tuple, extra, fn, size: int = 36):
    """``fn()``, remembered in ``cache`` by the identity of ``objs`` (the whole image's averages, which every block a
    process fits is handed as the same objects, :func:`averages_given`) and the hashable ``extra``: a step that
    depends on them alone is computed once per Dask worker, not once per block.  An entry keeps its objects (so that
    their ids stay theirs); at most ``size`` entries."""
    key = (tuple(map(id, objs)), extra)
    hit = cache.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], objs)):
        return hit[1]
    value = fn()
    if len(cache) >= size:
        cache.clear()
    cache[key] = (objs, value)
    return value


def _row_mean(v):
    """Mean over rows (axis 0) of the image: these rows, or the whole image's (:class:`ImageStats`); the same
    whatever the image's blocks (:func:`.rowsums.row_mean`)."""
    st = _IMAGE.get()
    return row_mean(v) if st is None else st.mean(v)


#: rows of an image whose mean and covariance :func:`sampled_moments` takes: every ``sample_stride``-th of its rows
COVARIANCE_ROWS = 2048


def sample_stride(rows: int) -> int:
    """Every how many of an image's ``rows`` a row is in its sample (all of them up to COVARIANCE_ROWS rows)."""
    return max(1, -(-int(rows) // COVARIANCE_ROWS))


def _moments(s):
    """The mean and the covariance over columns of rows ``s`` (rows, n) (one BLAS thread: the same bits whatever the
    process)."""
    from ..resources import single_threaded_blas

    mu = s.mean(0)
    d = s - mu
    with single_threaded_blas():
        return mu, (d.T @ d) / max(s.shape[0], 1)


def sampled_moments(a):
    """The mean and covariance of the image's rows from every :func:`sample_stride`-th of them (row 0, stride, ...):
    of these rows, or of the whole image's sample (:class:`ImageStats`).  A sample gathered from blocks is the same
    rows in the same order, so its moments are the in-memory fit's bit for bit, where a sum of the blocks' Gram
    matrices differed in its last bits; and it costs a block nothing (the full image's Gram matrices and exact means
    of the tails were ~5 % of a map's CPU).  Up to COVARIANCE_ROWS rows every row is in it."""
    st = _IMAGE.get()
    if st is None:
        return _moments(np.asarray(a, float)[::sample_stride(a.shape[0])])
    return st.sample(a)


def row_sum_mean(total, n: int):
    """A sum over these ``n`` rows divided by the rows: of these rows, or the whole image's; ``total`` may
    be a callable that computes the sum (not called when the whole image's is handed out)."""
    st = _IMAGE.get()
    if st is None:
        return (total() if callable(total) else total) / max(n, 1)
    return st.mean_of(total, n)


def _interp_rows(x_new, x, rows):
    """np.interp of every row at once (shared, increasing ``x``): indices and weights computed once."""
    i = np.clip(np.searchsorted(x, x_new) - 1, 0, x.size - 2)
    fr = np.clip((x_new - x[i]) / (x[i + 1] - x[i]), 0.0, 1.0)
    return rows[:, i] * (1.0 - fr) + rows[:, i + 1] * fr


def _resample(ll, axis: EnergyAxis, scale_ev: float):
    """Low-loss rows onto channels of ``scale_ev`` (counts conserved: cumulative-sum interpolation)."""
    if abs(axis.scale_ev - scale_ev) < 1e-6 * scale_ev:
        return np.asarray(ll, float), axis
    r = scale_ev / axis.scale_ev
    if abs(r - round(r)) < 1e-9 and round(r) > 1:  # whole channels per bin: sums (what the interpolation gives)
        r = int(round(r))
        n = axis.size // r
        new = EnergyAxis(axis.offset_ev + 0.5 * (r - 1) * axis.scale_ev, scale_ev, n)
        a = np.asarray(ll, float)
        return a[:, :n * r].reshape(a.shape[0], n, r).sum(2), new
    edges = axis.offset_ev - 0.5 * axis.scale_ev + axis.scale_ev * np.arange(axis.size + 1)
    n = int(np.floor((edges[-1] - edges[0]) / scale_ev))
    new = EnergyAxis(edges[0] + 0.5 * scale_ev, scale_ev, n)
    cum = np.concatenate([np.zeros((ll.shape[0], 1)), np.cumsum(ll, 1)], 1)
    ne = edges[0] + scale_ev * np.arange(n + 1)
    c = _interp_rows(ne, edges, cum)
    return np.diff(c, axis=1), new


def _end_law(block_e, block_y, rows):
    """Power law through the two halves of a block of channels: the exponent of the image's mean
    spectrum (rows,), each row's level (rows,) and the reference energy."""
    h = block_e.size // 2
    m1, m2 = block_y[:, :h].mean(1), block_y[:, h:].mean(1)
    e1, e2 = block_e[:h].mean(), block_e[h:].mean()
    g1, g2 = _row_mean(np.stack([m1, m2], 1))  # the image's mean spectrum
    r = np.log(g1 / g2) / np.log(e2 / e1) if g1 > 0 and g2 > 0 and e1 > 0 else 0.0
    r = float(np.clip(np.nan_to_num(r), -2.0, 8.0))
    return np.full(rows, r), np.where(m1 * m2 > 0, np.sqrt(np.abs(m1 * m2)), block_y.mean(1)), \
        np.sqrt(abs(e1 * e2))


def _one(r):
    """The exponent :func:`_end_law` gives every row (0 for no rows)."""
    return float(r[0]) if r.size else 0.0


def _taper(n):
    """1 over the inner half, a cosine rise over the outer half (as the first channels)."""
    t = np.ones(n)
    k = n // 2
    t[:k] = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / max(k, 1))
    return t


def _pad_laws(y, e, n_lo, n_hi, n_fit):
    """The power laws of :func:`_power_law_pad`: (lower pad's shape (n_lo,), each row's level there
    (rows,), upper pad's shape (n_hi,), each row's level there); the shapes (the image's exponent and
    the taper) are one for every row."""
    de = e[1] - e[0]
    r0, a0, ea = _end_law(e[:n_fit], y[:, :n_fit], y.shape[0])
    r1, a1, eb = _end_law(e[-n_fit:], y[:, -n_fit:], y.shape[0])
    elo = e[0] - de * np.arange(n_lo, 0, -1)
    ehi = e[-1] + de * np.arange(1, n_hi + 1)
    floor = 0.25 * max(abs(e[0]), de)
    return ((np.maximum(elo, floor) / ea) ** (-_one(r0)) * _taper(n_lo), a0,
            (ehi / eb) ** (-_one(r1)) * _taper(n_hi)[::-1], a1)


def _padded(y, laws, rows=slice(None), width=None, dtype=float):
    """Rows ``rows`` of ``y`` extended by :func:`_pad_laws`' power laws (then zeros up to ``width``)."""
    lo, a0, hi, a1 = laws
    y = y[rows]
    size = lo.size + y.shape[1] + hi.size
    out = np.empty((y.shape[0], size), dtype) if width is None or width <= size else np.zeros((y.shape[0], width), dtype)
    out[:, :lo.size] = a0[rows, None] * lo[None, :]
    out[:, lo.size:lo.size + y.shape[1]] = y
    out[:, lo.size + y.shape[1]:size] = a1[rows, None] * hi[None, :]
    return out


def _power_law_pad(y, e, n_lo, n_hi, n_fit):
    """Extend rows below and above by power laws fitted to ``n_fit`` channels at each end, then a
    cosine taper to zero over the outer half of each pad.  The exponent is the two-area estimate of
    the image's mean spectrum (one per end: a row's own would carry ~0.3 of shot noise over 6 eV and
    misplace what the deconvolution removes), the level each row's own."""
    return _padded(y, _pad_laws(y, e, n_lo, n_hi, n_fit))


#: precision of :func:`fourier_ratio`'s transforms (float64: as before, ~2x the CPU time)
FR_DTYPE = np.float32
#: rows per batch of the FFT steps (each row is transformed on its own; batches bound the temporaries
#: of a large block of rows and keep them in cache)
ROW_BATCH = 256
#: how far beyond its end the low loss is extended by a power law (eV; :func:`extended_low_loss`; tapered over
#: the outer half).  The deconvolution of a window needs the plural kernel up to the loss between the bottom of
#: its lower pad (:data:`PAD_LO_EV`) and its end: 625 - 210 = 415 eV for the study's O-K window, 220 eV beyond
#: a low loss recorded to 195 eV.  With 160 eV (full to 275 eV) and that pad the deconvolved O-K post-edge
#: kept part of what plural scattering moved up from the pad, and li_per_fu_o read 5 % low at t/lambda 0.89
#: (noise-free, 165-row image); 400 and 550 eV give the same within 0.01 %, and li_per_fu_o / li_per_fu - 1
#: <= +0.25 % (measured)
EXTEND_EV = 400.0
#: how far below its start a core-loss window is extended by a power law for :func:`fourier_ratio` (eV; at
#: most half the window's start energy, where a power law still describes a background).  The inverse
#: kernel reaches as far as the low loss's shallow edges (Al/Si/P-L2,3 at 73-132 eV) and multiple plasmons
#: (~200 eV) and weighs the spectrum there, which a measured window does not record but which continues
#: below it: with 128 eV (a cosine taper over the outer 64) the deconvolved background under Ti-L2,3 was
#: not a power law and the Ti3+ fraction of Ti4+ rows read +0.31-0.33 sigma at t/lambda 0.9 (noise-free,
#: a forward background cut 205-269 eV below the window), with 210 eV (this pad at 420 eV) within 0.05 sigma
#: (170-210 eV: within 0.0002 of the truth; measured)
PAD_LO_EV = 256.0


def extended_low_loss(ll, ll_axis: EnergyAxis, scale_ev: float, extend_ev: float = EXTEND_EV):
    """Low-loss rows on channels of ``scale_ev``, extended beyond the window's end by a power law fitted
    to its last 20 eV over ``extend_ev`` (tapered; as exspy's ``extrapolate_lowloss``): the plural tail
    beyond a ~200 eV window (plasmon tails, Al/Si/P-L continua).  Returns the rows (the extension
    appended after the window's channels) and the resampled window's axis.  Their row sums are the
    total I_t of :func:`low_loss_total`."""
    ll, ll_axis = _resample(np.asarray(ll, dtype=float), ll_axis, scale_ev)
    if extend_ev > 0:  # the plural tail beyond the low loss's end (plasmon and inner-shell continua)
        ll = _power_law_pad(ll, ll_axis.energy_ev, 0, int(round(extend_ev / scale_ev)), int(round(20.0 / scale_ev)))
    return ll, ll_axis


def low_loss_total(ll, ll_axis: EnergyAxis, scale_ev: float, extend_ev: float = EXTEND_EV):
    """Every electron of each row, I_t, as :func:`fourier_ratio` normalises the windows above by it (the
    row sums of :func:`extended_low_loss`), and the image's mean I_t.

    :func:`.lowloss.plural_kernel`'s unscattered fraction I_0 / I_t divides by the same I_t, so that the
    Li-K window below and the Ti-L2,3 window above are on one scale.  The mean is the row means of the
    window's counts and of the extension's level combined with the image's exponent (not a mean of the
    rows' totals, whose exponent a block of rows would take from its own rows: :class:`ImageStats`).
    Returns (total (rows,), mean total)."""
    ll, ax = _resample(np.asarray(ll, dtype=float), ll_axis, scale_ev)
    win = ll.sum(1)
    if extend_ev <= 0:
        return win, float(_row_mean(win[:, None])[0])
    n_fit, n_hi = int(round(20.0 / scale_ev)), int(round(extend_ev / scale_ev))
    e = ax.energy_ev
    r, a, eb = _end_law(e[-n_fit:], ll[:, -n_fit:], ll.shape[0])
    # the extension of a row of unit level (its shape: the image's exponent, tapered)
    f = float(np.sum(((e[-1] + scale_ev * np.arange(1, n_hi + 1)) / eb) ** (-r[0]) * _taper(n_hi)[::-1]))
    m_win, m_a = _row_mean(np.stack([win, a], 1))
    return win + a * f, float(m_win + m_a * f)


def fourier_ratio(core, core_axis: EnergyAxis, ll, ll_axis: EnergyAxis, fwhm_ev: float, tail_ev: float = 0.0,
                  psf_decay: float = 0.0, gain=1.0, readout=0.0, pad_ev: float = PAD_LO_EV, extend_ev: float = EXTEND_EV,
                  dtype=float):
    """Fourier-ratio deconvolution of core-loss rows by their low-loss rows.

    S(f) = Z(f) J_k(f) conj(J_l(f)) I_l / (|J_l(f)|^2 + eps^2),   Z = ZLP(fwhm, tail) x PSF,
    eps^2 = g I_l + n rd^2 the white-noise power of J_l per frequency (a Wiener guard that acts
    only where the low loss's own noise dominates).  The core rows are extended by power laws
    (fitted to the first and last 20 eV) over ``pad_ev`` below (at most half the window's
    start energy; :data:`PAD_LO_EV`) and 64 eV above, tapered to zero, so that the circular
    convolution neither wraps nor truncates.  The low loss is extended beyond its end by a power law fitted to its last
    20 eV over ``extend_ev`` (tapered; as exspy's ``extrapolate_lowloss``): its plural tail beyond a
    ~200 eV window (plasmon tails, Al/Si/P-L continua) would otherwise stay in the deconvolved
    window (peak "b" +0.7 sigma at t/lambda 0.9 without it, measured).  The low loss is placed with
    0 eV of its stored axis at lag 0, so the row's ZLP shift is removed along with the plural
    scattering.

    Noise: S = J_k (*) h with h = FT^-1[Z I_l / J_l] ~ e^(t/lambda) delta - (smooth terms): the noise
    spectrum is multiplied by |H(f)|^2, ~1 for structures broader than the plasmon (f -> 0) and
    ~exp(2 t/lambda) for the 1-10 eV structures the edge fits resolve.  ``factor`` is the mean
    |H(f)|^2 over 0.1-1 cycles/eV, the band of those structures: it scales the fit's per-channel
    variances (white-noise weights), so errors of edge shapes and peak positions are right and
    those of broad amplitudes somewhat conservative.  The low loss's own shot noise is not
    propagated: replacing it by its noise-free expectation changes no pull statistic of the
    default image by more than 0.05 (measured).

    Returns
    -------
    deconvolved : (rows, channels) on ``core_axis``, of ``dtype``: float64, or None: the transforms' own precision
        (:data:`FR_DTYPE`), which holds the same values (half the memory where a Dask fit holds them between passes)
    factor : (rows,) variance inflation of a channel
    """
    core = np.asarray(core, dtype=float)
    de = core_axis.scale_ev
    # the power laws first, in this order (the image's averages, :class:`ImageStats`): the low loss's, the core's
    ll, ll_axis = _resample(np.asarray(ll, dtype=float), ll_axis, de)
    n_ext = int(round(extend_ev / de)) if extend_ev > 0 else 0
    ll_laws = _pad_laws(ll, ll_axis.energy_ev, 0, n_ext, int(round(20.0 / de))) if n_ext else None
    n_lo = int(round(min(pad_ev, 0.5 * max(core_axis.offset_ev, 0.0)) / de))
    n_hi = int(round(64.0 / de))
    n_fit = min(int(round(20.0 / de)), core.shape[1] // 4)
    core_laws = _pad_laws(core, core_axis.energy_ev, n_lo, n_hi, n_fit)
    nl = ll.shape[1] + n_ext
    n = sfft.next_fast_len(n_lo + core.shape[1] + n_hi + nl + 16, real=True)
    f = sfft.rfftfreq(n, d=de)
    # low loss: channel j at lag j + o (o = offset in channels), wrapped; the fractional part as a phase
    o = ll_axis.offset_ev / de
    o_int = int(np.floor(o))
    phase = None if o == o_int else np.exp(-2j * np.pi * f * (o - o_int) * de)[None, :]
    start = o_int % n
    z = zlp_tf(f, fwhm_ev, tail_ev)
    k = psf_kernel(psf_decay)
    kk = np.zeros(n)
    kk[(np.arange(k.size) - k.size // 2) % n] = k
    zk = (z * sfft.rfft(kk).real)[None, :]
    band = (f >= 0.1) & (f <= 1.0)
    zk2 = np.abs(zk[:, band]) ** 2
    rows = core.shape[0]
    if collecting():  # the image's averages are taken (above); the deconvolution itself is not used
        return np.zeros(core.shape), np.ones(rows)
    out, factor = np.empty(core.shape, FR_DTYPE if dtype is None else dtype), np.empty(rows)
    # the transforms and the ratio in single precision (half the cost): their rounding, ~1e-7 of a row's
    # largest values, is ~1e-3 of a channel's shot noise in the deconvolved window (measured: FR_DTYPE)
    zk = zk.astype(FR_DTYPE)
    if phase is not None:
        phase = phase.astype(np.result_type(FR_DTYPE, np.complex64))
    for b0 in range(0, rows, ROW_BATCH):  # every row on its own: batches bound the temporaries
        sl = slice(b0, min(b0 + ROW_BATCH, rows))
        ext = _padded(ll, ll_laws, sl) if n_ext else ll[sl]
        kern = np.zeros((ext.shape[0], n), FR_DTYPE)
        k1 = min(nl, n - start)
        kern[:, start:start + k1] = ext[:, :k1]
        kern[:, :nl - k1] = ext[:, k1:]
        jl = sfft.rfft(kern, axis=1, workers=fft_workers())
        if phase is not None:
            jl *= phase
        il = jl[:, :1].real
        p2 = jl.real ** 2 + jl.imag ** 2
        r = il / (p2 + (gain * np.abs(il) + nl * readout**2))
        h = np.conj(jl)
        h *= zk
        h *= r
        jk = sfft.rfft(_padded(core, core_laws, sl, width=n, dtype=FR_DTYPE), n=n, axis=1,
                       workers=fft_workers())  # (no copy)
        jk *= h
        out[sl] = sfft.irfft(jk, n=n, axis=1, workers=fft_workers())[:, n_lo:n_lo + core.shape[1]]
        factor[sl] = np.mean(zk2 * p2[:, band] * r[:, band] ** 2, axis=1)
    return out, factor
