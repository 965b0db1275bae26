"""Expected electrons per channel for one energy window, all rows at once.

I(y, E) = dose * dE_ch * [ B(y, E) + sum_x n_x(y) t(y) sigma_x(E; y) (*) R (*) L(y) ]

B is a power law per window proportional to thickness; with plural scattering, windows from 150 eV
up convolve B with L like the edges (there it is the tail of single losses), and windows below hold
no power law: their background is the low loss's own tail (ZLP + plural plasmons, as in the low-loss
window), the Li-K window's in particular; n_x t the areal density of
element x (atoms / nm^2, 1 barn = 1e-10 nm^2); sigma_x per-atom shapes from
:mod:`.edges`; R the resolution, L the (optional) plural-scattering low loss; then a
per-row energy shift and the blur along y.  Per-atom templates and transfer functions
are computed once per window (:class:`WindowModel`) and reused for every call.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from ..axes import EnergyAxis
from ..config import Instrument, Window
from ..errors import SreelsInputError
from . import edges as ed
import functools

from .instrument import PAD_HI_EV, PLURAL_PAD_LO_EV, PaddedGrid, blur_rows, convolve_rows, padded_grid, shift_tf
from .lowloss import RowKernel, impulse_tf, zlp_tf
from .material import density_per_nm3

BARN_NM2 = 1e-10
#: Background in the Pt collector relative to the electrolyte (assumed: heavier scatterer).
PT_BACKGROUND_FACTOR = 2.0
#: Relative loss of O-K pre-peak intensity per Ti3+ (one fewer empty Ti 3d state of ten).
PREPEAK_TI3_LOSS = 0.1
#: Windows starting at or above this energy (eV) get a plurally scattered background (see WindowModel).
BACKGROUND_SCATTERED_EV = 150.0
#: How far below a window an edge's onset may lie and still be modelled by its tail (eV).
EDGE_TAIL_REACH_EV = 60.0


def window_axis(w: Window) -> EnergyAxis:
    return EnergyAxis(w.offset_ev, w.scale_ev, w.channels)


def check_window_edges(w: Window) -> None:
    """Every edge a window is asked to model must be known and reach into the window."""
    for name in w.edges:
        if name not in ed.EDGES:
            raise SreelsInputError(f"window {w.name!r}: unknown edge {name!r}; known: {', '.join(ed.EDGES)}")
        on = ed.EDGES[name].onset_ev
        if not (w.offset_ev - EDGE_TAIL_REACH_EV <= on <= w.end_ev):
            raise SreelsInputError(
                f"window {w.name!r} covers {w.offset_ev:.1f}-{w.end_ev:.1f} eV and cannot model {name} "
                f"(onset {on:.1f} eV): expected an onset inside the window or at most "
                f"{EDGE_TAIL_REACH_EV:.0f} eV below it")


def fixed_edge_densities(names, s) -> np.ndarray:
    """Areal densities (rows, len(names)) of the fixed-shape edges' elements, atoms / nm^2 x 1e-10."""
    host = s.host_fraction
    alpo4 = np.where(s.in_pt, 0.0, 1.0 - host)
    cols = []
    for name in names:
        el = ed.EDGES[name].element
        dens = density_per_nm3("Li") * s.li_rel * host if el == "Li" else \
            density_per_nm3(el) * host + density_per_nm3(el, "AlPO4") * alpo4
        cols.append(dens * s.thickness_nm)
    return np.array(cols).T.reshape(len(s.thickness_nm), -1) * BARN_NM2


def shallow_edges(instrument: Instrument) -> tuple:
    """The edges of the lowest core-loss window if it starts below 150 eV: with the plasmons they form
    the valence and shallow inner-shell losses every electron can suffer on its way (plural scattering)."""
    first = min(instrument.windows, key=lambda w: w.offset_ev)
    if first.offset_ev >= BACKGROUND_SCATTERED_EV:
        return ()
    return tuple(n for n in first.edges if n not in ("Ti-L23", "O-K"))


