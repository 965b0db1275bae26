"""Physical ranges of every configuration number, and profile tables checked by column.

One place per kind: :func:`validate_fields` checks every numeric, boolean and string field of
a :mod:`sreels.config` dataclass against :data:`RANGES` (finite, the right type, inside the
range; the message names the key, the value and the range); :func:`read_profile_table` reads
a scenario's profile table and checks it column by column.  The ranges are wide (what a TEM,
a spectrometer, a camera and an oxide specimen can be), not the study's values.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import math
from pathlib import Path

import numpy as np

from .errors import SreelsInputError

_INF = math.inf
#: "Class.field" -> (low, high, low inclusive, high inclusive, unit/meaning)
RANGES: dict[str, tuple] = {
    "Scenario.rows": (2, 10_000_000, True, True, "rows"),
    "Scenario.row_nm": (0, 10_000, False, True, "nm per row"),
    "Scenario.first_row_nm": (-1e6, 1e6, True, True, "nm"),
    "Scenario.thickness_nm": (0, 10_000, False, True, "nm"),
    "Scenario.thickness_slope_per_um": (-1e3, 1e3, True, True, "per um"),
    "Scenario.electrode_width_nm": (0, 1e6, False, True, "nm"),
    "Scenario.li_max_rel": (0, 100, True, True, "x the parent c_Li"),
    "Scenario.li_rise_nm": (0, 1e6, False, True, "nm"),
    "Scenario.ti3_li_threshold_rel": (0, 100, True, True, "x the parent c_Li"),
    "Scenario.ti3_li_width_rel": (0, 100, False, True, "x the parent c_Li"),
    "Scenario.ti3_boundary_nm": (0, 1e6, True, True, "nm"),
    "Scenario.ti3_width_nm": (0, 1e6, False, True, "nm"),
    "Scenario.r_oo_parent_nm": (0.15, 0.6, True, True, "nm (O-O distances of oxides)"),
    "Scenario.r_oo_slope_nm": (-0.05, 0.05, True, True, "nm per unit c_Li"),
    "Scenario.peak_a_ev": (529, 600, False, True, "eV (above the O-K threshold, 529 eV)"),
    "Scenario.peak_a_shift_electrode_ev": (-10, 10, True, True, "eV"),
    "Scenario.peak_a_shift_ti3_ev": (-10, 10, True, True, "eV"),
    "Scenario.peak_a_gain_electrode": (-1, 100, False, True, "relative intensity change"),
    "Scenario.peak_a_gain_ti3": (-1, 100, False, True, "relative intensity change"),
    "Grain.center_nm": (-1e6, 1e6, True, True, "nm"),
    "Grain.width_nm": (0, 1e6, False, True, "nm FWHM"),
    "Grain.fraction": (0, 1, True, True, "share of the row's volume"),
    "Window.offset_ev": (0, 3000, False, True, "eV (core-loss windows)"),
    "Window.channels": (64, 65536, True, True, "channels"),
    "Window.scale_ev": (0, 10, False, True, "eV per channel"),
    "Window.exposure_s": (0, 1e5, False, True, "s"),
    "Window.background_r": (0, 10, False, True, "power-law exponent"),
    "Window.background_per_ev": (0, 1e3, False, True, "per eV per incident electron per 100 nm"),
    "Window.background_ref_ev": (0, 3000, False, True, "eV"),
    "Instrument.beam_energy_kev": (1, 3000, True, True, "keV"),
    "Instrument.collection_semiangle_mrad": (0, 500, False, True, "mrad"),
    "Instrument.resolution_fwhm_ev": (0, 20, False, True, "eV FWHM"),
    "Instrument.dose_e_per_row_s": (0, 1e15, False, True, "electrons per row per second"),
    "Instrument.energy_distortion_ev": (0, 50, True, True, "eV"),
    "Instrument.drift_ev": (-100, 100, True, True, "eV"),
    "Instrument.spatial_blur_fwhm_nm": (0, 1e4, True, True, "nm"),
    "Instrument.inelastic_mfp_nm": (0, 1e5, True, True, "nm (0: lambda per phase)"),
    "Instrument.plasmon_ev": (0, 100, True, True, "eV (0: free-electron plasmon per phase)"),
    "Instrument.zlp_tail_ev": (0, 10, True, True, "eV (exponential tail of the ZLP)"),
    "Instrument.lowloss_offset_ev": (-1000, -1, True, False, "eV (the ZLP must lie inside the window)"),
    "Instrument.lowloss_channels": (64, 65536, True, True, "channels"),
    "Instrument.lowloss_exposure_s": (0, 1e5, False, True, "s"),
    "Instrument.plasmon_fwhm_ev": (0, 100, False, True, "eV"),
    "Detector.gain_counts_per_e": (0, 1e4, False, True, "counts per electron"),
    "Detector.readout_noise_counts": (0, 1e5, True, True, "counts rms"),
    "Detector.dark_offset_counts": (0, 1e6, True, True, "counts"),
    "Detector.psf_decay": (0, 1, True, False, "decay per channel"),
    "Detector.gain_nonuniformity_rel": (0, 1, True, True, "relative rms"),
    "Detector.adc_max_counts": (1, 2**32, True, True, "counts"),
}
_INTEGER = {"Scenario.rows", "Window.channels", "Detector.adc_max_counts"}


def _interval(lo, hi, lo_in, hi_in) -> str:
    return f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


def check_number(where: str, value, key: str | None = None):
    """``value`` as a number checked against ``RANGES[key or where]``; returns it (ints stay ints)."""
    lo, hi, lo_in, hi_in, unit = RANGES[key or where]
    integer = (key or where) in _INTEGER
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SreelsInputError(f"{where} = {value!r}: expected {'an integer' if integer else 'a number'} in "
                               f"{_interval(lo, hi, lo_in, hi_in)} {unit}")
    try:
        v = float(value)
    except OverflowError:  # an integer beyond any float
        v = math.inf
    ok = math.isfinite(v) and (v >= lo if lo_in else v > lo) and (v <= hi if hi_in else v < hi)
    if integer and ok and v != int(v):
        ok = False
    if not ok:
        raise SreelsInputError(f"{where} = {value!r}: expected {'an integer' if integer else 'a finite number'} "
                               f"in {_interval(lo, hi, lo_in, hi_in)} {unit}")
    return int(v) if integer else value


def validate_fields(obj, label: str | None = None) -> None:
    """Check every field of a config dataclass that :data:`RANGES` knows, and the type of the others.

    Numbers must be finite and in range, booleans real booleans, strings strings, tuples of
    strings tuples of strings.  ``label`` replaces the class name in messages (e.g. a window's
    name).
    """
    cls = type(obj).__name__
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        where = f"{label or cls}.{f.name}"
        key = f"{cls}.{f.name}"
        if key in RANGES:
            check_number(where, v, key)
        elif isinstance(f.default, bool) and not isinstance(v, bool):
            raise SreelsInputError(f"{where} = {v!r}: expected true or false")
        elif isinstance(f.default, str) and not isinstance(v, str):
            raise SreelsInputError(f"{where} = {v!r}: expected a string")
        elif f.name == "edges" and not (isinstance(v, tuple) and all(isinstance(e, str) for e in v)):
            raise SreelsInputError(f"{where} = {v!r}: expected a list of edge names such as [\"Ti-L23\", \"O-K\"]")


# ------------------------------------------------------------------ profile tables
#: column -> (low, high, low inclusive, high inclusive, meaning)
PROFILE_COLUMNS: dict[str, tuple] = {
    "y_nm": (-1e6, 1e6, True, True, "nm, strictly increasing"),
    "li_rel": (0, 100, True, True, "x the parent c_Li"),
    "ti3_fraction": (0, 1, True, True, "fraction"),
    "r_oo_nm": RANGES["Scenario.r_oo_parent_nm"][:4] + ("nm (O-O distances of oxides)",),
    "thickness_nm": RANGES["Scenario.thickness_nm"][:4] + ("nm",),
    "alpo4_fraction": (0, 1, True, True, "fraction (the host takes the rest)"),
}
REQUIRED_COLUMNS = ("y_nm", "li_rel")


def read_profile_table(path) -> dict[str, np.ndarray]:
    """Read a scenario's profile table (CSV) and check it column by column.

    Parameters
    ----------
    path : path-like
        CSV with a header row: ``y_nm, li_rel`` and optionally ``ti3_fraction, r_oo_nm,
        thickness_nm, alpo4_fraction``.

    Returns
    -------
    dict of str to ndarray
        One float array per column.

    Raises
    ------
    SreelsInputError
        Missing or unreadable file, no header or no rows, an unknown or missing column, a row
        with the wrong number of fields, a field that is not a number, a value outside its
        column's range, ``y_nm`` not strictly increasing.
    """
    path = Path(path)
    if not path.is_file():
        raise SreelsInputError(f"profile table {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SreelsInputError(f"profile table {path}: cannot read it as CSV ({exc})") from None
    if len(rows) < 3:
        raise SreelsInputError(f"profile table {path}: {len(rows)} non-empty lines; expected a header "
                               f"({', '.join(REQUIRED_COLUMNS)}, ...) and at least two rows")
    header = [h.strip() for h in rows[0]]
    for h in header:
        if h not in PROFILE_COLUMNS:
            near = difflib.get_close_matches(h, PROFILE_COLUMNS, n=1)
            raise SreelsInputError(f"profile table {path}: unknown column {h!r}"
                                   f"{'; did you mean ' + repr(near[0]) + '?' if near else ''} "
                                   f"Valid columns: {', '.join(PROFILE_COLUMNS)}")
    if len(set(header)) != len(header):
        raise SreelsInputError(f"profile table {path}: a column appears twice in {header}")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise SreelsInputError(f"profile table {path} needs columns {', '.join(REQUIRED_COLUMNS)}; "
                               f"missing {', '.join(missing)} (has {', '.join(header)})")
    cols: dict[str, list] = {h: [] for h in header}
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise SreelsInputError(f"profile table {path}: line {i} has {len(r)} fields; expected "
                                   f"{len(header)} ({', '.join(header)})")
        for h, cell in zip(header, r):
            try:
                cols[h].append(float(cell))
            except ValueError:
                raise SreelsInputError(f"profile table {path}: line {i}, column {h} = {cell!r}: expected a "
                                       "number") from None
    out = {h: np.asarray(v, float) for h, v in cols.items()}
    for h, v in out.items():
        lo, hi, lo_in, hi_in, unit = PROFILE_COLUMNS[h]
        bad = ~(np.isfinite(v) & ((v >= lo) if lo_in else (v > lo)) & ((v <= hi) if hi_in else (v < hi)))
        if bad.any():
            i = int(np.argmax(bad))
            raise SreelsInputError(f"profile table {path}: line {i + 2}, column {h} = {float(v[i])!r}: expected a "
                                   f"finite number in {_interval(lo, hi, lo_in, hi_in)} {unit}")
    dy = np.diff(out["y_nm"])
    if np.any(dy <= 0):
        i = int(np.argmax(dy <= 0))
        raise SreelsInputError(f"profile table {path}: y_nm must increase strictly, but line {i + 3} has "
                               f"{out['y_nm'][i + 1]} after {out['y_nm'][i]}")
    return out
