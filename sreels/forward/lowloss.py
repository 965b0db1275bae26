"""The low-loss window and plural scattering: zero-loss peak, bulk plasmons, t/lambda.

Per row y, the low-loss spectrum per incident electron is (Egerton 2011, Sec. 4.1-4.2)

    J_l(E; y) = R(E - d(y)) (*) exp[ tau(y) (P_y - delta) ]          (Poisson in tau)
              = R (*) e^-tau [delta + tau P + tau^2 P(*)P / 2! + ...]

with R the zero-loss peak (unit area, maximum at 0 eV), d(y) the row's energy shift
(SR distortion + drift, the same shift the core-loss edges get), tau = t / lambda and P the
unit-area single-scattering (valence) loss distribution of the row.  The core-loss windows
are convolved with the same exp[tau (P - delta)], so plural scattering moves their edges by
the plasmons the low-loss window shows.

P of a row is the mixture of its phases' Drude losses weighted by their scattering
probabilities v_k / lambda_k (v_k the projected volume fraction): LASGTP (parent and
Li-rich end members, linear in c_Li), AlPO4 grains and the Pt collector.

Sources of the numbers:
- lambda: Iakoubovskii et al., Microsc. Res. Tech. 71 (2008) 626, Eq. 9 (with the
  collection-angle correction; the same formula as exspy's ``iMFP_Iakoubovskii`` and
  ``iMFP_angular_correction``), from the phases' mass densities.
- Plasmon energies: free-electron estimate E_p = hbar sqrt(n e^2 / (eps0 m)) from the
  valence-electron density n (Egerton 2011, Eq. 3.40), computed here from the composition;
  for LASGTP this gives 24.7 eV, close to the ~24 eV of NASICON phosphates (assumed, not
  measured for LASGTP).  Pt: free-electron value with 10 valence electrons (30.2 eV); the
  measured Pt low loss is broad with interband structure (ASSUMED shape, flagged).
- Drude widths: ASSUMED (10 eV oxides, 20 eV Pt); no measurement of these phases is known to us.
- ZLP: Gaussian core of the instrument's FWHM convolved with a one-sided exponential tail
  toward positive loss of decay ``zlp_tail_ev`` (the low-kinetic-energy tail of the
  field-emission energy distribution, Egerton 2011 Sec. 2.1.2); 0.1 eV is a typical cold-FEG value,
  ASSUMED (not measured on the study's HF3300); off (0) by default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import optimize, special

from .instrument import FWHM_TO_SIGMA, PaddedGrid, drude_loss, shift_tf
from .material import LASGTP_ATOMS_PER_FU, LASGTP_FU_PER_NM3, ALPO4_FU_PER_NM3

AVOGADRO = 6.02214076e23
#: hbar * sqrt(e^2 / (eps0 m_e)) for n = 1 nm^-3, in eV: E_p = FREE_ELECTRON_EV * sqrt(n / nm^-3).
FREE_ELECTRON_EV = 6.582119569e-16 * np.sqrt(1e27 * 1.602176634e-19**2 / (8.8541878128e-12 * 9.1093837015e-31))
#: Cut-off angle of Iakoubovskii et al. (2008), mrad.
THETA_C_MRAD = 20.0
#: atomic masses (g/mol, IUPAC) and valence electrons per atom (outer s, p and, for Ti/Pt, d)
MASS = {"Li": 6.94, "Al": 26.98, "Ge": 72.63, "Ti": 47.867, "Si": 28.085, "P": 30.974, "O": 15.999}
VALENCE = {"Li": 1, "Al": 3, "Ge": 4, "Ti": 4, "Si": 4, "P": 5, "O": 6}
PT_DENSITY_G_CM3 = 21.45          # CRC Handbook
PT_ATOMS_PER_NM3 = PT_DENSITY_G_CM3 / 195.08 * AVOGADRO / 1e21
PT_VALENCE = 10                   # 5d9 6s1
ALPO4_DENSITY_G_CM3 = 2.62        # berlinite, CRC Handbook (as in .material)
ALPO4_VALENCE_PER_FU = 3 + 5 + 4 * 6
#: c_Li of the Li-rich LASGTP end member of the plasmon mixture (the study's maximum, Sec. 3.3)
LI_RICH_REL = 8.5
#: Drude FWHM (eV), ASSUMED: oxides 10 eV, Pt 20 eV.
OXIDE_PLASMON_FWHM_EV = 10.0
PT_PLASMON_FWHM_EV = 20.0
PHASES = ("LASGTP", "LASGTP Li-rich", "AlPO4", "Pt")


def relativistic_f(e0_kev):
    """F = (1 + E0/1022) / (1 + E0/511)^2 (Iakoubovskii 2008, Eq. 9; E0 in keV)."""
    return (1 + e0_kev / 1022.0) / (1 + e0_kev / 511.0) ** 2


def imfp_iakoubovskii_nm(density_g_cm3, e0_kev, beta_mrad, alpha_mrad=0.0):
    """Inelastic mean free path (nm) for collection semi-angle beta and convergence alpha.

    1/lambda = 11 rho^0.3 / (200 F E0) ln[ (a^2 + b^2 + 2 tE^2 + |a^2 - b^2|) tC^2 /
               ((a^2 + b^2 + 2 tC^2 + |a^2 - b^2|) tE^2) ],   tE = 5.5 rho^0.3 / (F E0) mrad,
    tC = 20 mrad, rho in g/cm^3, E0 in keV (Iakoubovskii et al., Microsc. Res. Tech. 71 (2008)
    626, Eq. 9; stated accuracy ~10 %).  Example: rho = 2.95 g/cm^3, 300 keV, beta = 10 mrad:
    lambda = 195 nm.  Vectorised over ``density_g_cm3``.
    """
    rho = np.asarray(density_g_cm3, dtype=float)
    f = relativistic_f(e0_kev)
    te2 = (5.5 * rho**0.3 / (f * e0_kev)) ** 2
    a2, b2 = alpha_mrad**2, beta_mrad**2
    d = abs(a2 - b2)
    arg = (a2 + b2 + 2 * te2 + d) * THETA_C_MRAD**2 / ((a2 + b2 + 2 * THETA_C_MRAD**2 + d) * te2)
    return 200.0 * f * e0_kev / (11.0 * rho**0.3 * np.log(arg))


def free_electron_plasmon_ev(valence_per_nm3):
    """E_p = hbar sqrt(n e^2 / (eps0 m)) (Egerton 2011, Eq. 3.40), n in nm^-3."""
    return FREE_ELECTRON_EV * np.sqrt(np.asarray(valence_per_nm3, dtype=float))


def lasgtp_density_g_cm3(li_rel):
    """Mass density of LASGTP holding c_Li times the parent's Li (same cell, Li added)."""
    m_fu = sum(MASS[el] * n for el, n in LASGTP_ATOMS_PER_FU.items())
    extra = MASS["Li"] * LASGTP_ATOMS_PER_FU["Li"] * (np.asarray(li_rel, dtype=float) - 1.0)
    return LASGTP_FU_PER_NM3 * 1e21 * (m_fu + extra) / AVOGADRO


