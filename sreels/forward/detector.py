"""The camera: electrons in, digital counts out.

Poisson electron arrivals; conversion gain (counts per electron); a point-spread
function that spreads each electron's signal over neighbouring pixels (and so
correlates their noise); gain non-uniformity; Gaussian readout noise; dark offset;
16-bit quantisation and saturation; optional dark subtraction as Digital
Micrograph does.  Every random draw comes from the caller's ``numpy.random.Generator``.

Noise-free expectation: E[counts] = gain * (PSF * electrons) (+ dark offset if not
subtracted).  Variance without saturation: gain^2 * sum(k^2) * electrons + readout^2
for a locally flat image, sum(k^2) the PSF kernel's squared sum (1 without PSF).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import convolve1d

from ..config import Detector


def psf_kernel(decay: float) -> np.ndarray:
    """1-D exponential PSF kernel k_n ~ decay^|n|, unit sum, truncated below 1e-5."""
    if decay <= 0:
        return np.ones(1)
    half = int(np.ceil(np.log(1e-5) / np.log(decay)))
    k = decay ** np.abs(np.arange(-half, half + 1))
    return k / k.sum()


def psf_variance_factor(decay: float) -> float:
    """sum(k^2): the PSF's reduction of per-pixel shot-noise variance."""
    k = psf_kernel(decay)
    return float(np.sum(k**2))


def apply_psf(image: np.ndarray, decay: float) -> np.ndarray:
    """PSF along energy (axis -1); 'reflect' edges keep counts.

    An SR-EELS row is a group of CCD rows binned on chip (2048 -> 330 in the study, ~6
    pixels per row), so the ~1-pixel point spread mixes neighbouring energy channels but
    hardly neighbouring rows; the spread along y is the instrument's spatial blur."""
    if decay <= 0:
        return image
    k = psf_kernel(decay)
    return convolve1d(image, k.astype(image.dtype) if image.dtype == np.float32 else k, axis=-1, mode="reflect")


def gained_psf(counts: np.ndarray, det: Detector) -> np.ndarray:
    """gain x PSF of float32 electron counts (the gain folded into the PSF kernel: one pass fewer)."""
    if det.psf_decay > 0:
        k = (psf_kernel(det.psf_decay) * det.gain_counts_per_e).astype(np.float32)
        return convolve1d(counts, k, axis=-1, mode="reflect")
    counts *= np.float32(det.gain_counts_per_e)
    return counts


def expected_counts(electrons: np.ndarray, det: Detector) -> np.ndarray:
    """Noise-free counts for expected electrons (no quantisation, no saturation)."""
    out = det.gain_counts_per_e * apply_psf(np.asarray(electrons, dtype=float), det.psf_decay)
    return out if det.dark_subtracted else out + det.dark_offset_counts


#: Expected electrons per pixel from which the Poisson draw is replaced by its Cornish-Fisher
#: approximation (:func:`poisson_counts`).  At 100 e the approximation's distribution (computed exactly
#: from the normal's) differs from Poisson(100) by a Kolmogorov distance of 8.3e-5 and a chi-square
#: divergence of 5.2e-7: a KS test needs ~3e8 draws at that mean, a chi-square test ~4e8, to tell them
#: apart (the plain rounded Gaussian: 4e4 and 6e4); above 100 e both fall as ~1/mean and 1/mean^2
#: (at 1000 e: 3e10 and 2e11 draws).  A default image has 2e6 pixels.
POISSON_EXACT_BELOW_E = 100.0