def plural_fft_length(instrument: Instrument, scale_ev: float, pad_hi_ev: float = PAD_HI_EV) -> int:
    """One FFT length for every window of dispersion ``scale_ev`` (and the low-loss window), so that
    they share their rows' kernels (:class:`.lowloss.RowKernel`, evaluated once per block of rows)."""
    from scipy.fft import next_fast_len

    sizes = [w.channels for w in instrument.windows if w.scale_ev == scale_ev]
    if instrument.lowloss_window and instrument.windows[0].scale_ev == scale_ev:
        sizes.append(instrument.lowloss_channels)
    need = max(sizes) + int(np.ceil(PLURAL_PAD_LO_EV / scale_ev)) + int(np.ceil(pad_hi_ev / scale_ev))
    return next_fast_len(need, real=True)


@functools.lru_cache(maxsize=16)
def row_kernel(instrument: Instrument, scale_ev: float, n_fft: int) -> RowKernel:
    """The rows' kernel of the instrument's damped grids of this length (cached, shared)."""
    return RowKernel(instrument, scale_ev, n_fft, shallow_edges(instrument))


@dataclass(frozen=True)
class RowState:
    """Per-row inputs of the model, arrays of shape (rows,)."""

    li_rel: np.ndarray
    host_fraction: np.ndarray
    ti3_fraction: np.ndarray
    peak_a_ev: np.ndarray
    peak_a_rel: np.ndarray
    peak_b_ev: np.ndarray
    thickness_nm: np.ndarray
    in_pt: np.ndarray
    shift_ev: np.ndarray

    @classmethod
    def from_profiles(cls, p, shift_ev):
        return cls(p.li_rel, p.host_fraction, p.ti3_fraction, p.peak_a_ev, p.peak_a_rel, p.peak_b_ev,
                   p.thickness_nm, p.in_pt, np.broadcast_to(shift_ev, p.y_nm.shape))


def _block(s: RowState, sl: slice) -> RowState:
    return RowState(*(getattr(s, f.name)[sl] for f in dataclasses.fields(RowState)))


