"""Why Cr2O3 lies further from its refinement than the other reference oxides (issue 15).

Run by hand in the CHGNet environment (torch; never in CI), as ``validation/relax_nasicon.py``::

    PYTHONPATH=. /work/venv-relax/bin/python validation/relax_corundum_check.py [--seed S] [--out DIR]

Relaxes the two corundum-type reference oxides, alpha-Al2O3 (no d electrons) and Cr2O3
(Cr3+, d3, antiferromagnetic below T_N = 308 K), by the recipe of ``relax_nasicon.py`` (primitive
cell, 0.01 A rattle, FIRE on a FrechetCellFilter, fmax 0.05 eV/A) and writes, per oxide
(``OUT/corundum_check.json``):

- the hexagonal a, c and volume, relaxed / refined;
- the mean octahedral O-O edge, and its three kinds in the corundum structure, sorted by length per
  octahedron: the 3 edges of the face shared with the octahedron along c (shortest), the 3 edges
  shared with neighbours in the layer, and the 6 unshared ones;
- the M-M distance across the shared face;
- CHGNet's site magnetic moments.  CHGNet takes no spin as input: its moment is the absolute value
  of a linear read-out of each atom's features (``chgnet.model.model.CHGNet``, ``site_wise``), an
  output trained on the Materials Project's moments.  Energies and forces depend on positions and
  species only, so the potential cannot tell an antiferromagnetic from a ferromagnetic Cr2O3: it
  relaxes to whatever the training data (GGA+U for Cr oxides in the Materials Project) made of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sreels.structures import oo  # noqa: E402


def hexagonal(atoms):
    """(a, c) of a rhombohedral primitive corundum cell (A)."""
    cell = np.asarray(atoms.cell)
    return float(np.linalg.norm(cell[0] - cell[1])), float(np.linalg.norm(cell.sum(axis=0)))


def edge_kinds(atoms, cation, name):
    """Mean (nm) of the 3 shortest (shared face), 3 next (shared with the layer) and 6 longest edges."""
    e = np.sort(oo.octahedral_edges_nm(atoms, cation, name), axis=1)
    return {"mean": float(e.mean()), "face": float(e[:, :3].mean()), "layer": float(e[:, 3:6].mean()),
            "unshared": float(e[:, 6:].mean())}


def mm_face(atoms, cation):
    """Shortest cation-cation distance (A): across the shared face in corundum."""
    idx = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == cation]
    d = atoms.get_all_distances(mic=True)[np.ix_(idx, idx)]
    return float(np.min(d[d > 0.1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20141516)
    ap.add_argument("--out", default=str(ROOT / "validation" / "results" / "15_structures"))
    args = ap.parse_args(argv)
    import torch
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    sys.path.insert(0, str(ROOT / "validation"))
    from relax_nasicon import relax

    torch.set_num_threads(1)
    model = CHGNet.load(verbose=False)
    calc = CHGNetCalculator(model=model, use_device="cpu")
    rng = np.random.default_rng(args.seed)
    out = {"command": "python validation/relax_corundum_check.py " + " ".join(argv or sys.argv[1:]),
           "chgnet_model": str(model.version), "seed": args.seed, "oxides": []}
    for key in ("Al2O3_corundum", "Cr2O3"):
        b = oo.BUILTIN[key]
        ref = AseAtomsAdaptor.get_atoms(AseAtomsAdaptor.get_structure(oo.load_builtin(key)).get_primitive_structure())
        a = ref.copy()
        a.positions += rng.normal(0.0, 0.01, a.positions.shape)
        t0 = time.time()
        r, e, n, conv, _ = relax(a, calc, 0.05, 400)
        calc.calculate(r)
        sym = np.array(r.get_chemical_symbols())
        mag = np.asarray(calc.results["magmoms"])
        (a0, c0), (a1, c1) = hexagonal(ref), hexagonal(r)
        k0, k1 = edge_kinds(ref, b.cation, key), edge_kinds(r, b.cation, key)
        row = {"name": key, "steps": n, "converged": conv, "seconds": time.time() - t0,
               "a_ratio": a1 / a0, "c_ratio": c1 / c0, "volume_ratio": r.get_volume() / ref.get_volume(),
               "a_refined_ang": a0, "c_refined_ang": c0, "a_relaxed_ang": a1, "c_relaxed_ang": c1,
               "edges_refined_nm": k0, "edges_relaxed_nm": k1,
               "edge_ratios": {k: k1[k] / k0[k] for k in k0},
               "mm_face_refined_ang": mm_face(ref, b.cation), "mm_face_relaxed_ang": mm_face(r, b.cation),
               "cation_magmom_mub": mag[sym == b.cation].tolist(), "o_magmom_mub_max": float(mag[sym == "O"].max())}
        out["oxides"].append(row)
        print(json.dumps(row, indent=1), flush=True)
    path = Path(args.out) / "corundum_check.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