def poisson_cornish_fisher(lam: np.ndarray, rng: np.random.Generator, scale: np.ndarray | None = None) -> np.ndarray:
    """Poisson(lam) draws for lam >= ~30, float32: round(lam + a Z + (Z^2 - 1) / 6), Z standard normal.

    The Cornish-Fisher expansion of the Poisson quantile to order lam^-1/2 (the (Z^2 - 1) / 6 term
    gives the third cumulant lam: skewness 1 / sqrt(lam)); a = sqrt(lam - 1/12 - 1/18) makes the
    variance lam exactly after the rounding (+1/12, Sheppard) and the quadratic term (+2/36).  Mean,
    variance and third cumulant are Poisson's to O(1); the fourth cumulant is 4/3 lam instead of lam.
    Costs one float32 normal draw per pixel (~4x faster than ``Generator.poisson``).  ``lam`` may be
    given as float32 with ``scale`` = :func:`cornish_fisher_scale` of it (precomputed: the same draws)."""
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    lam32 = lam.astype(np.float32, copy=False)
    # lam + a z + (z^2 - 1) / 6 = z (a + z / 6) + (lam - 1/6): four float32 passes
    x = z * np.float32(1.0 / 6.0)
    x += cornish_fisher_scale(lam32) if scale is None else scale
    x *= z
    x += lam32
    x -= np.float32(1.0 / 6.0)
    np.rint(x, out=x)
    return np.maximum(x, 0.0, out=x)


def cornish_fisher_scale(lam32: np.ndarray) -> np.ndarray:
    """a = sqrt(lam - 5/36) in float32 (:func:`poisson_cornish_fisher`)."""
    return np.sqrt(lam32 - np.float32(5.0 / 36.0))


@dataclass(frozen=True)
class CountsPlan:
    """What the electron-count draw of one image of expected electrons needs that does not depend on
    the random draws (checked once, split once, converted once): reused for every readout of the
    same expectation (:func:`.simulate.simulate` keeps it with its cached expectation).  Drawing
    with a plan gives the same numbers as drawing without."""

    shape: tuple
    exact_below: float
    n_high: int
    lam_low: np.ndarray | None     # float64 means of the exactly drawn pixels (C order)
    low_idx: np.ndarray | None     # their flat indices (None: every pixel, or none)
    lam32_high: np.ndarray | None  # float32 means of the approximated pixels
    scale_high: np.ndarray | None  # :func:`cornish_fisher_scale` of them
    high_idx: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.lam_low, self.low_idx, self.lam32_high, self.scale_high, self.high_idx)
                   if a is not None)


def counts_plan(lam: np.ndarray, exact_below: float = POISSON_EXACT_BELOW_E) -> CountsPlan:
    """The :class:`CountsPlan` of expected electrons ``lam`` (finite, >= 0: else ValueError)."""
    lam = np.asarray(lam, dtype=float)
    if not (np.isfinite(lam.sum()) and lam.min(initial=0.0) >= 0):
        raise ValueError("expected electrons must be finite and >= 0")
    high = lam >= exact_below
    n_high = int(np.count_nonzero(high))
    if n_high == 0:
        return CountsPlan(lam.shape, exact_below, 0, lam, None, None, None, None)
    if n_high == lam.size:
        lam32 = lam.astype(np.float32)
        return CountsPlan(lam.shape, exact_below, n_high, None, None, lam32, cornish_fisher_scale(lam32), None)
    flat = lam.ravel()
    low_idx, high_idx = np.flatnonzero(~high), np.flatnonzero(high)
    lam32 = flat[high_idx].astype(np.float32)
    return CountsPlan(lam.shape, exact_below, n_high, flat[low_idx], low_idx, lam32, cornish_fisher_scale(lam32),
                      high_idx)