class WindowModel:
    """Kernels of one window, built once: per-atom templates and transfer functions."""

    def __init__(self, window: Window, instrument: Instrument, pad_hi_ev: float = PAD_HI_EV):
        check_window_edges(window)
        self.window = window
        self.instrument = instrument
        self.axis = window_axis(window)
        plural = instrument.plural_scattering
        n_fft = plural_fft_length(instrument, window.scale_ev, pad_hi_ev) if plural else None
        self.grid: PaddedGrid = padded_grid(self.axis, plural, damped=plural, n_fft=n_fft, pad_hi_ev=pad_hi_ev)
        # with plural scattering the rows' kernels (shared by the windows on grids of this length)
        self.kernel = row_kernel(instrument, window.scale_ev, self.grid.n_fft) if plural else None
        self.beam = ed.Beam(instrument.beam_energy_kev, instrument.collection_semiangle_mrad * 1e-3)
        e = self.grid.energy_ev
        taper = self.grid.taper()
        names = [n for n in window.edges if n not in ("Ti-L23", "O-K")]
        self.fixed = names
        rows = [ed.EDGES[n].shape(e, self.beam) for n in names]
        self.has_ti_l = "Ti-L23" in window.edges
        self.has_o_k = "O-K" in window.edges
        if self.has_ti_l:
            rows += [ed.ti4_l23(e, self.beam), ed.ti3_l23(e, self.beam)]
        if self.has_o_k:
            rows += [ed.o_k_continuum(e, self.beam), ed.o_k_prepeaks(e, self.beam)]
        self.templates = (np.array(rows) * taper) if rows else np.zeros((0, e.size))
        self.taper = taper
        ea = self.axis.energy_ev
        self._bg_shape = (ea / window.background_ref_ev) ** (-window.background_r)
        self._bg_dlog = window.background_r / ea
        f = self.grid.freq_per_ev
        # above BACKGROUND_SCATTERED_EV the background is the tail of single losses and scatters like the
        # edges; below, it is the tail of the low loss itself, whose measured shape already holds its plural part
        self.bg_scattered = instrument.plural_scattering and window.offset_ev >= BACKGROUND_SCATTERED_EV
        # (the power law is that tail from BACKGROUND_SCATTERED_EV up only: a window's lower pad may reach below)
        self._bg_grid = np.where(e >= BACKGROUND_SCATTERED_EV, (np.maximum(e, BACKGROUND_SCATTERED_EV)
                                                                / window.background_ref_ev) ** (-window.background_r),
                                 0.0) * taper if self.bg_scattered else None
        # below it, with plural scattering, the background is the low loss itself (ZLP + plasmons, the
        # same distribution as the low-loss window), its tail reaching into the window; no separate power law
        self.lowloss_tail = instrument.plural_scattering and not self.bg_scattered and e[0] < -5.0
        self._impulse = impulse_tf(self.grid) if self.lowloss_tail else None
        self.tf_resolution = zlp_tf(f, instrument.resolution_fwhm_ev, instrument.zlp_tail_ev)
        if plural:  # the sources are damped before their FFT (the damped grid: a linear convolution)
            self._damp = self.grid.damp()
            if self._bg_grid is not None:
                self._bg_grid = self._bg_grid * self._damp

    # ----------------------------------------------------------- pieces
    def areal_densities(self, s: RowState) -> np.ndarray:
        """Coefficients (rows, n_templates) in atoms per nm^2 times 1e-10 nm^2/barn."""
        t = s.thickness_nm
        host = s.host_fraction
        alpo4 = np.where(s.in_pt, 0.0, 1.0 - host)

        def n(el):
            return density_per_nm3(el) * host + density_per_nm3(el, "AlPO4") * alpo4

        cols = []
        for name in self.fixed:
            el = ed.EDGES[name].element
            dens = density_per_nm3("Li") * s.li_rel * host if el == "Li" else n(el)
            cols.append(dens * t)
        if self.has_ti_l:
            nti = n("Ti") * t
            cols += [nti * (1 - s.ti3_fraction), nti * s.ti3_fraction]
        if self.has_o_k:
            cols += [n("O") * t, density_per_nm3("O") * host * t * (1 - PREPEAK_TI3_LOSS * s.ti3_fraction)]
        return np.array(cols).T.reshape(len(t), -1) * BARN_NM2

    def single_scattering(self, s: RowState) -> np.ndarray:
        """Per-incident-electron core-loss spectra per eV on the padded grid (rows, n_fft)."""
        out = self.areal_densities(s) @ self.templates
        if self.has_o_k:
            pa = np.nan_to_num(s.peak_a_ev, nan=538.0)
            pb = np.nan_to_num(s.peak_b_ev, nan=565.0)
            # peaks are evaluated only where they are non-negligible (> 6 sigma away: < 1e-8)
            e = self.grid.energy_ev
            ra, rb = 6 * ed.FWHM_TO_SIGMA * ed.O_PEAK_A_FWHM_EV, 6 * ed.FWHM_TO_SIGMA * ed.O_PEAK_B_FWHM_EV
            lo, hi = min(pa.min() - ra, pb.min() - rb), max(pa.max() + ra, pb.max() + rb)
            sl = slice(int(np.searchsorted(e, lo)), int(np.searchsorted(e, hi)))
            no = (density_per_nm3("O") * s.host_fraction
                  + density_per_nm3("O", "AlPO4") * np.where(s.in_pt, 0.0, 1.0 - s.host_fraction))
            amp = no * s.thickness_nm * BARN_NM2
            out[:, sl] += amp[:, None] * ed.o_k_peaks(e[sl], self.beam, pa, s.peak_a_rel, pb) * self.taper[sl]
        return out

    def transfer(self, s: RowState) -> np.ndarray:
        """Resolution x plural scattering x per-row shift, shape (rows, n_freq); with plural scattering
        the damped transfer of the rows' kernel (:class:`.lowloss.RowKernel`, shared by the windows)."""
        if self.kernel is not None:
            return self.kernel.transfer(s)
        return self.tf_resolution[None, :] * shift_tf(self.grid.freq_per_ev, s.shift_ev)

    def _level(self, s: RowState) -> np.ndarray:
        w = self.window
        return w.background_per_ev * s.thickness_nm / 100.0 * np.where(s.in_pt, PT_BACKGROUND_FACTOR, 1.0)

    def background(self, s: RowState) -> np.ndarray:
        """Power-law background per eV per incident electron, (rows, channels)."""
        level = self._level(s)
        # B(E - d) = B(E) (1 + r d / E) to first order; |r d / E| < 1e-2 for |d| < 0.1 eV
        return (level[:, None] * self._bg_shape[None, :]) * (1.0 + s.shift_ev[:, None] * self._bg_dlog[None, :])

    def block_electrons(self, b: RowState, tf: np.ndarray | None = None) -> np.ndarray:
        """Expected electrons per channel of a block of rows before the blur along y, (rows, channels);
        ``tf`` = :meth:`transfer` of these rows if already evaluated (shared with other windows)."""
        tf = self.transfer(b) if tf is None else tf
        dose = self.instrument.dose_e_per_row_s * self.window.exposure_s * self.window.scale_ev
        if self.lowloss_tail:  # the incident electrons at 0 eV, scattered like the edges; the low window's
            # own edges are in its plural kernel (the shallow edges): only the beam
            core = sfft.irfft(tf * self._impulse[None, :], n=self.grid.n_fft, axis=-1, workers=-1)[:, self.grid.crop]
        else:
            single = self.single_scattering(b)
            if self.bg_scattered:  # (damped with the grid, as the edges below)
                single *= self._damp if self.kernel is not None else 1.0
                single += self._level(b)[:, None] * self._bg_grid[None, :]
            elif self.kernel is not None:
                single *= self._damp
            core = sfft.irfft(sfft.rfft(single, axis=-1, workers=-1) * tf, n=self.grid.n_fft, axis=-1,
                              workers=-1)[:, self.grid.crop]
        if self.kernel is not None:
            core *= self.grid.undamp() * dose
        else:
            core *= dose
        np.clip(core, 0.0, None, out=core)
        if not (self.bg_scattered or self.lowloss_tail):
            core += self.background(b) * dose
        return core

    def electrons(self, s: RowState, row_nm: float, block_rows: int = 256) -> np.ndarray:
        """Expected electrons per channel, (rows, channels).

        Rows go through the FFT stage in blocks of ``block_rows`` (bounded temporaries,
        linear scaling with rows); the blur along y then acts on the whole image."""
        rows = s.li_rel.shape[0]
        img = np.empty((rows, self.axis.size))
        for i in range(0, rows, block_rows):
            img[i:i + block_rows] = self.block_electrons(_block(s, slice(i, i + block_rows)))
        return blur_rows(img, self.instrument.spatial_blur_fwhm_nm, row_nm)


def reference_spectra(axis: EnergyAxis, instrument: Instrument, edges: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-atom shapes (barn / eV) convolved with the instrument's resolution on ``axis``.

    The forward model's own templates, for the inversion (MLLS references): keys are the
    fixed-shape edge names, plus "Ti4+" and "Ti3+" for Ti-L2,3 and "O-K continuum" and
    "O-K prepeaks" for O-K.  No energy shift, no plural scattering.
    """
    w = Window("reference", axis.offset_ev, channels=axis.size, scale_ev=axis.scale_ev, edges=tuple(edges))
    m = WindowModel(w, dataclasses.replace(instrument, plural_scattering=False))
    names = list(m.fixed) + (["Ti4+", "Ti3+"] if m.has_ti_l else []) + (
        ["O-K continuum", "O-K prepeaks"] if m.has_o_k else [])
    conv = convolve_rows(m.templates, m.tf_resolution[None, :], m.grid)
    return dict(zip(names, conv))