def lasgtp_valence_per_nm3(li_rel):
    """Valence electrons per nm^3 of LASGTP (one per added Li)."""
    v_fu = sum(VALENCE[el] * n for el, n in LASGTP_ATOMS_PER_FU.items())
    extra = LASGTP_ATOMS_PER_FU["Li"] * (np.asarray(li_rel, dtype=float) - 1.0)
    return LASGTP_FU_PER_NM3 * (v_fu + extra)


def phase_plasmons(instrument) -> tuple[np.ndarray, np.ndarray]:
    """(E_p, FWHM) in eV of :data:`PHASES`; ``instrument.plasmon_ev > 0`` forces one value for all."""
    ep = np.array([free_electron_plasmon_ev(lasgtp_valence_per_nm3(1.0)),
                   free_electron_plasmon_ev(lasgtp_valence_per_nm3(LI_RICH_REL)),
                   free_electron_plasmon_ev(ALPO4_FU_PER_NM3 * ALPO4_VALENCE_PER_FU),
                   free_electron_plasmon_ev(PT_ATOMS_PER_NM3 * PT_VALENCE)])
    fwhm = np.array([OXIDE_PLASMON_FWHM_EV] * 3 + [PT_PLASMON_FWHM_EV])
    if instrument.plasmon_ev > 0:
        ep = np.full(4, instrument.plasmon_ev)
        fwhm = np.full(4, instrument.plasmon_fwhm_ev)
    return ep, fwhm


