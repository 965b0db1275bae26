"""What the microscope does to a row spectrum: resolution, plural scattering, energy
shifts (non-isochromaticity and drift) and the blur along y.

Convolutions along energy are products in Fourier space on a padded grid, done for
all rows in one FFT; transfer functions are built once per grid and reused.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from ..axes import EnergyAxis

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Damped grids (plural scattering): exp(-gamma L) over the FFT length L, the factor by which every
#: circular (wrapped) contribution is suppressed against the linear convolution.  Undamping multiplies
#: float64 round-off (relative to the ZLP's spike, ~1e6 x the low window's top) by up to its inverse: at
#: 1e-5 the default windows move by < 1.1e-5 relative when the FFT length changes (25.6 vs 300 eV upper
#: pad) and the low loss below -5 eV holds < 1e-9 of the ZLP maximum; 1e-8 moved the low window's top by
#: 1.6e-3 through round-off, 1e-4 left 7e-9 of the maximum below -5 eV (measured).
WRAP_SUPPRESSION = 1e-5


@dataclass(frozen=True)
class PaddedGrid:
    """A window's energy axis padded on both sides for wrap-free FFT convolution.

    ``damping_per_ev`` = gamma > 0 makes the grid *damped*: convolution with causal kernels (plural
    scattering, whose E^-3 tails reach far beyond any grid) is done on x(E) exp(-gamma (E - E_0))
    (E_0 the grid's first energy), which turns the FFT's circular convolution into the linear one
    up to a factor exp(-gamma L) = :data:`WRAP_SUPPRESSION` on every wrapped term, because
    (x (*) k) e^(-gamma E) = (x e^(-gamma E)) (*) (k e^(-gamma E)) (the exponentially weighted
    transform, a Laplace transform on the grid).  Transforms of analytic kernels are evaluated at
    the complex frequency :attr:`freq_c` = f - i gamma / (2 pi); sampled kernels are multiplied by
    exp(-gamma lag) before their FFT; spectra by :meth:`damp` before and :meth:`undamp` after."""

    window: EnergyAxis
    pad_lo: int
    n_fft: int
    damping_per_ev: float = 0.0

    @property
    def energy_ev(self) -> np.ndarray:
        return self.window.offset_ev + self.window.scale_ev * (np.arange(self.n_fft) - self.pad_lo)

    @property
    def freq_per_ev(self) -> np.ndarray:
        return sfft.rfftfreq(self.n_fft, d=self.window.scale_ev)

    @property
    def freq_c(self) -> np.ndarray:
        """Frequencies at which a damped kernel's transform is its analytic transform (complex if damped)."""
        f = self.freq_per_ev
        return f - 1j * self.damping_per_ev / (2.0 * np.pi) if self.damping_per_ev > 0 else f

    def damp(self) -> np.ndarray:
        """exp(-gamma (E - E_0)) over the grid (ones if undamped)."""
        return np.exp(-self.damping_per_ev * self.window.scale_ev * np.arange(self.n_fft))

    def undamp(self) -> np.ndarray:
        """exp(+gamma (E - E_0)) over the window (the crop)."""
        return np.exp(self.damping_per_ev * self.window.scale_ev * np.arange(self.n_fft)[self.crop])

    @property
    def crop(self) -> slice:
        return slice(self.pad_lo, self.pad_lo + self.window.size)

    def taper(self, n_taper: int = 128) -> np.ndarray:
        """1 over the window and its near pads, cosine roll-off to 0 at both grid ends."""
        w = np.ones(self.n_fft)
        n = min(n_taper, self.pad_lo // 2)
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        w[:n] = ramp
        m = min(n_taper, (self.n_fft - self.pad_lo - self.window.size) // 2)
        w[self.n_fft - m:] = ramp[:m][::-1] if m else w[self.n_fft - m:]
        return w


#: Lower pad of a grid with plural scattering (eV): the single-scattering spectrum that plural scattering
#: moves into the window is modelled from this far below the window's start (electrons that lose more
#: on their first loss and are then scattered up are part of the measured background's shape).  It must
#: exceed the plural kernel's reach, the shallow edges (Al/Si/P-L2,3 at 73-132 eV) and multiple plasmons
#: up to ~200 eV: at 102.4 eV the spectrum below a window fell to zero 102 eV below it, a step no
#: specimen has, which the Fourier-ratio deconvolution (it needs the spectrum below the window,
#: :func:`sreels.inference.deconvolve.fourier_ratio`) carried into the window's background (Ti3+
#: fraction -0.38 sigma on Ti4+ rows at t/lambda 0.9, noise-free; measured).  The background's level
#: in the window still grows with this pad (the power law rises toward low energies: +13 % at 420 eV,
#: t/lambda 0.9, from 102.4 to 204.8 eV), its shape as the deconvolution sees it does not (Ti3+ bias
#: within 0.0002 for 204.8-307.2 eV; measured).
PLURAL_PAD_LO_EV = 204.8
#: Upper pad (eV): only the ZLP's low-energy side reaches down from above the window.
PAD_HI_EV = 25.6


def padded_grid(window: EnergyAxis, plural: bool, damped: bool = False, n_fft: int | None = None,
                pad_hi_ev: float = PAD_HI_EV) -> PaddedGrid:
    """Pad 25.6 eV (or :data:`PLURAL_PAD_LO_EV` with plural scattering, which moves intensity up by
    several plasmon energies) below and ``pad_hi_ev`` above the window; ``n_fft`` (at least that)
    fixes the FFT length, so that grids of one dispersion share their transfer functions;
    ``damped`` gives the damped grid (:class:`PaddedGrid`) of a linear convolution."""
    pad_lo = int(np.ceil((PLURAL_PAD_LO_EV if plural else 25.6) / window.scale_ev))
    pad_hi = int(np.ceil(pad_hi_ev / window.scale_ev))
    need = window.size + pad_lo + pad_hi
    if n_fft is not None and n_fft < need:
        raise ValueError(f"n_fft = {n_fft} is shorter than the padded window ({need})")
    n = n_fft or sfft.next_fast_len(need, real=True)
    gamma = np.log(1.0 / WRAP_SUPPRESSION) / (n * window.scale_ev) if damped else 0.0
    return PaddedGrid(window, pad_lo, n, gamma)


def resolution_tf(freq_per_ev, fwhm_ev):
    """Fourier transform of a unit-area Gaussian zero-loss peak of FWHM ``fwhm_ev``."""
    s = fwhm_ev * FWHM_TO_SIGMA
    return np.exp(-2.0 * (np.pi * s * freq_per_ev) ** 2)


def drude_loss(energy_ev, plasmon_ev, fwhm_ev):
    """Drude energy-loss function Im(-1/eps) = E Ep^2 G / ((E^2 - Ep^2)^2 + (E G)^2), 0 for E <= 0
    (Egerton 2011, Eq. 3.43): a single-plasmon loss that vanishes at zero loss and falls as E^-3."""
    e = np.clip(np.asarray(energy_ev, dtype=float), 0.0, None)
    return e * plasmon_ev**2 * fwhm_ev / ((e**2 - plasmon_ev**2) ** 2 + (e * fwhm_ev) ** 2)


def plasmon_tf(grid: PaddedGrid, plasmon_ev, fwhm_ev):
    """Fourier transform of the unit-area single-plasmon loss sampled on the grid's spacing.

    The loss is sampled at 0, dE, 2 dE, ... (causal) over the grid length, so that a
    product with a spectrum's transform shifts intensity up in energy."""
    e = grid.window.scale_ev * np.arange(grid.n_fft)
    p = drude_loss(e, plasmon_ev, fwhm_ev)
    p /= p.sum()
    return sfft.rfft(p)


def plural_tf(p_tf, t_over_lambda):
    """Poisson plural scattering: exp(t/lambda (P(f) - 1)), shape (rows, n_freq).

    ``p_tf`` is :func:`plasmon_tf`; the low-loss spectrum is normalised to unit area (zero
    loss + n-fold plasmons with Poisson weights), so convolution conserves counts
    (Egerton 2011, Sec. 4.2)."""
    return np.exp(np.asarray(t_over_lambda)[:, None] * (p_tf[None, :] - 1.0))


def shift_tf(freq_per_ev, shift_ev):
    """Fourier shift theorem: move each row's spectrum up by ``shift_ev`` (rows,).

    The frequencies are uniform (rfftfreq), so the phase ramp is a running product of one
    complex factor per row: a cumulative product instead of rows x n_freq exponentials.  Complex
    frequencies (a damped grid's :attr:`PaddedGrid.freq_c`) give the damped shift, exp(-gamma d) at f = 0."""
    d = np.asarray(shift_ev, dtype=float)
    f = np.asarray(freq_per_ev)
    step = np.exp(-2j * np.pi * d * (f[1] - f[0]))
    ramp = np.empty((d.size, f.size), dtype=complex)
    ramp[:, 0] = np.exp(-2j * np.pi * d * f[0])
    ramp[:, 1:] = step[:, None]
    return np.cumprod(ramp, axis=1)


def convolve_rows(spectra, tf, grid: PaddedGrid) -> np.ndarray:
    """Multiply the rows' spectra (rows, n_fft) by ``tf`` in Fourier space; crop to the window.

    On a damped grid ``tf`` must be the damped kernels' transform (:class:`PaddedGrid`); the spectra
    are damped here and the result undamped."""
    if grid.damping_per_ev > 0:
        spectra = spectra * grid.damp()
    out = sfft.irfft(sfft.rfft(spectra, axis=-1, workers=-1) * tf, n=grid.n_fft, axis=-1, workers=-1)
    out = out[:, grid.crop]
    return out * grid.undamp() if grid.damping_per_ev > 0 else out


def energy_distortion(y_nm, peak_to_peak_ev, drift_ev=0.0):
    """Per-row energy shift: a parabolic bow of the zero-loss line (peak-to-peak
    ``peak_to_peak_ev``, +half at the centre, -half at both ends) plus a global drift."""
    y = np.asarray(y_nm, dtype=float)
    half = 0.5 * (y.max() - y.min()) or 1.0
    u = (y - 0.5 * (y.max() + y.min())) / half
    return peak_to_peak_ev * (0.5 - u**2) + drift_ev


@functools.lru_cache(maxsize=32)
def _blur_matrix(rows: int, fwhm_nm: float, row_nm: float):
    """The blur along y as a sparse (rows, rows) matrix: a Gaussian of ``fwhm_nm`` truncated at 4 sd
    (scipy's gaussian_filter1d kernel), rows beyond the ends repeating the end rows ('nearest')."""
    from scipy import sparse

    sd = fwhm_nm * FWHM_TO_SIGMA / row_nm
    radius = int(4.0 * sd + 0.5)
    lag = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (lag / sd) ** 2)
    k /= k.sum()
    i = np.repeat(np.arange(rows), k.size)
    j = np.clip((np.arange(rows)[:, None] + lag[None, :]).ravel(), 0, rows - 1)
    return sparse.csr_matrix((np.tile(k, rows), (i, j)), shape=(rows, rows))   # duplicates (ends) summed


def blur_rows(image, fwhm_nm, row_nm):
    """Gaussian blur along y (axis 0): slit/probe size and delocalisation.

    scipy's ``gaussian_filter1d(image, sd, axis=0, mode="nearest")`` (the same kernel and edges, equal
    to 1e-15), as a cached sparse banded matrix times the image: one pass over the image (4x faster
    than shifted whole-row slices for the default image, measured)."""
    if fwhm_nm <= 0:
        return image
    return _blur_matrix(int(image.shape[0]), float(fwhm_nm), float(row_nm)) @ image
