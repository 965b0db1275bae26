"""Atom densities of the phases along the slit.

LASGTP main phase Li_{1+x}Al_xGe_yTi_{2-x-y}P3O12 (Yamamoto 2014, Sec. 2.1).  x = 0.3
is the composition of highest conductivity in Li_{1+x}Al_xTi_{2-x}(PO4)3 glass-ceramics
(J. Fu, J. Am. Ceram. Soc. 80 (1997) 1901, ref. [10] of the study); y = 0.1 Ge and a
little Si (sub-phase) are illustrative: the study gives no numbers.  The formula-unit
density uses the NASICON LiTi2(PO4)3 cell, R-3c, a ~ 0.851 nm, c ~ 2.084 nm, Z = 6
(as reported e.g. by Aatiq et al., J. Mater. Chem. 12 (2002) 2971): V = 1.307 nm^3,
6 / V = 4.59 f.u. per nm^3.

AlPO4 (berlinite): density 2.62 g/cm^3, M = 121.95 g/mol (CRC Handbook) ->
12.9 formula units per nm^3, i.e. 51.8 O per nm^3.
"""

from __future__ import annotations

LASGTP_FU_PER_NM3 = 6 / (0.866025 * 0.851**2 * 2.084)

#: atoms per formula unit of the parent LASGTP main phase (x = 0.3, y = 0.1).
LASGTP_ATOMS_PER_FU = {"Li": 1.3, "Al": 0.3, "Ge": 0.1, "Ti": 1.6, "Si": 0.05, "P": 3.0, "O": 12.0}

ALPO4_FU_PER_NM3 = 2.62 / 121.95 * 6.02214e23 / 1e21
ALPO4_ATOMS_PER_FU = {"Al": 1.0, "P": 1.0, "O": 4.0}


def density_per_nm3(element: str, phase: str = "LASGTP") -> float:
    """Number density (atoms / nm^3) of ``element`` in ``phase`` ('LASGTP' or 'AlPO4')."""
    if phase == "LASGTP":
        return LASGTP_FU_PER_NM3 * LASGTP_ATOMS_PER_FU.get(element, 0.0)
    if phase == "AlPO4":
        return ALPO4_FU_PER_NM3 * ALPO4_ATOMS_PER_FU.get(element, 0.0)
    raise ValueError(f"unknown phase {phase!r}")
