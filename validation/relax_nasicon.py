"""Computed NASICON structures Li(1+x)Ti2(PO4)3 and the potential's bias on reference oxides (CHGNet).

Run by hand in a separate environment that has the ``relax`` extra (torch never enters the
package's own environment or CI)::

    python3 -m venv /work/venv-relax
    /work/venv-relax/bin/pip install torch  # CPU wheel
    /work/venv-relax/bin/pip install "chgnet==0.4.2" ase
    /work/venv-relax/bin/pip install --no-deps -e .
    /work/venv-relax/bin/python validation/relax_nasicon.py [--arrangements N] [--seed S] [--out DIR]
    python validation/relax_nasicon.py --merge RUN.json [RUN.json ...]   # -> data/nasicon_series.json (no torch)

The shipped files were made by the commands listed in
``validation/results/15_structures/README.md`` (two runs in parallel on two shared cores).

What it does
------------
1. **Start.**  LiTi2(PO4)3 in R-3c (No. 167, hexagonal setting) from the NASICON Wyckoff sites
   Li 6b (0, 0, 0) [M1], Ti 12c (0, 0, z), P 18e (x, 0, 1/4), O1 and O2 36f, with coordinates
   :data:`START_SITES` typed in by hand at the values of the published LiTi2(PO4)3 refinements
   (to ~0.005 in fractional coordinates; Aatiq et al., J. Mater. Chem. 12 (2002) 2971, the
   study's ref. [22]) and the cell a = 8.513, c = 20.878 A (JCPDS 35-0754, the powder pattern
   usually quoted for LiTi2(PO4)3).  No CIF was copied.  Because the start is approximate, it
   is relaxed from ``--starts`` noisy copies (0.05 A Gaussian displacements) to show the
   result does not depend on it.
2. **Relax** cell and positions with CHGNet 0.4.2 (pretrained weights shipped in the wheel),
   ASE FIRE on a ``FrechetCellFilter``, fmax = 0.05 eV/A, at most ``--steps`` steps, in the
   rhombohedral primitive cell (2 formula units, 36 atoms).
3. **Li(1+x)Ti2(PO4)3**, x = 0 ... 3 in steps of 0.5: 2(1+x) Li per primitive cell distributed
   over the 2 M1 (6b) and 6 M2 (18e, (0.64, 0, 1/4)) cavities, ``--arrangements`` distinct random
   choices per x (numpy Generator, seed recorded; every distinct choice when there are fewer),
   each relaxed from the x = 0 relaxed framework; the lowest-energy one is kept and the spread
   of the mean TiO6 edge over all arrangements is reported.
4. **Rescaled** edges: the relaxed cell of every x strained by the factors that bring the x = 0
   cell onto the published a, c (in-plane factor s_a, along the hexagonal c axis s_c).
5. **Reference oxides** of ``sreels/structures/data`` relaxed by the same recipe (primitive
   cells; a 0.01 A rattle so that forces are not exactly zero by symmetry); the ratio of their
   mean octahedral edge to the refined one is the potential's bias on known structures.

Outputs: ``sreels/structures/data/LixTi2PO43_x{X}.cif`` (kept arrangement per x; header with the
recipe, versions, seed and command) and ``validation/results/15_structures/relax.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sreels.structures import oo  # noqa: E402

#: Published cell of LiTi2(PO4)3 (A): JCPDS 35-0754 (a = 8.513, c = 20.878); the refinements the
#: issue quotes span c = 20.84-20.91 A.  Used for the start and for the rescaled edges.
A_PUB_ANG, C_PUB_ANG = 8.513, 20.878
#: Start sites (hexagonal R-3c, origin at -3): element, Wyckoff, fractional x, y, z.  Values of the
#: NASICON LiTi2(PO4)3 refinements (Aatiq et al. 2002) to ~0.005, typed in by hand.
START_SITES = (
    ("Li", "6b", (0.0, 0.0, 0.0)),
    ("Ti", "12c", (0.0, 0.0, 0.1418)),
    ("P", "18e", (0.2880, 0.0, 0.25)),
    ("O", "36f", (0.1853, -0.0049, 0.1912)),
    ("O", "36f", (0.1909, 0.1678, 0.0832)),
)
#: M2 cavity of the NASICON framework, 18e (x, 0, 1/4), x ~ 0.64 (NZP-type refinements).
M2_SITE = (0.64, 0.0, 0.25)
X_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def start_structure():
    """Primitive (rhombohedral) cell of LiTi2(PO4)3 with the M2 cavities as placeholder Na."""
    from pymatgen.core import Lattice, Structure

    species = [s[0] for s in START_SITES] + ["Na"]
    coords = [s[2] for s in START_SITES] + [M2_SITE]
    conv = Structure.from_spacegroup("R-3c", Lattice.hexagonal(A_PUB_ANG, C_PUB_ANG), species, coords)
    prim = conv.get_primitive_structure()
    return prim


def to_atoms(structure):
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def relax(atoms, calc, fmax, steps):
    """Relax cell + positions; returns (atoms, energy eV, n_steps, converged, Ti magmoms)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms = atoms.copy()
    atoms.calc = calc
    opt = FIRE(FrechetCellFilter(atoms), logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    e = float(atoms.get_potential_energy())
    mag = calc.results.get("magmoms")
    sym = np.array(atoms.get_chemical_symbols())
    ti_mag = np.abs(np.asarray(mag)[sym == "Ti"]).tolist() if mag is not None else []
    return atoms, e, int(opt.nsteps), converged, ti_mag


def c_axis(cell):
    """Unit vector of the hexagonal c axis of a rhombohedral primitive cell (a1 + a2 + a3)."""
    v = np.asarray(cell).sum(axis=0)
    return v / np.linalg.norm(v)


def strained(atoms, s_a, s_c, n):
    """Atoms strained by s_a perpendicular to ``n`` and s_c along it (positions follow the cell)."""
    f = s_a * np.eye(3) + (s_c - s_a) * np.outer(n, n)
    out = atoms.copy()
    out.set_cell(np.asarray(atoms.cell) @ f.T, scale_atoms=True)
    return out


def hex_constants(atoms):
    """(a, c) of a rhombohedral primitive cell: c = |a1 + a2 + a3|, a = |a1 - a2|."""
    cell = np.asarray(atoms.cell)
    return float(np.linalg.norm(cell[0] - cell[1])), float(np.linalg.norm(cell.sum(axis=0)))


def edge_nm(atoms):
    return float(oo.octahedral_edges_nm(atoms, "Ti", "nasicon").mean())


def write_cif(path, atoms, header_lines):
    from ase.io import write

    tmp = path.with_suffix(".tmp.cif")
    write(str(tmp), atoms, format="cif")
    body = tmp.read_text()
    tmp.unlink()
    path.write_text("".join(f"# {line}\n" for line in header_lines) + body)


def reference_oxides(calc, rng, fmax, steps, skip=()):
    """Relax every built-in reference oxide; returns one dict per oxide."""
    oxides = []
    from pymatgen.io.ase import AseAtomsAdaptor
    for key, b in oo.BUILTIN.items():
        if key in skip:
            continue
        ref = oo.load_builtin(key)
        struct = AseAtomsAdaptor.get_structure(ref).get_primitive_structure()
        a = AseAtomsAdaptor.get_atoms(struct)
        a.positions += rng.normal(0.0, 0.01, a.positions.shape)
        t0 = time.time()
        r, e, n, conv, _ = relax(a, calc, fmax, steps)
        e_ref = float(oo.octahedral_edges_nm(ref, b.cation, key).mean())
        e_rel = float(oo.octahedral_edges_nm(r, b.cation, key).mean())
        v_ratio = r.get_volume() / len(r) / (ref.get_volume() / len(ref))
        oxides.append({"name": key, "cation": b.cation, "source": b.source, "edge_refined_nm": e_ref,
                       "edge_relaxed_nm": e_rel, "ratio": e_rel / e_ref, "volume_ratio": v_ratio,
                       "steps": n, "converged": conv, "seconds": time.time() - t0, "atoms": len(r)})
        print(f"{key}: edge refined {e_ref:.5f}, relaxed {e_rel:.5f} nm, ratio {e_rel / e_ref:.4f}, "
              f"{n} steps{'' if conv else ' NOT converged'}, {time.time() - t0:.0f} s", flush=True)
    return oxides


def merge(parts, target) -> dict:
    """Merge the JSON reports of one or more runs into the package's summary ``target``
    (``sreels/structures/data/nasicon_series.json``): per x the kept (lowest-energy)
    arrangement over all runs and the spread over all of them; the reference oxides."""
    reports = [json.loads(Path(p).read_text()) for p in parts]
    by_x, starts, oxides = {}, [], []
    for rep in reports:
        starts += rep.get("ltp_starts", [])
        oxides += rep.get("oxides", [])
        for e in rep["series"]:
            by_x.setdefault(e["x"], []).extend(
                a for a in e["arrangements"] if a["cavities"] not in [b["cavities"] for b in by_x.get(e["x"], [])])
    ref = reports[0]
    series = []
    for x in sorted(by_x):
        runs = by_x[x]
        best = min(runs, key=lambda r: r["energy_ev"])
        raw = np.array([r["edge_nm"] for r in runs])
        res = np.array([r["edge_rescaled_nm"] for r in runs])
        series.append({
            "x": x, "file": f"LixTi2PO43_x{x:.1f}.cif", "n_arrangements": len(runs),
            "edge_nm": best["edge_nm"], "edge_rescaled_nm": best["edge_rescaled_nm"],
            "edge_min_nm": float(raw.min()), "edge_max_nm": float(raw.max()),
            "edge_std_nm": float(raw.std(ddof=1)) if raw.size > 1 else 0.0,
            "edge_rescaled_std_nm": float(res.std(ddof=1)) if res.size > 1 else 0.0,
            "energy_spread_ev": float(max(r["energy_ev"] for r in runs) - best["energy_ev"]),
            "a_ang": best["a_ang"], "c_ang": best["c_ang"], "ti_magmom_mean": best["ti_magmom_mean"],
            "converged": best["converged"], "energy_ev": best["energy_ev"]})
    seen, ox = set(), []
    for o in oxides:
        if o["name"] not in seen:
            seen.add(o["name"])
            ox.append(o)
    out = {"made_by": [r["command"] for r in reports], "versions": ref["versions"], "seed": ref["seed"],
           "fmax_ev_per_ang": ref["fmax_ev_per_ang"], "step_cap": ref["step_cap"],
           "published_cell_ang": ref["published_cell_ang"], "rescale": ref["rescale"],
           "ltp_starts": starts, "series": series, "oxides": ox,
           "note": "computed with CHGNet; see validation/relax_nasicon.py and the CIF headers"}
    Path(target).write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--merge":  # no torch needed
        merge(argv[1:], oo.data_dir() / "nasicon_series.json")
        print(f"wrote {oo.data_dir() / 'nasicon_series.json'}")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrangements", type=int, default=5, help="Li arrangements per x (default 5)")
    ap.add_argument("--starts", type=int, default=3, help="noisy starts of LiTi2(PO4)3 (default 3)")
    ap.add_argument("--seed", type=int, default=20141515, help="numpy seed (starts and Li arrangements)")
    ap.add_argument("--fmax", type=float, default=0.05, help="force tolerance eV/A (default 0.05)")
    ap.add_argument("--steps", type=int, default=600, help="step cap per relaxation (default 600)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--x", type=float, nargs="*", default=list(X_VALUES), help="x values")
    ap.add_argument("--no-oxides", action="store_true", help="skip the reference oxides")
    ap.add_argument("--oxides-first", action="store_true", help="relax the reference oxides before the series")
    ap.add_argument("--framework", default=None, metavar="CIF",
                    help="relaxed LiTi2(PO4)3 (x = 0 CIF of an earlier run) to insert Li into, instead of relaxing it")
    ap.add_argument("--skip-oxide", nargs="*", default=[], help="reference oxides left out (e.g. Y3Al5O12: 80 atoms)")
    ap.add_argument("--cavities", nargs="*", default=[], metavar="I,J,...",
                    help="explicit Li arrangements (cavity indices 0-1 = M1, 2-7 = M2) instead of random ones; "
                         "needs a single --x")
    ap.add_argument("--tag", default="relax", help="name of the JSON written into --out (default relax)")
    ap.add_argument("--out", default=str(ROOT / "validation" / "results" / "15_structures"))
    ap.add_argument("--cif-dir", default=str(oo.data_dir()))
    args = ap.parse_args(argv)

    import ase
    import chgnet
    import torch
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    model = CHGNet.load(verbose=False)
    calc = CHGNetCalculator(model=model, use_device="cpu")
    command = "python validation/relax_nasicon.py " + " ".join(argv)
    versions = {"chgnet": chgnet.__version__, "chgnet_model": str(model.version), "torch": torch.__version__,
                "ase": ase.__version__, "python": platform.python_version(), "numpy": np.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cif_dir = Path(args.cif_dir)
    report = {"command": command, "versions": versions, "seed": args.seed, "fmax_ev_per_ang": args.fmax,
              "step_cap": args.steps, "published_cell_ang": {"a": A_PUB_ANG, "c": C_PUB_ANG},
              "start_sites": [list(s) for s in START_SITES], "m2_site": list(M2_SITE)}
    t_all = time.time()
    if args.oxides_first and not args.no_oxides:
        report["oxides"] = reference_oxides(calc, np.random.default_rng(args.seed + 1), args.fmax, args.steps,
                                             args.skip_oxide)
        (out / f"{args.tag}.json").write_text(json.dumps(report, indent=1))

    # 1-2. LiTi2(PO4)3 from noisy starts
    prim = start_structure()
    base = to_atoms(prim)
    sym = np.array(base.get_chemical_symbols())
    cavities = np.flatnonzero((sym == "Li") | (sym == "Na"))  # 2 M1 + 6 M2 per primitive cell
    m1 = np.flatnonzero(sym == "Li")
    framework_idx = np.flatnonzero(sym != "Na")
    starts = []
    if args.framework:  # the x = 0 structure of an earlier run: no relaxation here
        from ase.io import read
        r = read(args.framework)
        r.calc = calc
        e = float(r.get_potential_energy())
        a_h, c_h = hex_constants(r)
        starts.append({"start": f"from {Path(args.framework).name}", "energy_ev": e, "steps": 0, "converged": True,
                       "seconds": 0.0, "edge_nm": edge_nm(r), "a_ang": a_h, "c_ang": c_h,
                       "ti_magmom_mean": float(np.mean(np.abs(calc.results["magmoms"][
                           np.array(r.get_chemical_symbols()) == "Ti"]))), "atoms": r})
    for k in range(0 if args.framework else args.starts):
        a = base[framework_idx]
        if k:
            a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        t0 = time.time()
        r, e, n, conv, ti_mag = relax(a, calc, args.fmax, args.steps)
        a_h, c_h = hex_constants(r)
        starts.append({"start": k, "energy_ev": e, "steps": n, "converged": conv, "seconds": time.time() - t0,
                       "edge_nm": edge_nm(r), "a_ang": a_h, "c_ang": c_h, "ti_magmom_mean": float(np.mean(ti_mag)),
                       "atoms": r})
        print(f"start {k}: E = {e:.4f} eV, edge {edge_nm(r):.5f} nm, a {a_h:.3f} c {c_h:.3f} A, "
              f"{n} steps ({'converged' if conv else 'NOT converged'}), {time.time() - t0:.0f} s", flush=True)
    best0 = min(starts, key=lambda s: s["energy_ev"])
    relaxed0 = best0["atoms"]
    a0, c0 = best0["a_ang"], best0["c_ang"]
    s_a, s_c = A_PUB_ANG / a0, C_PUB_ANG / c0
    report["ltp_starts"] = [{k: v for k, v in s.items() if k != "atoms"} for s in starts]
    report["rescale"] = {"s_a": s_a, "s_c": s_c, "note": "relaxed x = 0 cell -> published a, c; same strain at all x"}

    # 3. Li(1+x)Ti2(PO4)3: Li over the M1 + M2 cavities of the relaxed framework
    # cavity positions in the relaxed cell: fractional coordinates of the start, in the relaxed cell
    frac_cav = base.get_scaled_positions()[cavities]
    fw0 = relaxed0.copy()
    fw0 = fw0[[i for i, s in enumerate(fw0.get_chemical_symbols()) if s != "Li"]]
    series = []
    for x in args.x:
        n_li = int(round(2 * (1 + x)))
        if args.cavities:
            if len(args.x) != 1:
                raise SystemExit("--cavities needs exactly one --x")
            choices = [tuple(int(i) for i in c.split(",")) for c in args.cavities]
            if any(len(c) != n_li or len(set(c)) != n_li or not set(c) <= set(range(len(cavities)))
                   for c in choices):
                raise SystemExit(f"--cavities: each arrangement needs {n_li} distinct indices in 0-{len(cavities) - 1}")
        elif x == 0.0:
            choices = [tuple(int(np.flatnonzero(cavities == i)[0]) for i in m1)]
        else:
            all_choices = list(itertools.combinations(range(len(cavities)), n_li))
            pick = rng.permutation(len(all_choices))[:args.arrangements]
            choices = [all_choices[i] for i in sorted(pick)]
        runs = []
        for ch in choices:
            from ase import Atoms
            li = Atoms("Li" * n_li, scaled_positions=frac_cav[list(ch)], cell=fw0.cell, pbc=True)
            a = fw0 + li
            a.positions += rng.normal(0.0, 0.01, a.positions.shape)
            t0 = time.time()
            r, e, n, conv, ti_mag = relax(a, calc, args.fmax, args.steps)
            a_h, c_h = hex_constants(r)
            rs = strained(r, s_a, s_c, c_axis(np.asarray(a.cell)))
            runs.append({"cavities": [int(c) for c in ch], "energy_ev": e, "steps": n, "converged": conv,
                         "seconds": time.time() - t0, "edge_nm": edge_nm(r), "edge_rescaled_nm": edge_nm(rs),
                         "a_ang": a_h, "c_ang": c_h, "ti_magmom_mean": float(np.mean(ti_mag)), "atoms": r})
            print(f"x={x}: cavities {ch}: E = {e:.4f} eV, edge {runs[-1]['edge_nm']:.5f} "
                  f"(rescaled {runs[-1]['edge_rescaled_nm']:.5f}) nm, a {a_h:.3f} c {c_h:.3f}, Ti mu "
                  f"{np.mean(ti_mag):.2f}, {n} steps{'' if conv else ' NOT converged'}, {time.time() - t0:.0f} s",
                  flush=True)
        best = min(runs, key=lambda s: s["energy_ev"])
        edges = np.array([r_["edge_nm"] for r_ in runs])
        entry = {"x": x, "n_li_per_cell": n_li, "n_arrangements": len(runs),
                 "edge_nm": best["edge_nm"], "edge_rescaled_nm": best["edge_rescaled_nm"],
                 "edge_min_nm": float(edges.min()), "edge_max_nm": float(edges.max()),
                 "edge_std_nm": float(edges.std(ddof=1)) if edges.size > 1 else 0.0,
                 "energy_spread_ev": float(max(r_["energy_ev"] for r_ in runs) - best["energy_ev"]),
                 "a_ang": best["a_ang"], "c_ang": best["c_ang"], "ti_magmom_mean": best["ti_magmom_mean"],
                 "arrangements": [{k: v for k, v in r_.items() if k != "atoms"} for r_ in runs]}
        series.append(entry)
        fname = cif_dir / f"LixTi2PO43_x{x:.1f}.cif"
        header = [
            f"Li{1 + x:g}Ti2(PO4)3 -- COMPUTED, not a refinement.",
            "Source: relaxed with the universal potential CHGNet (Deng et al., Nat. Mach. Intell. 5 (2023) 1031),",
            f"  chgnet {versions['chgnet']} (model {versions['chgnet_model']}), torch {versions['torch']}, "
            f"ase {versions['ase']}; cell + positions,",
            f"  FIRE on FrechetCellFilter, fmax {args.fmax} eV/A, cap {args.steps} steps "
            f"({'converged' if best['converged'] else 'NOT converged'} in {best['steps']}).",
            "Start: LiTi2(PO4)3 R-3c NASICON Wyckoff sites as in Aatiq et al., J. Mater. Chem. 12 (2002) 2971,",
            f"  cell a = {A_PUB_ANG}, c = {C_PUB_ANG} A (JCPDS 35-0754); primitive cell, 2 formula units.",
            f"Li arrangement: lowest energy of {len(runs)} over the M1/M2 cavities (seed {args.seed}; "
            f"cavities {list(best['cavities'])});",
            f"  mean TiO6 edge {best['edge_nm']:.5f} nm (all arrangements {edges.min():.5f}-{edges.max():.5f} nm);",
            f"  rescaled to the published x = 0 cell: {best['edge_rescaled_nm']:.5f} nm.",
            f"Command: {command}",
        ]
        write_cif(fname, best["atoms"], header)
        report["series"] = series
        (out / f"{args.tag}.json").write_text(json.dumps(report, indent=1))  # after every x
    report["series"] = series
    if not args.oxides_first and not args.no_oxides:
        report["oxides"] = reference_oxides(calc, np.random.default_rng(args.seed + 1), args.fmax, args.steps,
                                             args.skip_oxide)

    report["seconds_total"] = time.time() - t_all
    (out / f"{args.tag}.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {out / (args.tag + '.json')} and {len(series)} CIFs into {cif_dir} ({time.time() - t_all:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
