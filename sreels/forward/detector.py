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


def poisson_cornish_fisher(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson(lam) draws for lam >= ~30, float32: round(lam + a Z + (Z^2 - 1) / 6), Z standard normal.

    The Cornish-Fisher expansion of the Poisson quantile to order lam^-1/2 (the (Z^2 - 1) / 6 term
    gives the third cumulant lam: skewness 1 / sqrt(lam)); a = sqrt(lam - 1/12 - 1/18) makes the
    variance lam exactly after the rounding (+1/12, Sheppard) and the quadratic term (+2/36).  Mean,
    variance and third cumulant are Poisson's to O(1); the fourth cumulant is 4/3 lam instead of lam.
    Costs one float32 normal draw per pixel (~4x faster than ``Generator.poisson``)."""
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    lam32 = lam.astype(np.float32)
    x = np.sqrt(lam32 - np.float32(5.0 / 36.0)) * z
    x += lam32
    z *= z
    z -= 1.0
    z *= np.float32(1.0 / 6.0)
    x += z
    np.rint(x, out=x)
    return np.maximum(x, 0.0, out=x)


def poisson_counts(lam: np.ndarray, rng: np.random.Generator,
                   exact_below: float = POISSON_EXACT_BELOW_E) -> tuple[np.ndarray, int]:
    """Electron counts (float32) for expected electrons ``lam``: exact ``rng.poisson`` where
    lam < ``exact_below``, :func:`poisson_cornish_fisher` elsewhere.  Returns (counts, number of
    pixels drawn by the approximation).  ``exact_below = inf`` draws every pixel exactly."""
    lam = np.asarray(lam, dtype=float)
    high = lam >= exact_below
    n_high = int(np.count_nonzero(high))
    if n_high == 0:
        return rng.poisson(lam).astype(np.float32), 0
    if n_high == lam.size:
        return poisson_cornish_fisher(lam, rng), n_high
    out = np.empty(lam.shape, dtype=np.float32)
    low = ~high
    out[low] = rng.poisson(lam[low])
    out[high] = poisson_cornish_fisher(lam[high], rng)
    return out, n_high


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
                   exact_below: float = POISSON_EXACT_BELOW_E) -> Readout:
    """Draw one camera readout of an image of expected electrons per pixel.

    Electron counts by :func:`poisson_counts` (exact Poisson below ``exact_below`` expected
    electrons per pixel); the camera's stages in float32 (counts up to the 16-bit ADC maximum:
    float32 is exact to 0.004 counts there, far below the quantisation)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    lam = np.asarray(electrons, dtype=float)
    if not (np.isfinite(lam.sum()) and lam.min(initial=0.0) >= 0):
        raise ValueError("expected electrons must be finite and >= 0")
    counts, n_approx = poisson_counts(lam, rng, exact_below)
    counts *= np.float32(det.gain_counts_per_e)
    signal = apply_psf(counts, det.psf_decay)
    gain_map = None
    if det.gain_nonuniformity_rel > 0:
        gain_map = 1.0 + det.gain_nonuniformity_rel * rng.standard_normal(lam.shape)
        signal *= gain_map.astype(np.float32)
    raw = signal
    raw += np.float32(det.dark_offset_counts)
    if det.readout_noise_counts > 0:
        noise = rng.standard_normal(lam.shape, dtype=np.float32)
        noise *= np.float32(det.readout_noise_counts)
        raw += noise
    if det.quantise:
        np.rint(raw, out=raw)
    np.clip(raw, 0, det.adc_max_counts, out=raw)
    saturated = raw >= det.adc_max_counts
    if det.dark_subtracted:
        raw -= np.float32(det.dark_offset_counts)
    return Readout(raw.astype(np.float32, copy=False), saturated, gain_map,
                   sampling_record(exact_below, lam.size, n_approx))