def row_scattering(s, instrument) -> tuple[np.ndarray, np.ndarray]:
    """t/lambda per row and the rows' phase weights for the plasmon mixture.

    ``s`` has per-row ``li_rel, host_fraction, thickness_nm, in_pt`` (a RowState or Profiles).
    1/lambda_row = sum_k v_k / lambda_k (scattering probabilities add); weights
    w_k = (v_k / lambda_k) / sum_j (v_j / lambda_j), shape (rows, 4) over :data:`PHASES`.
    ``instrument.inelastic_mfp_nm > 0`` forces one lambda for every phase.
    """
    e0, beta = instrument.beam_energy_kev, instrument.collection_semiangle_mrad
    li = np.nan_to_num(np.asarray(s.li_rel, dtype=float), nan=1.0)
    pt = np.asarray(s.in_pt, dtype=bool)
    host = np.where(pt, 0.0, np.asarray(s.host_fraction, dtype=float))
    alpo4 = np.where(pt, 0.0, 1.0 - host)
    x = np.clip((li - 1.0) / (LI_RICH_REL - 1.0), 0.0, 1.0)
    if instrument.inelastic_mfp_nm > 0:
        lam = np.full((li.size, 3), instrument.inelastic_mfp_nm)
    else:
        lam = np.column_stack([imfp_iakoubovskii_nm(lasgtp_density_g_cm3(li), e0, beta),
                               np.full(li.size, imfp_iakoubovskii_nm(ALPO4_DENSITY_G_CM3, e0, beta)),
                               np.full(li.size, imfp_iakoubovskii_nm(PT_DENSITY_G_CM3, e0, beta))])
    mu = np.column_stack([host * (1 - x) / lam[:, 0], host * x / lam[:, 0], alpo4 / lam[:, 1],
                          pt / lam[:, 2]])
    inv = mu.sum(1)
    return np.asarray(s.thickness_nm, dtype=float) * inv, mu / inv[:, None]


#: Loss (eV) up to which Drude losses are summed for their physical normalisation (beyond it the
#: analytic E^-3 remainder is added: :func:`drude_sum`).
NORM_RANGE_EV = 20000.0


@functools.lru_cache(maxsize=64)
def drude_sum(plasmon_ev: float, fwhm_ev: float, scale_ev: float) -> float:
    """Sum of :func:`.instrument.drude_loss` sampled at 0, dE, 2 dE, ... to infinity: the
    physical normalisation of a unit-area single-scattering distribution (not its sum over a
    finite grid).  Sampled to :data:`NORM_RANGE_EV`, plus the analytic tail beyond E_N,
    sum_{E > E_N} E_p^2 G / E^3 ~ E_p^2 G / (2 E_N^2 dE) (the Drude loss for E >> E_p, G)."""
    e = scale_ev * np.arange(int(NORM_RANGE_EV / scale_ev) + 1)
    tail = plasmon_ev**2 * fwhm_ev / (2.0 * e[-1] ** 2 * scale_ev)
    return float(drude_loss(e, plasmon_ev, fwhm_ev).sum() + tail)


def ssd_tf(grid: PaddedGrid, plasmon_ev, fwhm_ev) -> np.ndarray:
    """Fourier transforms (phases, n_freq) of unit-sum Drude losses sampled causally at
    0, dE, 2 dE, ... over the grid length (cf. :func:`.instrument.plasmon_tf`).

    Normalised physically (:func:`drude_sum`: unit sum over all losses, not over the grid), so that
    exp[tau (P - 1)] keeps exactly exp(-tau) unscattered; on a damped grid the losses are damped by
    exp(-gamma lag) (:class:`.instrument.PaddedGrid`): the kernel is then the linear one, its tail
    beyond the grid not folded back."""
    lag = grid.window.scale_ev * np.arange(grid.n_fft)
    ep, fw = np.atleast_1d(plasmon_ev).astype(float), np.atleast_1d(fwhm_ev).astype(float)
    p = drude_loss(lag[None, :], ep[:, None], fw[:, None])
    norm = np.array([drude_sum(float(a), float(b), float(grid.window.scale_ev)) for a, b in zip(ep, fw)])
    return sfft.rfft(p / norm[:, None] * np.exp(-grid.damping_per_ev * lag), axis=-1)


