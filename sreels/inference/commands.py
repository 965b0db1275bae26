"""``sreels fit``."""

from __future__ import annotations

import argparse

import numpy as np

from ..config import seed_arg

from ..errors import SreelsInputError


def configure_fit(p):
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="spectrum images: .dm3/.dm4/.hspy/.zspy/.msa (RosettaSciIO) or .npy; one file per energy "
                        "window (e.g. low.hspy high.hspy), or a folder written by `sreels simulate`")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--method", choices=("fast", "bayes"), default="fast",
                   help="fast: per-row batched least squares (default); bayes: joint emcee posterior")
    p.add_argument("--energy-offset", type=float, metavar="EV", help="override the energy of channel 0 (eV)")
    p.add_argument("--dispersion", type=float, metavar="EV", help="override the dispersion (eV/channel)")
    p.add_argument("--gain", type=float, metavar="COUNTS_PER_E",
                   help="detector conversion gain (default: from the file, else 1 with errors scaled by "
                        "sqrt(chi2_red); bayes: estimated from the MAP chi2)")
    p.add_argument("--readout-noise", type=float, metavar="COUNTS", help="readout noise (counts rms; default: from the file's sreels metadata, else 0)")
    p.add_argument("--psf-decay", type=float, help="detector PSF decay along energy (default: from the file, else 0)")
    p.add_argument("--resolution", type=float, default=None, metavar="EV",
                   help="energy resolution FWHM (eV; default: from the files' metadata, else 0.5, said in a note)")
    p.add_argument("--beam-energy", type=float, default=None, metavar="KEV",
                   help="beam energy (keV; default: from the files' metadata, else 300)")
    p.add_argument("--collection-angle", type=float, default=None, metavar="MRAD",
                   help="collection semi-angle (mrad; default: from the files' metadata, else 10)")
    p.add_argument("--threshold", type=float, default=None, metavar="EV",
                   help="O-K threshold on the calibrated axis for dE_b (the study's convention: 529.0); "
                        "default: measured per row, so that dE_b does not depend on the axis' calibration")
    p.add_argument("--calibration", metavar="FILE.json",
                   help="C and its error from `sreels calibrate --out DIR` (DIR/calibration.json); default: "
                        "2.668 +- 0.08 eV nm^2 on measured data (this O-K measurement calibrated on measured "
                        "SrTiO3 and CoO; the study's 2.820 with --threshold), the forward model's 2.820 on a "
                        "sreels simulation")
    p.add_argument("--parent", nargs=2, type=float, metavar=("Y0_NM", "Y1_NM"),
                   help="y-range of the parent electrolyte (default: the far third of the image; for a 2-D "
                        "map flat pixel indices, default: all pixels)")
    p.add_argument("--bin", type=int, default=1, metavar="N", help="sum N rows before fitting (default 1: no binning)")
    p.add_argument("--saturation", type=float, metavar="COUNTS", help="mask pixels at or above this value (default: the ADC maximum from the file's sreels "
                        "metadata, else no mask)")
    p.add_argument("--li-range", nargs=2, type=float, default=None, metavar=("LO_EV", "HI_EV"),
                   help="Li-K fit range (default 46 71 eV, shrunk to the data)")
    p.add_argument("--ti-range", nargs=2, type=float, default=None, metavar=("LO_EV", "HI_EV"),
                   help="Ti-L2,3 fit range (default 440 480 eV, shrunk to the data)")
    p.add_argument("--o-max", type=float, default=None, metavar="EV",
                   help="end of the O-K peak-b search on the file's axis (default: 45 eV above the onset, "
                        "3 eV before another edge found there)")
    p.add_argument("--c-err", type=float, default=0.0, metavar="EV_NM2",
                   help="standard error of C to propagate into R_OO; given, C is the study's 2.820 eV nm^2 "
                        "(or --calibration's) with this error (default: see --calibration)")
    p.add_argument("--reference", action="append", metavar="NAME=FILE", default=None,
                   help="measured MLLS standard for the Ti-L2,3 fit, once per component: --reference "
                        "Ti4+=rutile.msa --reference Ti3+=Ti2O3.msa (same resolution and camera as the image; "
                        "default: forward-model references)")
    p.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="(fast) read the files lazily and fit blocks of N rows (pixels of a map) as tasks of a "
                        "Dask graph (local threads; see --workers, --scheduler), for images that do not fit in "
                        "memory; same result, no residual image")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="(fast) fit the chunks on a dask.distributed LocalCluster of N single-threaded worker "
                        "processes (implies lazy reading; chunks of --chunk-rows, default 2048)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="(fast) fit the chunks on an existing Dask cluster, e.g. tcp://host:8786 (its workers need "
                        "sreels installed and the input files readable at the same paths)")
    p.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                   help="refuse an in-memory fit estimated to need more than this (default: $SREELS_MAX_MEMORY_GIB, "
                        "else 80 %% of the machine's memory); --chunk-rows needs far less")
    p.add_argument("--no-plot", action="store_true", help="skip the figures")
    p.add_argument("--seed", type=seed_arg, default=None,
                   help="(bayes) random seed of the walkers (default: fresh entropy, recorded in summary.json)")
    p.add_argument("--allow-unconverged", action="store_true", help="(bayes) exit 0 even if not converged")
    p.add_argument("--priors", metavar="FILE.toml", help="(bayes) prior settings")
    p.add_argument("--plural", action=argparse.BooleanOptionalAction, default=True,
                   help="(bayes) convolve the model with a DualEELS input's low loss (plural scattering; default on "
                        "for a DualEELS input; pulls within target on 52 simulated images per t/lambda 0.3-0.9, "
                        "validation/16_bayes_dualeels_pulls.py); --no-plural fits it single-scattering, with a warning")
    p.add_argument("--walkers", type=int, default=None, help="(bayes) number of emcee walkers (default max(P + 6, 24), P sampled parameters)")
    p.add_argument("--steps", type=int, default=None, help="(bayes) maximum emcee steps (default 3000; the run stops earlier once converged)")


