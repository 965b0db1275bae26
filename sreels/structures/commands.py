"""Command-line front ends: ``sreels structures`` and ``sreels calibrate``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from ..errors import SreelsInputError
from ..io import dumps_json

_STRUCT_EPILOG = """\
definitions:
  oo_octahedral_edge_nm  mean of the 12 edges of every MO6 octahedron of CATION
                         (six nearest O, trans pairs dropped; Yamamoto et al. 2014)
  oo_nearest_nm          mean of the first O-O shell (pairs < 1.2 x shortest O-O)
examples:
  sreels structures                 # every built-in structure
  sreels structures my.cif --cation Ti --json
"""

_CAL_EPILOG = """\
The built-in measured set is used (with --spectra added to it unless --no-builtin):
real O-K spectra of CoO, SrTiO3 (three instruments), Y3Al5O12 and alpha-Cr2O3 in ../shared/data
next to the project (or $SREELS_DATA_DIR).  If that folder is absent, the fit
falls back to dE = 2.820/R^2 pairs of the built-in structures and says so.
dE is measured from each spectrum's own threshold (--threshold, default the
onset inflection), so absolute energy offsets of the files do not matter.
User spectra are matched to a structure whose file stem equals the spectrum's
(e.g. NiO.msa with NiO.cif given by --structures), or as a TOML table names it.
examples:
  sreels calibrate
  sreels calibrate --json --threshold half_rise
  sreels calibrate --spectra NiO.msa --structures NiO.cif --out results/
  sreels calibrate --spectra mine.toml --no-builtin
"""


def configure_structures(parser):
    parser.epilog = _STRUCT_EPILOG
    parser.formatter_class = __import__("argparse").RawDescriptionHelpFormatter
    parser.add_argument("cif", nargs="*", metavar="CIF",
                        help="structure files (CIF or any ASE format); default: all built-in structures")
    parser.add_argument("--cation", default=None,
                        help="element whose MO6 octahedra define the edges (default: guessed, six-fold coordinated)")
    parser.add_argument("--shell-factor", type=float, default=1.2,
                        help="first O-O shell = pairs shorter than this x the shortest O-O (default 1.2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--max-atoms", type=int, default=None, metavar="N",
                        help="refuse a CIF listing more than N atom sites (default 1000: ASE takes minutes "
                             "beyond) or a structure of more than 20 N atoms")


def _structures(cifs, cation, shell_factor, max_atoms=None):
    from .oo import MAX_ATOMS, MAX_SITES, builtin_oo, guess_cation, oo_distances, read_structure

    if not cifs:
        return builtin_oo(shell_factor, computed=True)
    if max_atoms is not None and max_atoms < 1:
        raise SreelsInputError(f"--max-atoms {max_atoms}: expected an integer >= 1")
    limits = (MAX_SITES, MAX_ATOMS) if max_atoms is None else (max_atoms, 20 * max_atoms)
    out = []
    for c in cifs:
        atoms = read_structure(c, *limits)
        cat = cation or guess_cation(atoms)
        out.append(oo_distances(atoms, cat, Path(c).stem, shell_factor))
    return out


def run_structures(args) -> int:
    try:
        res = _structures(args.cif, args.cation, args.shell_factor, getattr(args, "max_atoms", None))
    except SreelsInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [dict(r.as_dict(), **_provenance(r.name, args.cif)) for r in res]
    if args.json:
        print(dumps_json(rows))
        return 0
    print(f"{'name':<30}{'cation':>7}{'edge mean (nm)':>16}{'edge std':>10}{'nn mean (nm)':>14}{'nn std':>9}"
          f"  {'kind':<9}{'rescaled (nm)':>14}{'study (nm)':>12}")
    for r, row in zip(res, rows):
        resc = f"{row['edge_rescaled_nm']:.4f}" if row.get("edge_rescaled_nm") is not None else ""
        study = f"{row['study_edge_nm']:.3f}" if row.get("study_edge_nm") is not None else ""
        print(f"{r.name:<30}{r.cation:>7}{r.oo_octahedral_edge_nm:>16.4f}{r.oo_octahedral_edge_std_nm:>10.4f}"
              f"{r.oo_nearest_nm:>14.4f}{r.oo_nearest_std_nm:>9.4f}  {row['kind']:<9}{resc:>14}{study:>12}")
    from .oo import NASICON, data_dir
    missing = [k for k, b in NASICON.items() if not (data_dir() / b.filename).is_file()]
    if missing and not args.cif:
        print(f"note: no CIF for {', '.join(missing)}; the study quotes 0.272 / 0.289 nm", file=sys.stderr)
    elif not args.cif:
        print("note: 'computed' = relaxed with the CHGNet potential (validation/relax_nasicon.py; see each CIF's "
              "header), not a refinement; 'rescaled' = on the published LiTi2(PO4)3 cell (sreels.structures.nasicon); "
              "'study' = Yamamoto et al. 2014, Sect. 3.3, from Delmas' group's refinements", file=sys.stderr)
    return 0


def _provenance(name, user_cifs) -> dict:
    """kind (refined / computed / user), the rescaled edge of computed NASICON and the study's value."""
    from . import nasicon
    from .oo import COMPUTED, NASICON, STUDY_EDGE_NM

    if user_cifs:
        return {"kind": "user"}
    b = {**NASICON, **COMPUTED}.get(name)
    if b is None:
        return {"kind": "refined"}
    out = {"kind": "computed", "study_edge_nm": STUDY_EDGE_NM.get(name)}
    if nasicon.available():
        s = nasicon.load_series()
        x = float(b.filename.split("_x")[1].removesuffix(".cif"))
        i = int(np.argmin(np.abs(s.x - x)))
        if abs(s.x[i] - x) < 1e-9:
            out["x"] = x
            out["edge_rescaled_nm"] = float(s.edge_rescaled_nm[i])
    return out


