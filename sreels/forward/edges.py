"""Core-loss edge shapes per atom (barn / eV), before energy resolution.

Continua are hydrogenic (:mod:`.crosssections`); near-edge structure is parametric:
Gaussian peaks on top of arctan-rounded onsets.  Every edge is a pure function of
the energy axis and the instrument (beam energy, collection angle).  Parametric
heights are model choices, stated here, tuned to resemble the spectra of
Yamamoto et al. (2014) Fig. 6(c, d); measured references can replace them in the
inversion.

Edge onsets (eV) from exspy's binding-energy table and Egerton's SIGMAL3 tables
(L3 / L1): Li-K 55, O-K 532, Al-L 73/118, Si-L 99/149, P-L 132/189, Ti-L 456/564,
Ti-M2,3 35, Ge-M4,5 29 (DESIGN.md, "Numbers worth having at hand").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .crosssections import hydrogenic_dsigma_de

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

# ----------------------------------------------------------- Ti-L2,3 lines
# Ti4+ white lines, crystal-field split (rutile / anatase / SrTiO3 literature; DESIGN.md):
# (centre eV, FWHM eV, share of its L edge).  t2g:eg = 0.4:0.6 is a model choice.
TI4_L3 = ((457.8, 0.6, 0.4), (460.0, 1.3, 0.6))
TI4_L2 = ((463.0, 1.1, 0.4), (465.4, 1.8, 0.6))
TI4_L2_L3 = 1.30   # Stoyanov et al., Am. Mineral. 92 (2007) 577, as quoted by Yamamoto 2014
TI3_L2_L3 = 1.25   # idem
TI3_SHIFT_EV = -1.7  # Yamamoto 2014, Sec. 3.3 (Stoyanov et al. report ~2 eV per valence step)
TI3_FWHM_EV = (1.9, 2.4)  # unresolved crystal-field splitting (L3, L2)
# White-line area relative to the hydrogenic L2,3 continuum integrated over 50 eV.
TI_WHITE_LINE_RATIO = 1.2
# White-line intensity ~ number of 3d holes (Pearson et al., Phys. Rev. B 47 (1993) 8471):
# d0 (Ti4+) -> 10 holes, d1 (Ti3+) -> 9 holes.
TI3_HOLE_RATIO = 0.9


def _centroid(lines):
    w = np.array([s for _, _, s in lines])
    return float(np.dot([c for c, _, _ in lines], w) / w.sum())


#: Ti3+ L3 and L2 centres: the Ti4+ centroids shifted by TI3_SHIFT_EV.
TI3_L3_EV = _centroid(TI4_L3) + TI3_SHIFT_EV
TI3_L2_EV = _centroid(TI4_L2) + TI3_SHIFT_EV
#: Energy separating the L3 and L2 white lines for window integration (eV).
TI_L3_L2_SPLIT_EV = 461.8


def gaussian(e, centre, fwhm, area=1.0):
    """Area-normalised Gaussian (1/eV) times ``area``; broadcasts."""
    s = fwhm * FWHM_TO_SIGMA
    return area / (s * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((e - centre) / s) ** 2)


def rounded_step(e, onset, width):
    """0 -> 1 arctan step centred on ``onset`` with half-width ``width`` (eV)."""
    return 0.5 + np.arctan((e - onset) / width) / np.pi


@dataclass(frozen=True)
class Beam:
    beam_energy_kev: float
    beta_rad: float


def _hyd(e, z, shell, onset, beam, l1=None):
    return hydrogenic_dsigma_de(e, z, shell, onset, beam.beam_energy_kev, beam.beta_rad, l1)


def li_k(e, beam):
    """Li-K: hydrogenic K (Z = 3, onset 55 eV), onset rounded at 59 eV, main peak at 61.8 eV.

    The 61.8 eV peak is that of the measured Li-K in ../shared/data (LiF-like SEI);
    Saitoh et al., PCCP 20 (2018), doi:10.1039/c8cp03390k, put the main Li-K peak of
    battery materials near 62 eV.
    """
    cont = _hyd(e, 3, "K", 55.0, beam)
    ref = _hyd(np.array([62.0]), 3, "K", 55.0, beam)[0]
    return cont * rounded_step(e, 59.0, 0.6) + gaussian(e, 61.8, 2.5, area=1.2 * ref * 2.5)


def delayed_edge(e, onset, delay_ev, peak_barn_per_ev):
    """Delayed M edge: peak * 2u / (1 + u^2) * ((onset + delay) / E)^2, u = (E - onset) / delay."""
    u = np.clip((e - onset) / delay_ev, 0.0, None)
    return peak_barn_per_ev * 2 * u / (1 + u**2) * ((onset + delay_ev) / np.maximum(e, onset)) ** 2


def ti_m23(e, beam):
    """Ti-M2,3: delayed maximum ~47 eV.  Peak 8e3 barn/eV is an assumed order of magnitude
    (hydrogenic Li-K scaled by the 6 3p electrons); no tabulated value was found."""
    return delayed_edge(e, 35.0, 12.0, 8.0e3)


def ge_m45(e, beam):
    """Ge-M4,5: delayed, broad.  Peak 5e3 barn/eV: assumed, as for Ti-M2,3."""
    return delayed_edge(e, 29.0, 20.0, 5.0e3)


def l_edge(z, l3, l1):
    def f(e, beam):
        return _hyd(e, z, "L", l3, beam, l1) * rounded_step(e, l3 + 1.0, 0.8)
    return f


def ti_l_continuum(e, beam, shift_ev=0.0):
    """Hydrogenic Ti-L2,3 continuum with L3:L2 = 2:1 arctan steps at the white lines."""
    steps = (2 * rounded_step(e, 458.5 + shift_ev, 0.6) + rounded_step(e, 464.0 + shift_ev, 0.6)) / 3
    return _hyd(e - shift_ev, 22, "L", 456.0, beam, 564.0) * steps


def _ti_white_line_area(beam):
    e = np.linspace(456.001, 506.0, 2001)
    return TI_WHITE_LINE_RATIO * float(np.trapezoid(_hyd(e, 22, "L", 456.0, beam, 564.0), e))


def ti4_white_lines(e, beam):
    w = _ti_white_line_area(beam)
    a3 = w / (1 + TI4_L2_L3)
    out = sum(gaussian(e, c, f, a3 * s) for c, f, s in TI4_L3)
    return out + sum(gaussian(e, c, f, TI4_L2_L3 * a3 * s) for c, f, s in TI4_L2)


def ti3_white_lines(e, beam):
    w = TI3_HOLE_RATIO * _ti_white_line_area(beam)
    a3 = w / (1 + TI3_L2_L3)
    return gaussian(e, TI3_L3_EV, TI3_FWHM_EV[0], a3) + gaussian(e, TI3_L2_EV, TI3_FWHM_EV[1], TI3_L2_L3 * a3)


def ti4_l23(e, beam):
    """Ti4+ L2,3 per Ti atom: crystal-field-split white lines + continuum."""
    return ti4_white_lines(e, beam) + ti_l_continuum(e, beam)


def ti3_l23(e, beam):
    """Ti3+ L2,3 per Ti atom: shifted by -1.7 eV, splitting unresolved, L2/L3 = 1.25."""
    return ti3_white_lines(e, beam) + ti_l_continuum(e, beam, TI3_SHIFT_EV)


# ------------------------------------------------------------------ O-K
O_K_ONSET_EV = 532.0
# Pre-peaks of O 2p - Ti 3d hybridisation (t2g, eg), split by 2.5 eV as in TiO2 (de Groot et al.,
# Phys. Rev. B 40 (1989) 5715: ~531 and ~533.5 eV on their scale): (centre, FWHM, height / sigma_ref).
# Placed on the study's scale, whose O-K threshold is 529.0 eV (Yamamoto et al. 2014, Sec. 3.3):
# the threshold measured by sreels.inference.okpeaks (the leading edge's inflection at 1.5 eV
# effective resolution) of this model is 529.0 eV (tested), so that dE_b = E_b - E_th = C / R^2.
O_THRESHOLD_EV = 529.0
O_PREPEAKS = ((529.765, 1.0, 1.0), (532.265, 1.4, 0.9))
O_PEAK_A_FWHM_EV = 3.0
O_PEAK_A_HEIGHT = 0.8
O_PEAK_B_FWHM_EV = 6.0
O_PEAK_B_HEIGHT = 0.5
O_REF_EV = 545.0


def o_k_reference(beam):
    """Hydrogenic O-K dsigma/dE at 545 eV (barn/eV): the unit of the parametric peak heights."""
    return float(_hyd(np.array([O_REF_EV]), 8, "K", O_K_ONSET_EV, beam)[0])


def o_k_continuum(e, beam):
    return _hyd(e, 8, "K", O_K_ONSET_EV, beam) * rounded_step(e, 535.0, 1.2)


def o_k_prepeaks(e, beam):
    """O-K pre-peaks (barn/eV per O atom in the Ti-bearing phase)."""
    ref = o_k_reference(beam)
    return sum(h * ref * np.exp(-0.5 * ((e - c) / (f * FWHM_TO_SIGMA)) ** 2) for c, f, h in O_PREPEAKS)


def o_k_peaks(e, beam, peak_a_ev, peak_a_rel, peak_b_ev):
    """Peaks "a" and "b" per O atom for every row: e (n,), row arrays (rows,) -> (rows, n)."""
    ref = o_k_reference(beam)
    e = e[None, :]
    a = O_PEAK_A_HEIGHT * ref * np.asarray(peak_a_rel)[:, None] * np.exp(
        -0.5 * ((e - np.asarray(peak_a_ev)[:, None]) / (O_PEAK_A_FWHM_EV * FWHM_TO_SIGMA)) ** 2)
    b = O_PEAK_B_HEIGHT * ref * np.exp(
        -0.5 * ((e - np.asarray(peak_b_ev)[:, None]) / (O_PEAK_B_FWHM_EV * FWHM_TO_SIGMA)) ** 2)
    return a + b


@dataclass(frozen=True)
class EdgeSpec:
    """A modelled edge: its element, the lowest onset (eV) and its per-atom shape."""

    element: str
    onset_ev: float
    shape: object  # callable (e, beam) -> barn/eV


#: Edges with a fixed shape per atom (Ti-L and O-K vary along y and are handled apart).
EDGES = {
    "Ge-M45": EdgeSpec("Ge", 29.0, ge_m45),
    "Ti-M23": EdgeSpec("Ti", 35.0, ti_m23),
    "Li-K": EdgeSpec("Li", 55.0, li_k),
    "Al-L23": EdgeSpec("Al", 73.0, l_edge(13, 73.0, 118.0)),
    "Si-L23": EdgeSpec("Si", 99.0, l_edge(14, 99.0, 149.0)),
    "P-L23": EdgeSpec("P", 132.0, l_edge(15, 132.0, 189.0)),
    "Ti-L23": EdgeSpec("Ti", 456.0, ti4_l23),
    "O-K": EdgeSpec("O", 529.0, o_k_continuum),
}