def expand_inputs(inputs):
    from pathlib import Path

    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() != ".zspy":  # a .zspy store is a folder too
            files = sorted(p.glob("*.hspy")) + sorted(p.glob("*.zspy"))
            if not files:
                raise SreelsInputError(f"folder {p} holds no .hspy or .zspy spectrum images")
            out += files
        else:
            out.append(p)
    return out


def settings_from_args(args):
    from .fast import FitSettings
    from .references import parse_references

    return FitSettings(
        ti_references=parse_references(getattr(args, "reference", None)),
        gain_counts_per_e=args.gain, readout_noise_counts=args.readout_noise, psf_decay=args.psf_decay,
        resolution_fwhm_ev=args.resolution, beam_energy_kev=getattr(args, "beam_energy", None),
        collection_semiangle_mrad=getattr(args, "collection_angle", None), threshold_ev=getattr(args, "threshold", None),
        **c_from_calibration(getattr(args, "calibration", None), args.c_err),
        parent_nm=tuple(args.parent) if args.parent else None,
        bin_rows=args.bin, saturation_counts=args.saturation, o_max_ev=getattr(args, "o_max", None),
        **_ranges(getattr(args, "li_range", None), getattr(args, "ti_range", None)))


def _ranges(li, ti) -> dict:
    """--li-range / --ti-range as FitSettings fields, checked (lo < pre-edge end < hi)."""
    out = {}
    for name, r, pre in (("li", li, 54.5), ("ti", ti, 452.0)):
        if r is None:
            continue
        lo, hi = r
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < pre < hi):
            raise SreelsInputError(f"--{name}-range {lo:g} {hi:g}: expected LO < {pre:g} eV (the pre-edge end) < HI")
        out[f"{name}_fit_ev"] = (float(lo), float(hi))
    return out