@functools.lru_cache(maxsize=16)
def _shallow_lags(scale_ev: float, beam, names: tuple, n: int) -> np.ndarray:
    """Per-atom single-scattering probability per channel (barn x channel width) of the shallow
    edges at lags 0, dE, ..., (n - 1) dE (cached; not to be modified)."""
    from . import edges as ed

    e = scale_ev * np.arange(n)
    t = np.array([np.where(e > 1.0, ed.EDGES[k].shape(np.maximum(e, 1.0), beam), 0.0) for k in names])
    return t * scale_ev


@functools.lru_cache(maxsize=16)
def _shallow_totals(scale_ev: float, beam, names: tuple, n: int) -> np.ndarray:
    """Sum of :func:`_shallow_lags` over all lags (not only the first n): the sampled part plus the
    integral of the shapes from (n - 1/2) dE on, piecewise power laws between 400 log-spaced points to
    30 keV and the last segment's power law beyond (the hydrogenic tails fall as ~E^-3.8 there)."""
    from . import edges as ed

    x = np.geomspace(scale_ev * (n - 0.5), 3.0e4, 400)
    y = np.maximum(np.array([ed.EDGES[k].shape(x, beam) for k in names]), 1e-300)
    x1, x2, y1, y2 = x[:-1], x[1:], y[:, :-1], y[:, 1:]
    k = np.log(y2 / y1) / np.log(x2 / x1)
    seg = np.where(np.abs(k + 1) > 1e-9, y1 * x1 / (k + 1) * ((x2 / x1) ** (k + 1) - 1), y1 * x1 * np.log(x2 / x1))
    tail = np.where(k[:, -1] < -1, -y[:, -1] * x[-1] / (k[:, -1] + 1), np.inf)
    return _shallow_lags(scale_ev, beam, names, n).sum(1) + seg.sum(1) + tail


@functools.lru_cache(maxsize=16)
def shallow_edge_tf(grid: PaddedGrid, beam, names: tuple):
    """Transforms (edges, n_freq) of the per-atom single-scattering probability per channel
    (barn x channel width) of shallow edges at lags 0, dE, ... over the grid (damped on a damped
    grid), and their physical sums over all losses (:func:`_shallow_totals`), not their sums over
    the grid: the unscattered fraction is then exact and nothing of the tails folds back (cached;
    the arrays are not to be modified)."""
    t = _shallow_lags(float(grid.window.scale_ev), beam, names, grid.n_fft)
    lag = grid.window.scale_ev * np.arange(grid.n_fft)
    return (sfft.rfft(t * np.exp(-grid.damping_per_ev * lag), axis=-1),
            _shallow_totals(float(grid.window.scale_ev), beam, names, grid.n_fft))


def plural_rows_tf(p_tf, weights, tau) -> np.ndarray:
    """exp[tau (sum_k w_k P_k(f) - 1)], (rows, n_freq): Poisson plural scattering, unit area."""
    return np.exp(np.asarray(tau)[:, None] * (np.asarray(weights) @ p_tf - 1.0))


def _emg_mode(sigma, tau):
    """Position of the maximum of a unit Gaussian (sigma) convolved with exp(-E/tau)/tau."""
    if tau <= 0:
        return 0.0

    def neg_log(x):  # log density of the exponentially modified Gaussian (erfcx: no overflow)
        z = (sigma / tau - x / sigma) / np.sqrt(2.0)
        return -(-0.5 * (x / sigma) ** 2 + np.log(special.erfcx(z)))

    return float(optimize.minimize_scalar(neg_log, bounds=(-sigma, sigma + tau), method="bounded",
                                          options={"xatol": 1e-9}).x)


def zlp_log_tf(freq_per_ev, fwhm_ev, tail_ev=0.0):
    """Logarithm of :func:`zlp_tf` (analytic: no underflow; complex frequencies allowed)."""
    f = np.asarray(freq_per_ev)
    f = f if np.iscomplexobj(f) else f.astype(float)   # complex: a damped grid's freq_c
    s = fwhm_ev * FWHM_TO_SIGMA
    g = -2.0 * (np.pi * s * f) ** 2
    if tail_ev <= 0:
        return g
    mode = _emg_mode(s, tail_ev)
    return g - np.log(1.0 + 2j * np.pi * f * tail_ev) + 2j * np.pi * f * mode


