"""O-O distances of crystal structures (built on ASE).

Two definitions of "the O-O distance" are computed for any ``ase.Atoms``:

* **octahedral edge** (the study's definition, Yamamoto et al. 2014, Sect. 3.3):
  around every atom of the chosen cation take its six nearest O atoms (the MO6
  octahedron, periodic images included); of the 15 O-O pairs of the six
  vertices, drop the 3 *trans* pairs (each vertex with the vertex farthest from
  it) and keep the 12 edges.  The mean over all edges of all octahedra is
  ``oo_octahedral_edge_nm``.
* **nearest-neighbour shell**: every O-O pair (periodic) shorter than
  ``shell_factor`` (default 1.2) times the shortest O-O distance of the
  structure; the mean of that first shell is ``oo_nearest_nm``.

In corner-sharing frameworks (perovskite, NASICON) the two agree closely; in
edge-sharing ones (rutile, corundum) the shared edges are shorter and the
nearest-neighbour shell includes O-O pairs that are not octahedral edges, so
the two means differ.  A calibration must use one of them throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import SreelsInputError

ANGSTROM_PER_NM = 10.0


@dataclass(frozen=True)
class BuiltinStructure:
    """A CIF shipped with sreels: file name, the octahedral cation, and its source."""

    name: str
    filename: str
    cation: str
    source: str


#: Built-in structures.  Every CIF carries its citation in its header.
BUILTIN = {
    "TiO2_rutile": BuiltinStructure(
        "TiO2_rutile", "TiO2_rutile.cif", "Ti",
        "Abrahams & Bernstein, J. Chem. Phys. 55 (1971) 3206"),
    "Al2O3_corundum": BuiltinStructure(
        "Al2O3_corundum", "Al2O3_corundum.cif", "Al",
        "Lutterotti & Scardi, J. Appl. Cryst. 23 (1990) 246 (COD 1000032)"),
    "SrTiO3": BuiltinStructure(
        "SrTiO3", "SrTiO3.cif", "Ti", "gamma-ray diffraction, Acta Cryst. (IUCr sh5025), a = 3.9053 A"),
    "CoO": BuiltinStructure(
        "CoO", "CoO_rocksalt.cif", "Co", "Redman & Steward, Nature 193 (1962) 867, a0 = 4.24 A"),
    "TiO2_anatase": BuiltinStructure(
        "TiO2_anatase", "TiO2_anatase.cif", "Ti",
        "Horn, Schwerdtfeger & Meagher, Z. Kristallogr. 136 (1972) 273 (COD 9008213)"),
    "Cr2O3": BuiltinStructure(
        "Cr2O3", "Cr2O3_corundum.cif", "Cr",
        "Baster, Bouree, Kowalska & Latacz (2000), ICSD record as quoted in cctbx"),
    "MgO": BuiltinStructure(
        "MgO", "MgO_rocksalt.cif", "Mg", "Zhang, Phys. Chem. Minerals 27 (2000) 145 (AMCSD 0008367), a = 4.2136 A"),
    "MnO": BuiltinStructure(
        "MnO", "MnO_rocksalt.cif", "Mn", "Handbook of Mineralogy, 'Manganosite', a = 4.436(2) A (compiled value)"),
    "Y3Al5O12": BuiltinStructure(
        "Y3Al5O12", "Y3Al5O12_garnet.cif", "Al",
        "Nakatsuka, Yoshiasa & Yamanaka, Acta Cryst. B55 (1999) 266 (COD 2003066; O 96h via NCrystal 3.8.1)"),
    "NiO": BuiltinStructure(
        "NiO", "NiO_rocksalt.cif", "Ni", "a = 4.1769 A, secondary compilation (Wikipedia 'Bunsenite'); no refinement read"),
}

#: NASICON end members LiTi2(PO4)3 and Li3Ti2(PO4)3.  No published atomic positions were
#: reachable (public CIF collections, COD/AMCSD/ICSD mirrors and PyPI packages were searched; the
#: OBELiX dataset's LiTi2(PO4)3 CIFs have deliberately randomised positions), so the shipped
#: CIFs are COMPUTED: relaxed with the universal potential CHGNet 0.4.2 by
#: ``validation/relax_nasicon.py`` (header of each CIF; the whole series Li(1+x)Ti2(PO4)3,
#: x = 0 ... 3, is in :data:`COMPUTED` and :mod:`.nasicon`).  The study quotes 0.272 / 0.289 nm
#: from the refinements of Delmas' group (Yamamoto et al. 2014, Sect. 3.3): :data:`STUDY_EDGE_NM`.
NASICON = {
    "LiTi2(PO4)3": BuiltinStructure(
        "LiTi2(PO4)3", "LixTi2PO43_x0.0.cif", "Ti",
        "computed: CHGNet 0.4.2 relaxation (validation/relax_nasicon.py); start: Aatiq et al., "
        "J. Mater. Chem. 12 (2002) 2971 sites"),
    "Li3Ti2(PO4)3": BuiltinStructure(
        "Li3Ti2(PO4)3", "LixTi2PO43_x2.0.cif", "Ti",
        "computed: CHGNet 0.4.2 relaxation, lowest-energy Li arrangement (validation/relax_nasicon.py)"),
}
#: The study's mean TiO6 edges of the NASICON end members (nm), Yamamoto et al. (2014), Sect. 3.3.
STUDY_EDGE_NM = {"LiTi2(PO4)3": 0.272, "Li3Ti2(PO4)3": 0.289}
#: Every computed Li(1+x)Ti2(PO4)3 (x -> file name).
COMPUTED_X = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # x = 2.5 not run (time)
COMPUTED = {f"Li{1 + x:g}Ti2(PO4)3 (computed)": BuiltinStructure(
    f"Li{1 + x:g}Ti2(PO4)3 (computed)", f"LixTi2PO43_x{x:.1f}.cif", "Ti",
    "computed: CHGNet 0.4.2 relaxation (validation/relax_nasicon.py)") for x in COMPUTED_X}


@dataclass(frozen=True)
class OODistances:
    """O-O distances of one structure (nm).

    Attributes
    ----------
    name : str
    cation : str
        Element whose MO6 octahedra define the edges.
    oo_octahedral_edge_nm : float
        Mean of the 12 edges of every MO6 octahedron.
    oo_octahedral_edge_std_nm : float
        Standard deviation of those edges.
    oo_nearest_nm : float
        Mean of the first O-O shell (see module docstring).
    oo_nearest_std_nm : float
    n_octahedra : int
    edges_nm : ndarray
        All octahedral edges, shape (12 * n_octahedra,).
    shell_nm : ndarray
        All first-shell O-O distances (each pair counted once per O).
    n_skipped : int
        Atoms of ``cation`` that are not six-coordinated (e.g. YAG's tetrahedral Al).
    """

    name: str
    cation: str
    oo_octahedral_edge_nm: float
    oo_octahedral_edge_std_nm: float
    oo_nearest_nm: float
    oo_nearest_std_nm: float
    n_octahedra: int
    edges_nm: np.ndarray = field(repr=False)
    shell_nm: np.ndarray = field(repr=False)
    n_skipped: int = 0

    def as_dict(self) -> dict:
        return {
            "name": self.name, "cation": self.cation,
            "oo_octahedral_edge_nm": self.oo_octahedral_edge_nm,
            "oo_octahedral_edge_std_nm": self.oo_octahedral_edge_std_nm,
            "oo_nearest_nm": self.oo_nearest_nm, "oo_nearest_std_nm": self.oo_nearest_std_nm,
            "n_octahedra": self.n_octahedra, "n_skipped": self.n_skipped,
        }


def data_dir() -> Path:
    """Folder of the built-in CIFs."""
    return Path(str(resources.files("sreels.structures") / "data"))


#: Atom sites listed in a structure file above which it is refused: ASE's CIF reader takes
#: ~30 s for 1300 sites and minutes beyond (it de-duplicates every site against every other),
#: and a periodic crystal's O-O distances come from its unit cell anyway.
MAX_SITES = 1000
#: Atoms after the symmetry expansion above which the neighbour analysis is refused (~1 min).
MAX_ATOMS = 20000


def count_cif_sites(path) -> int:
    """Rows of a CIF's ``_atom_site_`` loop (0 if there is none), read without parsing the file."""
    n, in_loop, header, is_site = 0, False, False, False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            low = line.lower()
            if low.startswith("loop_"):
                in_loop, header, is_site = True, True, False
                continue
            if in_loop and low.startswith("_"):
                if not header:  # a key after the data ends the loop
                    in_loop = False
                    continue
                is_site = is_site or low.startswith(("_atom_site_fract_x", "_atom_site_cartn_x"))
                continue
            if low.startswith(("data_", "_")):
                in_loop = False
                continue
            if in_loop:
                header = False
                n += is_site
    return n


def _refuse_partial(atoms, path) -> None:
    occ = atoms.info.get("occupancy") or {}
    bad = []
    for tag, species in occ.items():
        total = sum(species.values())
        if len(species) > 1 or abs(total - 1.0) > 1e-3:
            bad.append(" + ".join(f"{el} {o:g}" for el, o in sorted(species.items())))
    if bad:
        raise SreelsInputError(
            f"{path}: {len(bad)} site(s) with partial or mixed occupancy: {'; '.join(sorted(set(bad))[:4])}; "
            "O-O distances and the cation need an ordered structure (every site one element, occupancy 1): "
            "give an ordered model (e.g. a supercell) of it")


def read_structure(path, max_sites: int = MAX_SITES, max_atoms: int = MAX_ATOMS):
    """Read a CIF (or any ASE-readable file) into ``ase.Atoms``.

    Parameters
    ----------
    path : path-like
        The structure file.
    max_sites, max_atoms : int
        Refuse a CIF listing more atom sites than ``max_sites`` before reading it, and a
        structure of more than ``max_atoms`` atoms after reading it.

    Raises
    ------
    SreelsInputError
        If the file is missing, too large, ASE cannot parse it, it holds no atoms, or it
        has partially occupied or mixed sites (they are refused, not silently ordered).
    """
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise SreelsInputError(f"structure file {path} does not exist")
    advice = ("the O-O distances of a periodic crystal come from its unit cell: give the unit cell "
              "(or raise --max-atoms)")
    if path.suffix.lower() == ".cif":
        sites = count_cif_sites(path)
        if sites > max_sites:
            raise SreelsInputError(f"{path}: {sites} atom sites, above the limit of {max_sites} (reading "
                                   f"takes ASE minutes); {advice}")
    try:
        atoms = read(str(path))
    except Exception as exc:
        raise SreelsInputError(
            f"{path}: ASE cannot parse this structure file ({type(exc).__name__}: {exc}); "
            "expected a CIF with cell parameters, a space group and atom sites") from exc
    if isinstance(atoms, list):
        atoms = atoms[0]
    if len(atoms) == 0 or not atoms.cell.rank == 3:
        raise SreelsInputError(f"{path}: no atoms or no 3-D unit cell found")
    if len(atoms) > max_atoms:
        raise SreelsInputError(f"{path}: {len(atoms)} atoms, above the limit of {max_atoms}; {advice}")
    _refuse_partial(atoms, path)
    return atoms


def load_builtin(name: str):
    """``ase.Atoms`` of a built-in structure (keys of :data:`BUILTIN`, :data:`NASICON` or :data:`COMPUTED`)."""
    table = {**BUILTIN, **NASICON, **COMPUTED}
    if name not in table:
        raise SreelsInputError(f"unknown built-in structure {name!r}; available: {sorted(table)}")
    path = data_dir() / table[name].filename
    if not path.is_file():
        raise SreelsInputError(
            f"built-in structure {name!r} has no CIF ({path.name}) in this installation "
            f"({table[name].source}); pass your own CIF instead")
    return read_structure(path)


def _pair_vectors(atoms, i_idx, j_idx, cutoff_ang):
    """Periodic pair distances from atoms i_idx to j_idx within cutoff (original indices).

    The neighbour list is built on the i and j atoms only, so it scales with their number."""
    from ase.neighborlist import neighbor_list

    keep_idx = np.union1d(i_idx, j_idx)
    sub = atoms[keep_idx]
    first, second, dist, vec = neighbor_list("ijdD", sub, cutoff_ang, self_interaction=False)
    first, second = keep_idx[first], keep_idx[second]
    keep = np.isin(first, i_idx) & np.isin(second, j_idx)
    return first[keep], second[keep], dist[keep], vec[keep]


#: How far (A) to look for a cation's O neighbours: far enough to see the gap after the
#: first shell (a 4+2 Jahn-Teller octahedron has its long bonds near 2.4-2.5 A).
SHELL_SEARCH_ANG = 4.0


def first_shell(dist_ang, limit_ang: float = SHELL_SEARCH_ANG) -> int:
    """Coordination number from a cation's M-O distances (all those within ``limit_ang``):
    the first shell ends at the largest ratio gap d[k+1]/d[k], the next neighbour after the
    last one found being at least ``limit_ang`` away.  Regular, trigonally distorted and
    4+2 elongated octahedra give 6; YAG's AlO4 gives 4."""
    d = np.sort(np.asarray(dist_ang, float))
    if d.size == 0:
        return 0
    d = np.append(d, max(limit_ang, d[-1]))
    return int(np.argmax(d[1:] / d[:-1])) + 1


def octahedral_edges_nm(atoms, cation: str, name: str = "structure") -> np.ndarray:
    """Edges (nm) of every ``cation``-O6 octahedron, shape (n_octahedra, 12).

    Only ``cation`` atoms with exactly six O in their first shell (:func:`first_shell`)
    count: in YAG the tetrahedral Al (24d) is skipped and the octahedral Al (16a) kept.
    Skipped sites are counted in :func:`oo_distances` (``n_skipped``).

    Raises
    ------
    SreelsInputError
        If the structure has no O, no ``cation``, or no six-coordinated ``cation``.
    """
    sym = np.array(atoms.get_chemical_symbols())
    o_idx = np.flatnonzero(sym == "O")
    m_idx = np.flatnonzero(sym == cation)
    if o_idx.size == 0:
        raise SreelsInputError(f"{name}: structure contains no oxygen; O-O distances need O atoms")
    if m_idx.size == 0:
        raise SreelsInputError(
            f"{name}: structure contains no {cation!r}; elements present: {sorted(set(sym))}")
    f, _, d, v = _pair_vectors(atoms, m_idx, o_idx, SHELL_SEARCH_ANG)
    order = np.lexsort((d, f))  # by cation, then by distance: one pass, no per-cation search
    f, d, v = f[order], d[order], v[order]
    starts = np.searchsorted(f, m_idx, side="left")
    ends = np.searchsorted(f, m_idx, side="right")
    out, cns = [], []
    for m, a, b in zip(m_idx, starts, ends):
        dm, vm = d[a:b], v[a:b]
        cn = first_shell(dm)
        cns.append((cn, np.round(dm[:8], 3).tolist()))
        if cn != 6:
            continue
        verts = vm[:6]
        dd = np.linalg.norm(verts[:, None, :] - verts[None, :, :], axis=-1)
        trans = np.argmax(dd, axis=1)
        mask = np.triu(np.ones((6, 6), bool), 1)
        mask[np.arange(6), trans] = False
        mask[trans, np.arange(6)] = False
        edges = dd[mask]
        if edges.size != 12:
            raise SreelsInputError(
                f"{name}: {cation} atom {m} has six O but they do not form an octahedron "
                f"(found {edges.size} edges instead of 12)")
        out.append(edges)
    if not out:
        cn, dist = cns[0]
        raise SreelsInputError(
            f"{name}: no {cation} atom is six-coordinated by O (first-shell coordination numbers found: "
            f"{sorted({c for c, _ in cns})}; first {cation} atom's nearest M-O distances {dist} A); "
            f"octahedral O-O edges need a {cation}O6 octahedron")
    return np.asarray(out) / ANGSTROM_PER_NM


def oo_shell_nm(atoms, shell_factor: float = 1.2, name: str = "structure") -> np.ndarray:
    """First-shell O-O distances (nm): all pairs < ``shell_factor`` x shortest O-O."""
    if shell_factor < 1.0:
        raise SreelsInputError(f"shell_factor must be >= 1, got {shell_factor}")
    sym = np.array(atoms.get_chemical_symbols())
    o_idx = np.flatnonzero(sym == "O")
    if o_idx.size == 0:
        raise SreelsInputError(f"{name}: structure contains no oxygen; O-O distances need O atoms")
    _, _, d, _ = _pair_vectors(atoms, o_idx, o_idx, 6.0)
    d = d[d > 1e-6]
    if d.size == 0:
        raise SreelsInputError(f"{name}: no O-O pair within 6 A")
    return d[d < shell_factor * d.min()] / ANGSTROM_PER_NM


def oo_distances(atoms, cation: str, name: str = "structure", shell_factor: float = 1.2) -> OODistances:
    """Both O-O definitions for ``atoms`` with ``cation``-O6 octahedra (see module docstring)."""
    edges = octahedral_edges_nm(atoms, cation, name)
    shell = oo_shell_nm(atoms, shell_factor, name)
    return OODistances(
        name=name, cation=cation,
        oo_octahedral_edge_nm=float(edges.mean()), oo_octahedral_edge_std_nm=float(edges.std()),
        oo_nearest_nm=float(shell.mean()), oo_nearest_std_nm=float(shell.std()),
        n_octahedra=int(edges.shape[0]), edges_nm=edges.ravel(), shell_nm=shell,
        n_skipped=int(np.sum(np.array(atoms.get_chemical_symbols()) == cation)) - int(edges.shape[0]))


def guess_cation(atoms) -> str:
    """The cation most often six-coordinated by O (ties: the heavier element)."""
    sym = np.array(atoms.get_chemical_symbols())
    cands = [el for el in sorted(set(sym)) if el != "O"]
    if "O" not in sym:
        raise SreelsInputError("structure contains no oxygen; O-O distances need O atoms")
    if not cands:
        raise SreelsInputError("structure contains only oxygen; no cation to build octahedra around")
    o_idx = np.flatnonzero(sym == "O")
    best, best_score = None, (-1, -1.0)
    from ase.data import atomic_numbers
    for el in cands:
        m_idx = np.flatnonzero(sym == el)
        f, _, d, _ = _pair_vectors(atoms, m_idx, o_idx, 2.6)
        cn = np.bincount(np.searchsorted(m_idx, f), minlength=m_idx.size) if f.size else np.zeros(m_idx.size)
        score = (int(np.sum(cn == 6)), float(atomic_numbers[el]))
        if score > best_score:
            best, best_score = el, score
    if best_score[0] == 0:
        raise SreelsInputError(f"no cation with six O within 2.6 A among {cands}; pass the cation explicitly")
    return best


def builtin_oo(shell_factor: float = 1.2, computed: bool = False) -> list[OODistances]:
    """O-O distances of every built-in structure whose CIF is present: the NASICON end members
    (:data:`NASICON`), with ``computed`` the whole computed series (:data:`COMPUTED`), then the
    refined reference oxides (:data:`BUILTIN`)."""
    out = []
    for key, b in {**NASICON, **(COMPUTED if computed else {}), **BUILTIN}.items():
        if (data_dir() / b.filename).is_file():
            out.append(oo_distances(load_builtin(key), b.cation, key, shell_factor))
    return out