def c_from_calibration(path, c_err):
    """C (and its error) for R = sqrt(C / dE_b): from ``sreels calibrate``'s calibration.json when
    given (its error scaled by sqrt(chi2/dof) where larger), else the study's 2.820 with ``c_err``."""
    if not path:
        return {"c_err_ev_nm2": c_err}
    import json
    from pathlib import Path

    try:
        d = json.loads(Path(path).read_text())
        c = float(d["C_ev_nm2"])
        e = float(d.get("C_err_scaled_ev_nm2") or d["C_err_ev_nm2"])
    except FileNotFoundError:
        raise SreelsInputError(f"--calibration {path}: no such file") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SreelsInputError(f"--calibration {path}: expected sreels calibrate's calibration.json with "
                               f"C_ev_nm2 and C_err_ev_nm2 ({type(exc).__name__}: {exc})") from None
    if not (np.isfinite(c) and c > 0 and np.isfinite(e) and e >= 0):
        raise SreelsInputError(f"--calibration {path}: C = {c}, error {e}; expected C > 0 and error >= 0")
    return {"c_ev_nm2": c, "c_err_ev_nm2": float(np.hypot(e, c_err))}


#: C of dE_b R^2 = C for measured spectra with the fast path's own O-K measurement (threshold per row,
#: peak b as :mod:`.okpeaks` fits it): ``sreels calibrate`` on the measured crystals of the shared
#: data set (CoO, Egerton's textbook data; SrTiO3, pyTEMlib's Nion spectrum; SrTiO3 rows 0-2 of
#: exspy-demos' LSMO/STO line scan), Y3Al5O12 left out as an outlier of the rule (pull -12):
#: 2.668 +- 0.016 eV nm^2; one by one the three give 2.659-2.696 (measured 2026-12-01).
C_MEASURED_EV_NM2 = 2.668
#: Its error for an oxide outside that set: half its difference to the study's 2.820 (Yamamoto 2014,
#: Eq. 1, from literature EELS of transition-metal oxides with their own peak and threshold
#: conventions), 4x the spread of the calibration spectra: 1.5 % in R.  Also the error of 2.820
#: with ``--threshold`` (the study's convention) on measured data.
C_MEASURED_ERR_EV_NM2 = 0.08
#: The O-O distances (nm) the rule is known on: the mean octahedral O-O edges of the refined oxides of
#: :mod:`sreels.structures.oo` (Al2O3 0.2685 ... MnO 0.3137 nm; ``sreels structures``, tests/structures), which span
#: the measured calibration set (SrTiO3 0.276, CoO 0.300) and the study's electrode (0.272-0.289 nm, Yamamoto 2014,
#: Sect. 3.3).  A measured oxide whose dE_b gives R beyond them is outside what the rule was shown to describe:
#: Y3Al5O12 (EELS DB 21692) gives 0.334 nm for an AlO6 edge of 0.274 nm, 12 sigma off the rule.
R_RULE_NM = (0.2685, 0.3137)


def c_for_measured(settings, windows, calibrated: bool, from_file: bool = False):
    """C for R = sqrt(C / dE_b) and the note that names it: the user's (``--calibration``/``--c-err``), the
    forward model's for a sreels simulation (its metadata), else :data:`C_MEASURED_EV_NM2` (per-row
    threshold) or the study's 2.820 (``--threshold``), each with :data:`C_MEASURED_ERR_EV_NM2`."""
    import dataclasses

    simulated = all(isinstance(w.metadata, dict) and isinstance(w.metadata.get("sreels"), dict)
                    for w in windows.values())
    if calibrated:   # the rule's range is checked unless C comes from the user's own standards (from_file)
        return (settings if from_file or simulated else dataclasses.replace(settings, r_oo_rule_nm=R_RULE_NM)), (
            f"R_OO with C = {settings.c_ev_nm2:.3f} ± {settings.c_err_ev_nm2:.3f} eV nm² "
            "(given); r_oo_nm_err includes C's error, r_oo_nm_err_stat does not")
    if simulated:
        return settings, (f"R_OO with C = {settings.c_ev_nm2:.3f} eV nm², the forward model's own constant "
                          "(the files are a sreels simulation)")
    c = settings.c_ev_nm2 if settings.threshold_ev is not None else C_MEASURED_EV_NM2
    settings = dataclasses.replace(settings, c_ev_nm2=c, c_err_ev_nm2=C_MEASURED_ERR_EV_NM2, r_oo_rule_nm=R_RULE_NM)
    how = ("the study's, for its fixed threshold" if settings.threshold_ev is not None else
           "this O-K measurement calibrated on measured SrTiO3 and CoO")
    return settings, (f"R_OO with C = {c:.3f} ± {C_MEASURED_ERR_EV_NM2:.2f} eV nm² ({how}; the error is that of "
                      "the rule for another oxide): r_oo_nm_err includes it, common to every row (1.5 % of R); "
                      "r_oo_nm_err_stat does not. `sreels calibrate --spectra` on your own standards and "
                      "`--calibration` replace it")