def zlp_tf(freq_per_ev, fwhm_ev, tail_ev=0.0):
    """Fourier transform of the unit-area zero-loss peak, maximum at 0 eV.

    R = Gaussian(FWHM ``fwhm_ev``) (*) exp(-E / tail) / tail (E >= 0): an exponentially
    modified Gaussian, transform exp(-2 pi^2 s^2 f^2) / (1 + 2 pi i f tail), moved by its
    mode so that the energy reference (the ZLP maximum, the study's convention) is 0.
    ``tail_ev = 0`` gives the Gaussian of :func:`.instrument.resolution_tf`.  Complex frequencies
    (a damped grid's ``freq_c``) give the transform of the damped ZLP.
    """
    return np.exp(zlp_log_tf(freq_per_ev, fwhm_ev, tail_ev))


def zlp_fwhm_ev(fwhm_ev, tail_ev, step_ev=0.001):
    """FWHM (eV) of the asymmetric ZLP of :func:`zlp_tf` (wider than the Gaussian core)."""
    s = fwhm_ev * FWHM_TO_SIGMA
    x = np.arange(-6 * s, 6 * s + 20 * max(tail_ev, 0.0), step_ev)
    if tail_ev <= 0:
        return float(fwhm_ev)
    y = np.exp(-0.5 * (x / s) ** 2 + np.log(special.erfcx((s / tail_ev - x / s) / np.sqrt(2.0))))
    above = x[y >= 0.5 * y.max()]
    return float(above[-1] - above[0] + step_ev)


def lag_grid(scale_ev: float, n_fft: int) -> PaddedGrid:
    """The damped grid of kernels on ``n_fft`` channels of ``scale_ev`` (lag 0 first)."""
    from ..axes import EnergyAxis
    from .instrument import WRAP_SUPPRESSION

    return PaddedGrid(EnergyAxis(0.0, scale_ev, 2), 0, int(n_fft), float(np.log(1.0 / WRAP_SUPPRESSION)
                                                                          / (n_fft * scale_ev)))