def configure_calibrate(parser):
    from .calibration import MODELS
    from .okedge import THRESHOLDS

    parser.epilog = _CAL_EPILOG
    parser.formatter_class = __import__("argparse").RawDescriptionHelpFormatter
    parser.add_argument("--spectra", nargs="+", metavar="FILE", default=None,
                        help="O-K spectra (.msa, .dm3/.dm4, .hspy, two-column .dat) or TOML tables of them "
                             "([[spectrum]] file, structure, name, rows, max_ev), added to the built-in set")
    parser.add_argument("--no-builtin", action="store_true",
                        help="with --spectra: fit only the given spectra, not the built-in set")
    parser.add_argument("--structures", nargs="+", metavar="CIF", default=None,
                        help="extra structures giving R (matched to spectra by file stem)")
    parser.add_argument("--threshold", choices=THRESHOLDS, default="inflection",
                        help="threshold definition on each spectrum (default: onset inflection)")
    parser.add_argument("--definition", choices=("octahedral_edge", "nearest"), default="octahedral_edge",
                        help="which O-O distance is R (default: mean octahedral edge)")
    parser.add_argument("--model", choices=MODELS, default="inverse_square",
                        help="dE = C/R^2 (default) or dE = C/R^2 + k")
    parser.add_argument("--data-dir", default=None, help="folder of the built-in measured set (default ../shared/data)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON with C_ev_nm2, C_err_ev_nm2 and points")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--out", metavar="DIR", default=None, help="write calibration.json and PNG figures into DIR "
                     "(a new folder, or one sreels wrote with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it holds an earlier result")
    out.add_argument("--figure", metavar="PATH", default=None, help="write the calibration figure to PATH")


def calibrate(spectra=None, structures=None, threshold="inflection", definition="octahedral_edge",
              model="inverse_square", data_dir=None, builtin=True):
    """Run the calibration; returns (CalibrationResult, pairs, extra, note)."""
    from .calibration import CalibrationPoint, fit_c
    from .measured import find_data_dir, measure_set, r_for_calibration, user_entries
    from .oo import builtin_oo, guess_cation, oo_distances, read_structure
    from .resonance import C_EV_NM2, delta_e_from_r

    oo = {o.name: o for o in builtin_oo()}
    for c in structures or []:
        atoms = read_structure(c)
        oo[Path(c).stem] = oo_distances(atoms, guess_cation(atoms), Path(c).stem)
    note = ""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise SreelsInputError(f"--data-dir {data_dir}: no such folder; expected the folder of measured O-K "
                               "spectra (leave it out to use ../shared/data or $SREELS_DATA_DIR)")
    skipped = []
    ddir = Path(data_dir) if data_dir else find_data_dir()
    if spectra:
        from .measured import BUILTIN_SPECTRA
        extra_builtin = BUILTIN_SPECTRA if builtin and ddir is not None and Path(ddir).is_dir() else ()
        pairs = measure_set(ddir or "/", extra_builtin + user_entries(spectra), threshold, oo, definition, skipped)
    else:
        if ddir is None or not Path(ddir).is_dir():
            note = ("measured data folder ../shared/data not found: falling back to literature pairs "
                    "dE = 2.820/R^2 (Yamamoto 2014) for the built-in structures; this only checks the fit")
            pts = []
            for o in oo.values():
                r, rerr = r_for_calibration(o, definition)
                de, _ = delta_e_from_r(r, c_ev_nm2=C_EV_NM2)
                pts.append(CalibrationPoint(o.name, float(de), 0.5, r, rerr, "literature rule"))
            return fit_c(pts, model), [], [], note
        pairs = measure_set(ddir, threshold=threshold, structures=oo, definition=definition, skipped=skipped)
    note = "; ".join(f"{n} left out: {why}" for n, why in skipped)
    pts = [p.point() for p in pairs if p.point() is not None]
    extra = [(p.spectrum.name, p.measurement.delta_e_ev, p.measurement.delta_e_err_ev)
             for p in pairs if p.point() is None]
    if not pts:
        raise SreelsInputError("no spectrum could be matched to a structure; give --structures with matching stems")
    return fit_c(pts, model), pairs, extra, note