def poisson_counts(lam: np.ndarray, rng: np.random.Generator,
                   exact_below: float = POISSON_EXACT_BELOW_E, plan: CountsPlan | None = None) -> tuple[np.ndarray, int]:
    """Electron counts (float32) for expected electrons ``lam``: exact ``rng.poisson`` where
    lam < ``exact_below``, :func:`poisson_cornish_fisher` elsewhere.  Returns (counts, number of
    pixels drawn by the approximation).  ``exact_below = inf`` draws every pixel exactly.  ``plan``:
    :func:`counts_plan` of ``lam`` and ``exact_below``, if already made (``lam`` is then not read)."""
    if plan is None:
        plan = counts_plan(lam, exact_below)
    if plan.n_high == 0:
        return rng.poisson(plan.lam_low).astype(np.float32), 0
    if plan.high_idx is None:
        return poisson_cornish_fisher(plan.lam32_high, rng, plan.scale_high), plan.n_high
    out = np.empty(plan.shape, dtype=np.float32)
    flat = out.reshape(-1)
    flat[plan.low_idx] = rng.poisson(plan.lam_low)
    flat[plan.high_idx] = poisson_cornish_fisher(plan.lam32_high, rng, plan.scale_high)
    return out, plan.n_high


def sampling_record(exact_below: float, n_pixels: int, n_approx: int) -> dict:
    """How the electron counts were drawn (recorded in the output metadata)."""
    return {"poisson": "numpy Generator.poisson" if n_approx == 0 else
            f"numpy Generator.poisson below {exact_below:g} expected electrons per pixel, Cornish-Fisher "
            "(skew-corrected, rounded) normal approximation at and above (sreels.forward.detector)",
            "poisson_exact_below_e": float(exact_below), "pixels": int(n_pixels),
            "pixels_approximated": int(n_approx)}


@dataclass(frozen=True)
class Readout:
    counts: np.ndarray      # what the file holds
    saturated: np.ndarray   # bool mask of pixels at the ADC maximum
    gain_map: np.ndarray | None
    sampling: dict | None = None   # how the electron counts were drawn (:func:`sampling_record`)


def apply_detector(electrons: np.ndarray, det: Detector, rng: np.random.Generator,
                   exact_below: float = POISSON_EXACT_BELOW_E, plan: CountsPlan | None = None) -> Readout:
    """Draw one camera readout of an image of expected electrons per pixel.

    Electron counts by :func:`poisson_counts` (exact Poisson below ``exact_below`` expected
    electrons per pixel); the camera's stages in float32 (counts up to the 16-bit ADC maximum:
    float32 is exact to 0.004 counts there, far below the quantisation).  ``plan``: the
    :func:`counts_plan` of ``electrons`` and ``exact_below`` if already made (then not redone)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if plan is None:
        plan = counts_plan(electrons, exact_below)
    elif plan.shape != np.shape(electrons) or plan.exact_below != exact_below:
        raise ValueError("the counts plan was made for another image or switch-over")
    shape = plan.shape
    counts, n_approx = poisson_counts(None, rng, exact_below, plan)
    signal = gained_psf(counts, det)
    gain_map = None
    if det.gain_nonuniformity_rel > 0:
        gain_map = 1.0 + det.gain_nonuniformity_rel * rng.standard_normal(shape)
        signal *= gain_map.astype(np.float32)
    raw = signal
    dark = np.float32(det.dark_offset_counts)
    # a dark-subtracted readout is kept relative to the dark offset: clip and saturate at -dark and
    # max - dark (two passes fewer; rint(x + dark) = rint(x) + dark for an integer dark offset but at
    # ties and float32 rounding, i.e. never in distribution)
    rel = det.dark_subtracted and float(dark).is_integer()
    if det.readout_noise_counts > 0:
        noise = rng.standard_normal(shape, dtype=np.float32)
        noise *= np.float32(det.readout_noise_counts)
        if not rel:
            noise += dark
        raw += noise
    elif not rel:
        raw += dark
    if det.quantise:
        np.rint(raw, out=raw)
    lo, hi = (-dark, np.float32(det.adc_max_counts) - dark) if rel else (0, det.adc_max_counts)
    np.clip(raw, lo, hi, out=raw)
    saturated = raw >= hi
    if det.dark_subtracted and not rel:
        raw -= dark
    return Readout(raw.astype(np.float32, copy=False), saturated, gain_map,
                   sampling_record(exact_below, int(np.prod(shape)), n_approx))