class RowKernel:
    """Every row's energy-loss kernel on damped grids of one length and dispersion, built once:

        H_y(f) = R(f) exp[-2 pi i f d(y)] exp[tau(y) (P_y(f) - 1) + D_y(f) - D_y(0)]

    the ZLP R, the row's energy shift d, Poisson plural scattering in the plasmons P (unit area,
    physically normalised) and in the shallow inner-shell edges D (their single-scattering
    probability per channel, summed over all losses), evaluated at the damped grid's complex
    frequencies (:class:`.instrument.PaddedGrid`), so that the convolution is the linear one with
    the kernels' whole tails.  Every window of the instrument on grids of this length shares it: a
    simulation evaluates it once per block of rows (:meth:`transfer`) for all its windows.
    """

    def __init__(self, instrument, scale_ev: float, n_fft: int, shallow: tuple = ()):
        from . import edges as ed

        self.instrument = instrument
        self.grid = lag_grid(scale_ev, n_fft)
        fc = self.grid.freq_c
        self.shallow = tuple(shallow)
        # the exponent is a row-coefficient matrix times these basis rows: one matrix product, one exp
        basis = [ssd_tf(self.grid, *phase_plasmons(instrument)),
                 zlp_log_tf(fc, instrument.resolution_fwhm_ev, instrument.zlp_tail_ev)[None, :],
                 (-2j * np.pi * fc)[None, :]]
        self.sum_shallow = np.zeros(0)
        if self.shallow:
            beam = ed.Beam(instrument.beam_energy_kev, instrument.collection_semiangle_mrad * 1e-3)
            tfe, self.sum_shallow = shallow_edge_tf(self.grid, beam, self.shallow)
            basis.append(tfe)
        self.basis = np.concatenate(basis, axis=0)
        self._basis_pairs = np.ascontiguousarray(self.basis).view(float)

    def coefficients(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Row coefficients (rows, basis) and the real constants (rows,) of the exponent."""
        from .model import fixed_edge_densities

        tau, w = row_scattering(s, self.instrument)
        shift = np.asarray(s.shift_ev, dtype=float)
        cols = [tau[:, None] * w, np.ones((tau.size, 1)), shift[:, None]]
        const = -tau
        if self.shallow:
            d = fixed_edge_densities(self.shallow, s)
            cols.append(d)
            const = const - d @ self.sum_shallow
        return np.concatenate(cols, axis=1), const

    def transfer(self, s) -> np.ndarray:
        """H_y(f) of the rows of ``s`` (rows, n_freq), complex."""
        c, const = self.coefficients(s)
        # real coefficients times the complex basis seen as (re, im) float pairs: one real product
        # (half the flops of the complex one), the result read back as complex
        expo = (c @ self._basis_pairs).view(complex)
        expo += const[:, None]
        return np.exp(expo, out=expo)


@dataclass(frozen=True)
class LowLossImage:
    """Expected electrons per channel of the low-loss window and its per-row truth."""

    electrons: np.ndarray      # (rows, channels)
    t_over_lambda: np.ndarray  # (rows,) plasmons + the inner-shell losses inside the window


def impulse_tf(grid: PaddedGrid) -> np.ndarray:
    """Transform of a unit impulse at 0 eV on the (damped) grid, per channel: exp(2 pi i f' E_0) / dE."""
    return np.exp(2j * np.pi * grid.freq_c * grid.energy_ev[0]) / grid.window.scale_ev


def inside_t_over_lambda(grid: PaddedGrid, instrument, s, shallow=()) -> np.ndarray:
    """ln(I_t / I_0) of a window ending at ``grid.window.end_ev``: the plasmons' t/lambda plus the
    shallow edges' single-scattering probability up to the window's end."""
    from . import edges as ed
    from .model import fixed_edge_densities

    tau, _ = row_scattering(s, instrument)
    if not (instrument.plural_scattering and shallow):
        return tau
    beam = ed.Beam(instrument.beam_energy_kev, instrument.collection_semiangle_mrad * 1e-3)
    n = int(np.floor(grid.window.end_ev / grid.window.scale_ev + 1e-9)) + 1   # lags up to the window's end
    return tau + fixed_edge_densities(shallow, s) @ _shallow_lags(float(grid.window.scale_ev), beam,
                                                                   tuple(shallow), n).sum(1)


def lowloss_electrons(grid: PaddedGrid, instrument, s, electrons_per_row: float, shallow=(),
                      kernel: RowKernel | None = None, tf=None) -> LowLossImage:
    """The low-loss window, all rows at once (before the blur along y and the detector).

    A unit impulse at 0 eV times the row's kernel (:class:`RowKernel`: the ZLP, the row's energy
    shift and its plural scattering, Poisson in the plasmons and in the ``shallow`` inner-shell
    edges (Ge-M, Ti-M, Li-K, Al-L, ... of the Li-K window), the same kernel the core-loss windows are
    convolved with), linear (a damped grid: nothing of the tails folds back below the ZLP); times the
    electrons per row in the exposure.  Counts are conserved up to what scatters beyond the window's
    end.  ``t_over_lambda`` is what the window holds, ln(I_t / I_0): the plasmons' t/lambda plus the
    inner-shell single-scattering probability inside the window.  ``tf`` = the kernel's
    :meth:`RowKernel.transfer` of these rows if already evaluated.
    """
    f = grid.freq_c
    if instrument.plural_scattering:
        kernel = kernel or RowKernel(instrument, grid.window.scale_ev, grid.n_fft, tuple(shallow))
        tf = kernel.transfer(s) if tf is None else tf
    else:
        tf = zlp_tf(f, instrument.resolution_fwhm_ev, instrument.zlp_tail_ev)[None, :] * shift_tf(f, s.shift_ev)
    out = sfft.irfft(tf * impulse_tf(grid)[None, :], n=grid.n_fft, axis=-1, workers=-1)[:, grid.crop]
    if grid.damping_per_ev > 0:
        out *= grid.undamp()
    out *= grid.window.scale_ev * electrons_per_row
    return LowLossImage(np.clip(out, 0.0, None, out=out), inside_t_over_lambda(grid, instrument, s, shallow))
