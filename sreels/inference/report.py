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


def write_figures(result, derived: dict, folder, nav_shape=()) -> list[str]:
    """The fast path's figures into ``folder``; returns notes on figures not drawn.

    A line scan of three or more rows: ``profiles.png`` (the four profiles with errors),
    ``region_spectra.png`` (spectra by region), ``residuals.png`` and, with a low-loss window,
    ``lowloss.png`` (ZLP line, t/lambda, resolution); fewer rows:
    ``spectrum_fits.png`` (data, model, residual per edge) instead of profiles; a 2-D map:
    ``maps.png`` and ``residuals.png``."""
    from ..plots import (lowloss_figure, maps_figure, profiles_figure, region_spectra_figure, residuals_figure,
                         spectrum_fits_figure)
    folder = Path(folder)
    notes = []
    rows = int(result.position.size)
    if is_map(nav_shape):
        maps_figure(result, nav_shape, folder / "maps.png")
    elif rows >= 3:
        profiles_figure(result, derived, folder / "profiles.png")
        lowloss_figure(result, folder / "lowloss.png")
        if not region_spectra_figure(result, folder / "region_spectra.png"):
            notes.append("region_spectra.png not drawn: no Ti-L2,3/O-K fit or no region (Ti3+, Ti4+, parent) "
                         "with usable rows")
    else:
        notes.append(f"{rows} row(s): no profile figure (profiles need three rows or more); "
                     "spectrum_fits.png shows the fits")
    if result.fits:  # a chunked fit keeps no per-row edge fits
        if rows >= 3:
            residuals_figure(result, folder / "residuals.png", nav_shape)
        else:
            spectrum_fits_figure(result, folder / "spectrum_fits.png")
    return notes


#: Largest map (pixels) whose per-pixel table is also written as profiles.csv (512 x 512).
MAP_CSV_MAX_PIXELS = 512 * 512


def map_quantities(result) -> list[str]:
    """The numeric per-pixel columns written as maps, and ``usable`` (1 where every edge's numbers may be used)."""
    return [k for k, v in result.columns.items() if np.asarray(v).dtype.kind in "fiub"] + ["usable"]


def save_maps(path: Path, result, nav_shape) -> list[str]:
    """Per-pixel results as one HyperSpy signal ``path`` (``.zspy``: zarr, or ``.hspy``): a stack of 2-D
    maps (signal axes y, x in pixels; navigation axis the quantity, names in
    ``metadata.sreels.quantities``), which ``hs.load(path, lazy=True)`` opens lazily; returns the names."""
    import importlib
    import warnings

    from .fast import usable

    names = map_quantities(result)
    ny, nx = nav_shape
    data = np.stack([np.asarray(result.columns[k], float).reshape(ny, nx) if k != "usable"
                     else usable(result.status).astype(float).reshape(ny, nx) for k in names])
    axes = [{"name": "quantity", "units": "", "size": len(names), "offset": 0.0, "scale": 1.0, "navigate": True},
            {"name": "y", "units": "px", "size": ny, "offset": 0.0, "scale": 1.0, "navigate": False},
            {"name": "x", "units": "px", "size": nx, "offset": 0.0, "scale": 1.0, "navigate": False}]
    md = {"General": {"title": "sreels fit maps"}, "Signal": {"signal_type": "", "quantity": "per-pixel results"},
          "sreels": {"quantities": names, "version": __version__}}
    sig = {"data": data, "axes": axes, "metadata": md, "original_metadata": {}, "tmp_parameters": {},
           "attributes": {"_lazy": False}, "learning_results": {}, "models": {},
           "package_info": {"name": "hyperspy", "version": "2.0"}}
    mod = {".zspy": "rsciio.zspy", ".hspy": "rsciio.hspy"}[Path(path).suffix]
    with warnings.catch_warnings():  # RosettaSciIO's zarr-2 store is deprecated in zarr 3 (not used here)
        warnings.simplefilter("ignore", FutureWarning)
        importlib.import_module(mod).file_writer(str(path), sig)
    return names


def write_fit(result, derived: dict, inputs, out_dir, overwrite=False, plot=True, extra=None,
              nav_shape=()) -> Path:
    """profiles.csv, summary.json and figures; for a 2-D map (``nav_shape`` (ny, nx)) the table
    gains the pixel indices ``iy``, ``ix`` (and is written up to :data:`MAP_CSV_MAX_PIXELS`),
    maps.zspy holds every per-pixel quantity as maps (:func:`save_maps`) and maps.png replaces
    the line-profile figure."""
    table = profile_table(result)
    if is_map(nav_shape):
        iy, ix = np.unravel_index(np.arange(result.position.size), nav_shape)
        table = {"iy": iy, "ix": ix, **table}
        extra = {**(extra or {}), "map_shape": list(nav_shape)}
    csv = not is_map(nav_shape) or result.position.size <= MAP_CSV_MAX_PIXELS
    with output_directory(out_dir, overwrite=overwrite, inputs=inputs) as tmp:
        if csv:
            write_csv(tmp / "profiles.csv", table)
        if is_map(nav_shape):  # maps HyperSpy opens lazily (the folder is renamed into place when complete)
            names = save_maps(tmp / "maps.zspy", result, nav_shape)
            extra = {**extra, "maps": {"file": "maps.zspy", "quantities": names}}
        summary = summary_dict(result, derived, inputs, extra)
        if not csv:
            summary["notes"].append(f"{result.position.size} pixels: no profiles.csv (more than "
                                    f"{MAP_CSV_MAX_PIXELS}); the per-pixel results are in maps.zspy")
        if plot:  # figures that were not drawn say why in the summary's notes
            summary["notes"] += write_figures(result, derived, tmp, nav_shape)
        write_json(tmp / "summary.json", summary)
    return Path(out_dir)
