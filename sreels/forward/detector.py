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
    return convolve1d(image, psf_kernel(decay), axis=-1, mode="reflect")


def expected_counts(electrons: np.ndarray, det: Detector) -> np.ndarray:
    """Noise-free counts for expected electrons (no quantisation, no saturation)."""
    out = det.gain_counts_per_e * apply_psf(np.asarray(electrons, dtype=float), det.psf_decay)
    return out if det.dark_subtracted else out + det.dark_offset_counts


@dataclass(frozen=True)
class Readout:
    counts: np.ndarray      # what the file holds
    saturated: np.ndarray   # bool mask of pixels at the ADC maximum
    gain_map: np.ndarray | None


def apply_detector(electrons: np.ndarray, det: Detector, rng: np.random.Generator) -> Readout:
    """Draw one camera readout of an image of expected electrons per pixel."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    lam = np.asarray(electrons, dtype=float)
    if not (np.isfinite(lam.sum()) and lam.min(initial=0.0) >= 0):
        raise ValueError("expected electrons must be finite and >= 0")
    signal = apply_psf(rng.poisson(lam) * det.gain_counts_per_e, det.psf_decay)
    gain_map = None
    if det.gain_nonuniformity_rel > 0:
        gain_map = 1.0 + det.gain_nonuniformity_rel * rng.standard_normal(lam.shape)
        signal *= gain_map
    raw = signal
    raw += det.dark_offset_counts
    if det.readout_noise_counts > 0:
        raw += det.readout_noise_counts * rng.standard_normal(lam.shape, dtype=np.float32)
    if det.quantise:
        np.rint(raw, out=raw)
    np.clip(raw, 0, det.adc_max_counts, out=raw)
    saturated = raw >= det.adc_max_counts
    if det.dark_subtracted:
        raw -= det.dark_offset_counts
    return Readout(raw.astype(np.float32), saturated, gain_map)