def run_fit(args) -> int:
    if args.method == "bayes":
        from .bayes.commands import run_bayes
        return run_bayes(args)
    import dataclasses
    from pathlib import Path

    import numpy as np

    from .derived import derive
    from .fast import fit_image, usable, usable_by_edge, withheld_reasons
    from .load import load_measurement
    from .report import is_map, write_fit

    from ..outdir import check_output
    from ..resources import set_limit

    if args.bin < 1:
        raise SreelsInputError(f"--bin {args.bin}: expected an integer >= 1")
    set_limit(getattr(args, "max_memory", None))
    inputs = expand_inputs(args.inputs)
    check_output(args.out, args.overwrite, inputs)
    chunk = getattr(args, "chunk_rows", None)
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if chunk is None and (workers is not None or scheduler is not None):
        chunk = 2048
    if chunk is None:
        check_fit_memory(inputs, args.energy_offset, args.dispersion)
    windows = load_measurement(inputs, args.energy_offset, args.dispersion, lazy=chunk is not None)
    settings = settings_from_args(args)
    from_file = bool(getattr(args, "calibration", None))
    settings, c_note = c_for_measured(settings, windows, from_file or args.c_err > 0, from_file)
    nav = next(iter(windows.values())).nav_shape
    if is_map(nav) and args.bin != 1:
        raise SreelsInputError(f"--bin {args.bin} sums neighbouring rows of a line scan; this is a 2-D map "
                               f"({nav[0]} x {nav[1]} pixels): bin the map before, or fit it unbinned")
    if is_map(nav) and settings.parent_nm is None:  # no "far third" in a map: relative to its mean
        settings = dataclasses.replace(settings, parent_nm=(-np.inf, np.inf))
    if chunk is not None:
        from .fast import fit_image_chunked
        res = fit_image_chunked(windows, settings, chunk, workers=workers, scheduler=scheduler)
    else:
        res = fit_image(windows, settings)
    if is_map(nav):
        ok = usable(res.status)
        d = {"notes": [f"2-D map {nav[0]} x {nav[1]} pixels: the line-profile numbers (electrode width, "
                       "Ti3+ boundary, ...) need a line scan across the interface and are not computed; "
                       "per-pixel values in maps.zspy (HyperSpy, lazily), profiles.csv (iy, ix) and maps.png; c_Li relative to the mean of "
                       "the map's valid pixels unless --parent gives a range of flat pixel indices"]}
        for k in ("li_rel", "ti3_fraction", "r_oo_nm"):
            v = res.columns[k][ok & np.isfinite(res.columns[k])]
            d[f"{k}_median"] = float(np.median(v)) if v.size else None
    else:
        d = derive(res.position.y_nm, res.columns, usable_by_edge(res.status), settings.c_ev_nm2,
                   settings.c_err_ev_nm2, settings.parent_nm, why=withheld_reasons(res.status))
        unitless = sorted({Path(w.source).name for w in windows.values() if not w.position_unit})
        if unitless:  # positions are row indices: say so next to every number in "nm"
            d.setdefault("notes", []).append(
                f"{', '.join(unitless)}: the position axis has no length unit; y_nm and every width or "
                "position below are row indices (x the row size in nm to convert)")
    if np.isfinite(np.asarray(res.columns.get("r_oo_nm", [np.nan]), float)).any():
        d.setdefault("notes", []).append(c_note)
    out = write_fit(res, d, inputs, args.out, overwrite=args.overwrite, plot=not args.no_plot, nav_shape=nav)
    print_summary(res, d)
    print(f"wrote {out}/ ({', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))})")
    return exit_code_for(res)


