"""Calibrate C of the O-K resonance rule ΔE·R² = C
================================================

O-O distances of the built-in crystal structures (ASE), then C fitted to the O-K spectra of
reference oxides (the measured set in ``../shared/data`` when it is there, else the
literature pairs ΔE = 2.820 / R², which only checks the fit), compared with the study's
2.820 eV nm².

Run: ``python examples/calibrate_c.py``.
"""

from sreels.structures.commands import calibrate
from sreels.structures.oo import builtin_oo


def main():
    print(f"{'structure':<18}{'octahedral edge (nm)':>22}{'nearest O-O (nm)':>18}")
    for o in builtin_oo():
        print(f"{o.name:<18}{o.oo_octahedral_edge_nm:>22.4f}{o.oo_nearest_nm:>18.4f}")
    res, pairs, extra, note = calibrate()
    if note:
        print("note:", note)
    print(f"C = {res.c_ev_nm2:.3f} ± {res.c_err_ev_nm2:.3f} eV nm² from {len(res.points)} spectra "
          f"(chi2/dof {res.chi2_dof:.2f}); the study: 2.820 ({res.compare():+.1f} sigma)")
    return res


if __name__ == "__main__":
    main()
