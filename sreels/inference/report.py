"""Writing a fast-path result: profiles.csv, summary.json, figures (the output contract)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from .. import __version__
from ..io import output_directory, write_csv, write_json
from .derived import KEYS

PROFILE_COLUMNS = ("y_nm", "li_rel", "li_rel_err", "ti3_fraction", "ti3_fraction_err", "peak_a_ev",
                   "peak_a_ev_err", "peak_b_ev", "peak_b_ev_err", "r_oo_nm", "r_oo_nm_err")


def profile_table(result) -> dict:
    cols = {k: result.columns[k] for k in PROFILE_COLUMNS}
    cols["status"] = result.status
    extra = [k for k in result.columns if k not in cols]
    cols.update({k: result.columns[k] for k in extra})
    return cols


def summary_dict(result, derived: dict, inputs, extra: dict | None = None) -> dict:
    import dataclasses

    s = {k: derived.get(k) for k in KEYS} | {f"{k}_err": derived.get(f"{k}_err") for k in KEYS}
    s.update({
        "r_oo_slope_nm": derived.get("r_oo_slope_nm"), "r_oo_slope_nm_err": derived.get("r_oo_slope_nm_err"),
        "notes": list(derived.get("notes", [])) + list(result.notes),
        "input_files": [str(p) for p in inputs], "version": __version__, "python": platform.python_version(),
        "method": "fast", "settings": dataclasses.asdict(result.settings),
        "rows": int(result.position.size),
        "rows_by_status": {str(k): int(v) for k, v in zip(*np.unique(result.status, return_counts=True))},
        "timings_s": result.timings_s,
    })
    if extra:
        s.update(extra)
    return s


def is_map(nav_shape) -> bool:
    """A 2-D scan (ny, nx), both > 1: pixels, not positions along a line."""
    return len(nav_shape) == 2 and min(nav_shape) > 1


def write_fit(result, derived: dict, inputs, out_dir, overwrite=False, plot=True, extra=None,
              nav_shape=()) -> Path:
    """profiles.csv, summary.json and figures; for a 2-D map (``nav_shape`` (ny, nx)) the table
    gains the pixel indices ``iy``, ``ix`` and maps.png replaces the line-profile figure."""
    table = profile_table(result)
    if is_map(nav_shape):
        iy, ix = np.unravel_index(np.arange(result.position.size), nav_shape)
        table = {"iy": iy, "ix": ix, **table}
        extra = {**(extra or {}), "map_shape": list(nav_shape)}
    with output_directory(out_dir, overwrite=overwrite, inputs=inputs) as tmp:
        write_csv(tmp / "profiles.csv", table)
        write_json(tmp / "summary.json", summary_dict(result, derived, inputs, extra))
        if plot:
            from ..plots import maps_figure, profiles_figure, residuals_figure
            if is_map(nav_shape):
                maps_figure(result, nav_shape, tmp / "maps.png")
            else:
                profiles_figure(result, derived, tmp / "profiles.png")
            if result.fits:  # a chunked fit keeps no per-row edge fits
                residuals_figure(result, tmp / "residuals.png")
    return Path(out_dir)