#: The columns that say an edge was measured in a row (a usable row with one of them finite).
MEASURED_COLUMNS = (("li", "Li-K", ("li_rel", "li_k_amount")), ("ti", "Ti-L2,3", ("ti3_fraction",)),
                    ("o", "O-K", ("delta_e_b_ev",)))


def measured_rows(res) -> dict:
    """Rows with a usable, finite number, per edge whose window the image has (label -> count)."""
    from .fast import usable

    c, out = res.columns, {}
    for edge, label, cols in MEASURED_COLUMNS:
        present = [k for k in cols if k in c]
        if not present or f"{edge}_chi2_red" not in c or all(f"no_{edge}" in str(st).split("|") for st in res.status):
            continue  # no window of this edge, or the edge is in none of its rows
        ok = usable(res.status, edge)
        out[label] = int(np.sum(ok & np.any([np.isfinite(np.asarray(c[k], float)) for k in present], axis=0)))
    return out


def exit_code_for(res) -> int:
    """0 when at least one number was measured (a usable row with a finite c_Li, Li-K amount, Ti3+
    fraction or dE_b); :data:`~sreels.errors.EXIT_NOTHING_MEASURED` (with one line on stderr naming
    the row statuses) when nothing was."""
    import sys
    from collections import Counter

    from ..errors import EXIT_NOTHING_MEASURED

    if any(measured_rows(res).values()):
        return 0
    status = [str(s) for s in res.status]
    kinds = ", ".join(f"{k} x{n}" for k, n in Counter(status).most_common(4))
    print(f"sreels fit: error: not one of the {len(status)} rows could be fitted (status: {kinds}); "
          "the files were written for inspection, but nothing was measured", file=sys.stderr)
    return EXIT_NOTHING_MEASURED


def check_fit_memory(inputs, energy_offset=None, dispersion=None) -> None:
    """Estimate an in-memory fit's peak memory from the files' shapes (read lazily) and refuse
    it above the limit of :mod:`sreels.resources`."""
    from ..resources import check_memory, fit_bytes
    from .load import load_measurement

    windows = load_measurement(inputs, energy_offset, dispersion, lazy=True)
    rows = max(w.counts.shape[0] for w in windows.values())
    channels = sum(w.counts.shape[1] for w in windows.values())
    check_memory(fit_bytes(rows, channels), f"fitting {rows} rows x {channels} channels in memory",
                 "--chunk-rows N fits N rows at a time")


def print_summary(res, d, truth=None):
    from .derived import KEYS


    n_ok = int((res.status == "ok").sum())
    per_edge = ", ".join(f"{label} {n}" for label, n in measured_rows(res).items())
    print(f"fitted {res.position.size} rows ({n_ok} ok; rows with a usable number: {per_edge or 'none'}) "
          f"in {res.timings_s['total'] * 1e3:.0f} ms")
    medians = [k for k in d if k.endswith("_median")]
    if medians:  # a 2-D map: per-pixel values, no line-profile numbers
        for k in medians:
            print(f"{k:26s} {d[k]:12.5g}" if d[k] is not None else f"{k:26s} {'n/a':>12s}")
    head = f"{'quantity':26s} {'estimate':>22s}" + (f" {'truth':>10s} {'z':>6s}" if truth else "")
    if not medians:
        print(head)
    for k in ([] if medians else KEYS):
        v, e = d.get(k), d.get(f"{k}_err")
        line = f"{k:26s} {v:12.5g} ± {e:<9.2g}" if v is not None and v == v else f"{k:26s} {'n/a':>22s}"
        if truth and k in truth and v == v:
            line += f" {truth[k]:10.5g} {(v - truth[k]) / e if e else float('nan'):+6.2f}"
        print(line)
    for n in list(d.get("notes", [])) + list(getattr(res, "notes", [])):
        print(f"note: {n}")
