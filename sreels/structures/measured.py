"""The built-in set of measured O-K spectra and the (dE, R) pairs taken from them.

The spectra are not shipped with sreels: they live in the project's shared data
folder (``../shared/data`` next to the repository, see :func:`find_data_dir`).
Each entry names the file, the rows to sum (line scans), the structure that gives
R, and any upper energy limit that keeps another edge out of the peak-"b" window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SreelsInputError
from .calibration import CalibrationPoint
from .okedge import OKMeasurement, measure_ok
from .oo import OODistances, builtin_oo
from .spectra import load_spectrum

#: Floor of the R uncertainty (nm) used for every structure: structures are
#: refined to ~0.0001 nm, but "the O-O distance" seen by the resonance is a
#: definition; half the difference between the octahedral-edge mean and the
#: first-shell mean is added in quadrature (see :func:`r_for_calibration`).
R_ERR_FLOOR_NM = 0.0005


@dataclass(frozen=True)
class MeasuredSpectrum:
    """One entry of the built-in measured set."""

    name: str
    relpath: str
    structure: str | None
    rows: tuple | None = None
    max_ev: float | None = None
    note: str = ""


BUILTIN_SPECTRA = (
    MeasuredSpectrum("CoO (Egerton)", "internal-only/tem-eels_Egerton/CoO.dat", "CoO",
                     note="rock-salt CoO, Egerton's textbook example input"),
    MeasuredSpectrum("SrTiO3 (pyTEMlib, Nion)", "licensed/pyTEMlib/EELS_STO.dm3", "SrTiO3",
                     note="200 kV Nion Enfinium; axis ~3 eV low"),
    MeasuredSpectrum("SrTiO3 (pyEELSMODEL hl)", "licensed/pyEELSMODEL/hl.msa", "SrTiO3"),
    MeasuredSpectrum("SrTiO3 (LSMO/STO rows 0-2)", "internal-only/exspy-demos/LSMO_STO_linescan.hspy",
                     "SrTiO3", rows=(0, 1, 2), note="1 eV/channel, JEOL ARM200cF"),
    MeasuredSpectrum("Y3Al5O12 (EELS DB 21692)", "licensed/nomad-parser-eelsdb/YAG_O-K_eelsdb21692.msa",
                     "Y3Al5O12", note="100 kV, 0.7 eV resolution (shared data README); R from the AlO6 (16a) edges "
                          "(Nakatsuka et al. 1999)"),
    MeasuredSpectrum("alpha-Cr2O3 (EELS DB, Brydson)",
                     "internal-only/practical_EELS_QEM/eelsdb_Cr2O3_alpha_O-K_Brydson158.msa", "Cr2O3",
                     max_ev=568.0, note="Cr-L from ~572 eV cut off; R from CrO6 edges (Baster et al. 2000)"),
)


def find_data_dir(start=None) -> Path | None:
    """The shared measured-data folder, or None if absent.

    Looked up in this order: ``$SREELS_DATA_DIR``; ``../shared/data`` relative to
    the current directory and each of its parents; ``../shared/data`` relative to
    the folder that holds the ``sreels`` package (the repository root).
    """
    env = os.environ.get("SREELS_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    here = Path(start or Path.cwd()).resolve()
    repo = Path(__file__).resolve().parents[2]
    for base in (here, *here.parents, repo):
        cand = base / ".." / "shared" / "data"
        if cand.is_dir():
            return cand.resolve()
    return None


def r_for_calibration(oo: OODistances, definition: str = "octahedral_edge") -> tuple[float, float]:
    """R (nm) and its uncertainty for one structure under the stated definition."""
    if definition not in ("octahedral_edge", "nearest"):
        raise SreelsInputError(f"unknown O-O definition {definition!r}; valid: ['octahedral_edge', 'nearest']")
    r = oo.oo_octahedral_edge_nm if definition == "octahedral_edge" else oo.oo_nearest_nm
    spread = 0.5 * abs(oo.oo_octahedral_edge_nm - oo.oo_nearest_nm)
    return r, float(np.hypot(R_ERR_FLOOR_NM, spread))


@dataclass(frozen=True)
class MeasuredPair:
    """A measured spectrum with its O-K measurement and (if a structure is known) R."""

    spectrum: MeasuredSpectrum
    measurement: OKMeasurement
    r_nm: float | None
    r_err_nm: float | None

    def point(self) -> CalibrationPoint | None:
        if self.r_nm is None:
            return None
        m = self.measurement
        return CalibrationPoint(self.spectrum.name, m.delta_e_ev, m.delta_e_err_ev, self.r_nm, self.r_err_nm,
                                source=self.spectrum.relpath)


def measure_set(data_dir, entries=BUILTIN_SPECTRA, threshold: str = "inflection",
                structures: dict | None = None, definition: str = "octahedral_edge",
                skipped: list | None = None) -> list[MeasuredPair]:
    """Measure every entry of ``entries`` found under ``data_dir``.

    ``structures`` maps structure names to :class:`OODistances`; defaults to the
    built-in structures.  Missing files are skipped.  A spectrum that cannot be measured
    (no O-K edge, no peak "b") raises, unless ``skipped`` is a list: then (name, reason) is
    appended to it and the spectrum left out.
    """
    structures = structures if structures is not None else {o.name: o for o in builtin_oo()}
    out = []
    for ent in entries:
        path = Path(data_dir) / ent.relpath
        if not path.is_file():
            continue
        spec = load_spectrum(path, rows=list(ent.rows) if ent.rows else None, name=ent.name)
        try:
            meas = measure_ok(spec, threshold=threshold, max_ev=ent.max_ev)
        except SreelsInputError as exc:
            if skipped is None:
                raise
            skipped.append((ent.name, str(exc)))
            continue
        r = r_err = None
        if ent.structure and ent.structure in structures:
            r, r_err = r_for_calibration(structures[ent.structure], definition)
        out.append(MeasuredPair(ent, meas, r, r_err))
    return out


def user_entries(paths) -> tuple:
    """Entries for user spectra (``--spectra``): spectrum files, whose structure is the one named
    like the file's stem, or TOML tables of ``[[spectrum]]`` entries::

        [[spectrum]]
        file = "NiO.msa"          # relative to the TOML file
        structure = "NiO"         # a built-in structure or the stem of a --structures file
        name = "NiO (my GIF)"     # optional, default the file stem
        rows = [0, 1, 2]          # optional: rows of a line scan to sum
        max_ev = 570.0            # optional: end of the peak-b search (keeps another edge out)
    """
    from ..config import read_toml

    out = []
    for p in map(Path, paths):
        if p.suffix.lower() != ".toml":
            out.append(MeasuredSpectrum(p.stem, str(p.resolve()), p.stem))
            continue
        table = read_toml(p, "spectra table").get("spectrum")
        if not isinstance(table, list) or not table:
            raise SreelsInputError(f"{p}: expected [[spectrum]] tables with at least file = ...")
        for i, ent in enumerate(table):
            unknown = set(ent) - {"file", "structure", "name", "rows", "max_ev"}
            if unknown or "file" not in ent:
                raise SreelsInputError(f"{p}: spectrum {i + 1}: keys {sorted(ent)}; expected file and optionally "
                                       "structure, name, rows, max_ev")
            f = (p.parent / str(ent["file"])).resolve()
            rows = ent.get("rows")
            if rows is not None and (not isinstance(rows, list) or not all(isinstance(r, int) and r >= 0
                                                                             for r in rows)):
                raise SreelsInputError(f"{p}: spectrum {i + 1}: rows = {rows!r}; expected a list of integers >= 0")
            max_ev = ent.get("max_ev")
            if max_ev is not None and not (isinstance(max_ev, (int, float)) and np.isfinite(max_ev) and max_ev > 0):
                raise SreelsInputError(f"{p}: spectrum {i + 1}: max_ev = {max_ev!r}; expected an energy in eV")
            out.append(MeasuredSpectrum(str(ent.get("name", f.stem)), str(f), str(ent.get("structure", f.stem)),
                                        tuple(rows) if rows else None, float(max_ev) if max_ev else None))
    return tuple(out)