def _write_calibration(out, res, report, pairs, extra, args) -> None:
    """calibration.json, calibration.png and (with measured spectra) spectra.png into ``out``."""
    from ..io import write_json
    from .figures import calibration_figure, spectra_figure
    from .spectra import load_spectrum

    write_json(out / "calibration.json", report)
    calibration_figure(res, out / "calibration.png", extra)
    if pairs:
        base = args.data_dir or ""
        specs = []
        for p in pairs:
            path = Path(p.spectrum.relpath)
            if not path.is_absolute():
                from .measured import find_data_dir
                path = Path(base or find_data_dir()) / path
            specs.append((load_spectrum(path, list(p.spectrum.rows) if p.spectrum.rows else None,
                                        p.spectrum.name), p.measurement))
        spectra_figure(specs, out / "spectra.png")


def run_calibrate(args) -> int:
    logging.getLogger("rsciio").setLevel(logging.ERROR)
    try:
        res, pairs, extra, note = calibrate(args.spectra, args.structures, args.threshold, args.definition,
                                            args.model, args.data_dir, builtin=not args.no_builtin)
        report = res.as_dict()
        report.update(threshold=args.threshold, definition=args.definition, note=note,
                      measurements=[dict(p.measurement.as_dict(), spectrum=p.spectrum.name,
                                         file=p.spectrum.relpath, r_nm=p.r_nm) for p in pairs])
        if args.out:
            from ..io import output_directory
            with output_directory(args.out, overwrite=args.overwrite, inputs=args.spectra or ()) as out:
                _write_calibration(out, res, report, pairs, extra, args)
        elif args.figure:
            from .figures import calibration_figure
            calibration_figure(res, Path(args.figure), extra)
    except SreelsInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(dumps_json(report))
        return 0
    if note:
        print(f"note: {note}")
    print(f"C = {res.c_ev_nm2:.3f} ± {res.c_err_ev_nm2:.3f} eV nm² ({res.model}; "
          f"χ²/dof = {res.chi2:.2f}/{res.dof} = {res.chi2_dof:.2f}; scaled σ = {res.c_err_scaled_ev_nm2:.3f})")
    print(f"study: 2.820 eV nm² -> difference {res.c_ev_nm2 - 2.820:+.3f} ({res.compare():+.1f} σ)")
    if res.k_ev is not None:
        print(f"k = {res.k_ev:.2f} ± {res.k_err_ev:.2f} eV")
    print(f"threshold: {args.threshold}; R: {args.definition}")
    print(f"{'spectrum':<32}{'dE (eV)':>9}{'±':>6}{'R (nm)':>9}{'±':>8}{'resid (eV)':>11}{'pull':>7}")
    for p, r, u in zip(res.points, res.residuals_ev, res.pulls):
        print(f"{p.name:<32}{p.delta_e_ev:>9.2f}{p.delta_e_err_ev:>6.2f}{p.r_nm:>9.4f}{p.r_err_nm:>8.4f}"
              f"{r:>11.2f}{u:>7.2f}")
    for name, d, s in extra:
        print(f"{name:<32}{d:>9.2f}{s:>6.2f}{'—':>9}  (no structure: not in the fit)")
    if res.leave_one_out:
        print("leave-one-out: " + "; ".join(f"without {n}: {c:.3f} ± {e:.3f}" for n, c, e in res.leave_one_out))
    if res.outliers:
        print(f"outliers (|pull| > {res.OUTLIER_PULL:g}): {', '.join(res.outliers)}: the rule with one C does "
              "not describe them at their R")
    return 0
