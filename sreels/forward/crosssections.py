"""Hydrogenic K- and L-shell energy-differential cross sections.

The generalised oscillator strengths are those of R. F. Egerton's SIGMAK3 and
SIGMAL3 programs (Egerton, *Electron Energy-Loss Spectroscopy in the Electron
Microscope*, 3rd ed., Springer 2011, Appendix B), as also used by exspy's
``hydrogenic_gos.py``.  The integral over momentum transfer is done on a fixed
Gauss-Legendre grid in ln(q^2), vectorised over energy, instead of a quadrature
call per energy.

Units: energies in eV, beam energy in keV, angles in rad, cross sections in
barn per eV per atom (1 barn = 1e-28 m^2).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from ..errors import SreelsInputError

RYDBERG_EV = 13.606  # Egerton's value in SIGMAK3/SIGMAL3
#: 4 pi a0^2 in barn (a0 = 0.529177e-10 m).
FOUR_PI_A0SQ_BARN = 3.5166e8
MC2_EV = 511060.0  # electron rest energy used in SIGMAK3 (eV)

# Egerton's empirical exponent correcting the hydrogenic L GOS for Z = 11..36
# (SIGMAL3; tabulated in exspy hydrogenic_gos.py as XU).
_XU = [0.82, 0.52, 0.52, 0.42, 0.30, 0.29, 0.22, 0.30, 0.22, 0.16, 0.12, 0.13,
       0.13, 0.14, 0.16, 0.18, 0.19, 0.22, 0.14, 0.11, 0.12, 0.12, 0.12, 0.10,
       0.10, 0.10]

_GL_X, _GL_W = np.polynomial.legendre.leggauss(96)
#: dsigma/dE is evaluated within this of its non-smooth energies, interpolated elsewhere (:func:`_dsigma_de`) ...
_EXACT_EV = 5.0
#: ... between nodes this far apart in ln(E - onset)
_GRADED_STEP = 0.01

#: Results of :func:`hydrogenic_dsigma_de` kept for identical inputs (the simulator, the joint fit's model
#: and the fast path's references ask for the same edges on the same axes; ``sreels plan`` did the same
#: ~0.1 s evaluation up to 8 times).  Keyed by a digest of the energy array and the other arguments.
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 64
_CACHE_MAX_ENERGIES = 200_000
_CACHE_LOCK = threading.Lock()   # sreels plan evaluates the fast path in a thread beside the joint fit


def _kinematics(energy_ev, beam_energy_kev, beta_rad):
    """ln(q a0)^2 limits for scattering angles 0..beta (SIGMAK3 expressions)."""
    gamma = 1.0 + beam_energy_kev / 511.06
    t = MC2_EV * (1.0 - 1.0 / gamma**2) / 2.0  # "T" = m v^2 / 2 (eV)
    e = energy_ev
    qmin = e**2 / (4 * RYDBERG_EV * t) + e**3 / (8 * gamma**3 * RYDBERG_EV * t**2)
    p02 = t / (RYDBERG_EV * (1 - 2 * t / MC2_EV))
    pp2 = p02 - e / RYDBERG_EV * (gamma - e / 1022120.0)
    qmax = qmin + 4 * np.sqrt(p02 * pp2) * np.sin(beta_rad / 2) ** 2
    return t, qmin, qmax


def _coulomb_factor(out, akh, above, t, m):
    """SIGMAK3/SIGMAL3's Coulomb factor on the rows of ``out`` (energies, q points), in place: exp(-2/k
    atan(m k / t)) above the edge (kh^2 >= 0, its denominator 1 - exp(-2 pi / k) returned per energy, 1
    below) and ((t + m k) / (t - m k))^(-1/k) below; m = 2 (K shell) or 1 (L shell), t = q - kh^2 + const."""
    d = np.ones(akh.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        if above.any():
            ak = akh[above, None]
            bp = np.arctan(m * ak / t[above])
            bp[bp < 0] += np.pi
            out[above] *= np.exp(-2.0 / ak * bp)
            d[above] = 1 - np.exp(-2 * np.pi / akh[above])
        if (~above).any():
            ak = akh[~above, None]
            tb = t[~above]
            out[~above] *= np.exp(-1.0 / ak * np.log((tb + m * ak) / (tb - m * ak)))
    return d


def _gos_k_rows(em, qa02, z):
    """Hydrogenic K-shell df/dE (per eV per atom), Egerton SIGMAK3, on a (energies, q points) grid, ``em``
    1-D: the expressions above and below kh^2 = 0 evaluated only on their rows and the cube as products;
    equal to SIGMAK3 written out on the whole grid to ~1e-13 relative (tests/forward/test_crosssections.py)."""
    zs, rnk = (1.0, 1) if z == 1 else (z - 0.5, 2)
    r = RYDBERG_EV
    q = qa02 / zs**2
    kh2 = em / (r * zs**2) - 1.0
    akh = np.maximum(np.sqrt(np.abs(kh2)), 0.01)
    above = kh2 >= 0
    k = kh2[:, None]
    t = q - k + 1
    a = t**2 + 4 * k
    out = (q + k / 3 + 1 / 3) / (a * a * a)
    d = _coulomb_factor(out, akh, above, t, 2.0)
    out *= (128 * rnk * em / (r * zs**4) / d / r)[:, None]
    return out


def _gos_l_rows(em, qa02, z, onset_l3_ev, onset_l1_ev):
    """Hydrogenic L-shell df/dE (per eV per atom), Egerton SIGMAL3, on a (energies, q points) grid, ``em``
    1-D: each expression evaluated only where it applies (above/below kh^2 = 0 and the L1 onset are per
    energy, so per row of the grid), the polynomials in Horner form with per-row coefficients and the powers
    as products; equal to SIGMAL3 written out on the whole grid to ~1e-13 relative
    (tests/forward/test_crosssections.py), ~3x less CPU than that."""
    r = RYDBERG_EV
    zs = z - 0.35 * (8 - 1) - 1.7
    iz = z - 11
    u = _XU[iz] if 0 <= iz < len(_XU) else 0.1
    q = qa02 / zs**2
    kh2 = em / (r * zs**2) - 0.25
    akh = np.sqrt(np.abs(kh2))
    above = kh2 >= 0
    below_l1 = em - onset_l1_ev <= 0
    t = q - kh2[:, None] + 0.25
    s = t * t + kh2[:, None]
    s2 = s * s
    a = s2 * s2                                             # ((q - kh2 + 0.25)^2 + kh2)^4
    out = np.empty_like(q)
    for rows, first in ((below_l1, True), (~below_l1, False)):
        if not rows.any():
            continue
        k = kh2[rows, None]
        qq = q[rows]
        if first:       # g1 / a1, a1 = a s
            c3 = -(0.75 + 3 * k)
            c2 = 0.59375 - 0.75 * k - 0.5 * k**2
            c1 = 0.11146 + 0.85417 * k + 1.8833 * k * k + k**3
            c0 = 0.0035807 + k / 21.333 + k * k / 4.5714 + k**3 / 2.4 + k**4 / 4
            g = (((2.25 * qq + c3) * qq + c2) * qq + c1) * qq + c0
            out[rows] = g / (a[rows] * s[rows])
        else:           # g2 / a2
            c2 = -(5 / 3 * k + 11 / 12)
            c1 = k * k / 3 + 1.5 * k + 65 / 48
            c0 = k**3 / 3 + 0.75 * k * k + 23 / 48 * k + 5 / 64
            g = ((qq + c2) * qq + c1) * qq + c0
            out[rows] = g / a[rows]
    d = _coulomb_factor(out, akh, above, t, 1.0)
    rf = np.maximum((em + 0.1 - onset_l3_ev) / 1.8 / z / z, 0.0) ** u
    out *= (rf * 32 / d * em / r / r / zs**4)[:, None]
    return out


def hydrogenic_dsigma_de(energy_ev, z: int, shell: str, onset_ev: float, beam_energy_kev: float,
                         beta_rad: float, onset_l1_ev: float | None = None) -> np.ndarray:
    """Energy-differential cross section dsigma/dE integrated over 0..beta.

    sigma'(E) = 4 pi a0^2 (R/T)(R/E) * integral of df/dE d ln(q^2 a0^2)
    (Egerton 2011, Eq. 3.145 and Appendix B).

    Parameters
    ----------
    energy_ev : array_like
        Energy losses (eV); zero below ``onset_ev``.
    z : int
        Atomic number.
    shell : {"K", "L"}
    onset_ev : float
        Edge threshold (eV); for "L" the L3 onset.
    beam_energy_kev, beta_rad : float
        Incident energy (keV) and collection semi-angle (rad).
    onset_l1_ev : float, optional
        L1 onset (eV), required for "L".

    Returns
    -------
    ndarray
        barn / eV / atom, same shape as ``energy_ev``.
    """
    e = np.asarray(energy_ev, dtype=float)
    if shell not in ("K", "L"):
        raise SreelsInputError(f"hydrogenic cross sections exist for K and L shells, got {shell!r}")
    if shell == "L" and onset_l1_ev is None:
        raise SreelsInputError("an L-shell cross section needs onset_l1_ev")
    if e.size > _CACHE_MAX_ENERGIES:
        return _dsigma_de(e, z, shell, onset_ev, beam_energy_kev, beta_rad, onset_l1_ev)
    key = (hashlib.blake2b(np.ascontiguousarray(e).tobytes(), digest_size=16).digest(), e.shape, int(z), shell,
           float(onset_ev), float(beam_energy_kev), float(beta_rad), None if onset_l1_ev is None else float(onset_l1_ev))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
    if hit is None:
        hit = _dsigma_de(e, z, shell, onset_ev, beam_energy_kev, beta_rad, onset_l1_ev)
        hit.setflags(write=False)
        with _CACHE_LOCK:
            _CACHE[key] = hit
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return hit.copy()


def _special_ev(z, shell, onset_ev, onset_l1_ev) -> list:
    """The energies where dsigma/dE is not smooth: the onset, the L1 onset (a step) and kh^2 = 0, where SIGMAK3 /
    SIGMAL3 change branch (E = R Zs^2, R Zs^2 / 4 for L)."""
    zs = (1.0 if z == 1 else z - 0.5) if shell == "K" else z - 0.35 * (8 - 1) - 1.7
    return [onset_ev, RYDBERG_EV * zs ** 2 * (1.0 if shell == "K" else 0.25)] + \
        ([onset_l1_ev] if shell == "L" else [])


def _dsigma_de(e, z, shell, onset_ev, beam_energy_kev, beta_rad, onset_l1_ev):
    """dsigma/dE on ``e``: evaluated where E lies within :data:`_EXACT_EV` of an energy of :func:`_special_ev`, and
    elsewhere, where it is smooth, interpolated in log-log (E - onset) between nodes :data:`_GRADED_STEP` apart
    in ln(E - onset), when that evaluates fewer energies (the simulator's and the fits' axes: 4374 -> ~600 for
    Ti-L2,3, 4x less CPU).  Within 4e-5 of the full evaluation for K (Li, O) and L (Al, Si, P, Ti) edges at
    60-300 kV and 5-200 mrad over 1500 eV (tests/forward/test_crosssections.py)."""
    out = np.zeros_like(e)
    m = e > onset_ev
    if not np.any(m):
        return out
    em = e[m]
    special = _special_ev(z, shell, onset_ev, onset_l1_ev)
    near = np.zeros(em.size, bool)
    for s in special:
        near |= np.abs(em - s) < _EXACT_EV
    x0, xmax = _EXACT_EV, float(em.max()) - onset_ev
    n = int(np.ceil(np.log(max(xmax, x0) / x0) / np.log1p(_GRADED_STEP))) + 2
    nodes = onset_ev + x0 * (1.0 + _GRADED_STEP) ** np.arange(n)
    borders = np.array([b for s in special[1:] for b in (s - _EXACT_EV, s + _EXACT_EV) if b > onset_ev + x0])
    nodes = np.unique(np.concatenate([nodes, borders]))
    if em.size <= 1.5 * (nodes.size + np.count_nonzero(near)):
        out[m] = _evaluate(em, z, shell, onset_ev, beam_energy_kev, beta_rad, onset_l1_ev)
        return out
    vals = _evaluate(np.concatenate([nodes, em[near]]), z, shell, onset_ev, beam_energy_kev, beta_rad, onset_l1_ev)
    res = np.empty(em.size)
    res[near] = vals[nodes.size:]
    res[~near] = np.exp(np.interp(np.log(em[~near] - onset_ev), np.log(nodes - onset_ev), np.log(vals[:nodes.size])))
    out[m] = res
    return out


def _evaluate(em, z, shell, onset_ev, beam_energy_kev, beta_rad, onset_l1_ev):
    """dsigma/dE at energies ``em`` above the onset: the GOS integrated over ln(q^2) on the Gauss-Legendre grid."""
    t, qmin, qmax = _kinematics(em, beam_energy_kev, beta_rad)
    lo, hi = np.log(qmin), np.log(qmax)
    half = 0.5 * (hi - lo)
    x = (0.5 * (hi + lo))[:, None] + half[:, None] * _GL_X[None, :]
    qa02 = np.exp(x)
    gos = _gos_k_rows(em, qa02, z) if shell == "K" else _gos_l_rows(em, qa02, z, onset_ev, onset_l1_ev)
    integral = half * (gos @ _GL_W)
    return FOUR_PI_A0SQ_BARN * (RYDBERG_EV / t) * (RYDBERG_EV / em) * integral


def integrated_cross_section(z, shell, onset_ev, beam_energy_kev, beta_rad, window_ev,
                             onset_l1_ev=None, step_ev=0.05):
    """sigma(beta, Delta) = integral of dsigma/dE from the onset over ``window_ev`` (barn)."""
    e = onset_ev + np.arange(0.0, window_ev + step_ev / 2, step_ev)
    e[0] += 1e-9
    return float(np.trapezoid(hydrogenic_dsigma_de(e, z, shell, onset_ev, beam_energy_kev, beta_rad,
                                                   onset_l1_ev), e))
