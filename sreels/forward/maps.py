"""2-D spectrum images (maps): the interface profile along y, thickness and grains varying along x.

A map of ``columns`` columns is made of line scans along y (the scenario's rows), one per column x
(``x = column_nm * ix``), each a full :func:`~sreels.forward.simulate.simulate` of the scenario
with, at that x,

- thickness ``t(x) = scenario.thickness_nm * (1 + thickness_slope_x_per_um * x / 1000)`` (times the
  scenario's own slope along y): a wedge-shaped lamella;
- every AlPO4 grain's centre moved along y by ``grain_drift_nm_per_um * x / 1000`` and its width
  scaled by ``1 + grain_swell_per_um * x / 1000``: grains that cross the map obliquely and change
  size, so that grains vary in x and y;
- its own random stream (``SeedSequence(seed).spawn``: a column's noise does not depend on the
  block size it was simulated in).

The columns are simulated in blocks of ``chunk_columns`` and written into each window's ``.zspy``
(zarr) store as they are made, so memory stays at one block whatever the map's size; the
files (navigation y, x; signal energy) open lazily in HyperSpy and in ``sreels fit``.  They hold
float32 counts in chunks of ``chunk_columns`` columns by at most :data:`CHUNK_PIXELS` pixels, the
blocks a Dask fit reads (:mod:`sreels.inference.daskfit`), compressed by Blosc LZ4 with byte shuffle
(:data:`COMPRESSOR`).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config, Detector, Instrument, Scenario
from ..errors import SreelsInputError


#: Pixels of a stored chunk (at most): the blocks of a Dask fit of maps (``chunk_rows`` 1024), so that a
#: block decompresses one chunk per window and pass.  A block of 2048 pixels took a fit's process to
#: 1.24-1.29 GiB peak, one of 1024 to 0.71 GiB at the same CPU time a pixel (64 x 64 map, one process,
#: 2026-12-01, load ~9).
CHUNK_PIXELS = 1024
#: Blosc LZ4 (level 5) with byte shuffle: measured on a 2048-pixel chunk of noisy float32 counts
#: (2026-12-01, one core, load ~10), 2.8 us a pixel and window to decompress at ratio 1.97; no shuffle
#: 3.7 us at 1.11; zstd level 1 + shuffle (RosettaSciIO's default) 12.8 us at 2.28.
COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}


@dataclass(frozen=True)
class MapSpec:
    """The second spatial axis of a map (x, across the slit direction y of the scenario)."""

    columns: int = 64
    column_nm: float = 5.7
    thickness_slope_x_per_um: float = 0.0
    grain_drift_nm_per_um: float = 0.0
    grain_swell_per_um: float = 0.0

    def __post_init__(self):
        if isinstance(self.columns, bool) or int(self.columns) != self.columns or self.columns < 1:
            raise SreelsInputError(f"map columns = {self.columns!r}: expected an integer >= 1")
        for k in ("column_nm", "thickness_slope_x_per_um", "grain_drift_nm_per_um", "grain_swell_per_um"):
            v = getattr(self, k)
            if not np.isfinite(v) or (k == "column_nm" and v <= 0):
                raise SreelsInputError(f"map {k} = {v!r}: expected a finite number" + (" > 0" if k == "column_nm"
                                                                                       else ""))
        x_um = (self.columns - 1) * self.column_nm * 1e-3
        for k in ("thickness_slope_x_per_um", "grain_swell_per_um"):
            if 1.0 + min(0.0, getattr(self, k)) * x_um <= 0:
                raise SreelsInputError(f"map {k} = {getattr(self, k)!r}: the factor 1 + {k} * x turns <= 0 within the "
                                       f"map's {x_um:.3g} um; expected a slope above {-1 / x_um:.4g}")

    def x_nm(self) -> np.ndarray:
        return self.column_nm * np.arange(self.columns)


def column_scenario(sc: Scenario, spec: MapSpec, ix: int) -> Scenario:
    """The line scan of column ``ix``: thickness and grains at its x."""
    x_um = spec.column_nm * ix * 1e-3
    grains = tuple(dataclasses.replace(g, center_nm=g.center_nm + spec.grain_drift_nm_per_um * x_um,
                                       width_nm=g.width_nm * (1.0 + spec.grain_swell_per_um * x_um))
                   for g in sc.grains)
    return dataclasses.replace(sc, thickness_nm=sc.thickness_nm * (1.0 + spec.thickness_slope_x_per_um * x_um),
                               grains=grains)


def simulate_columns(sc: Scenario, spec: MapSpec, instrument: Instrument, detector: Detector, seeds, i0: int, i1: int,
                     noise_free: bool = False):
    """Columns i0..i1-1 of the map: per window (ny, i1 - i0, channels) float32 counts, and the
    columns' truth (dict of (ny, i1 - i0) arrays)."""
    from .simulate import simulate

    out, truth = {}, {}
    for j, ix in enumerate(range(i0, i1)):
        sim = simulate(column_scenario(sc, spec, ix), instrument, detector, rng=np.random.default_rng(seeds[ix]),
                       noise_free=noise_free)
        for name, img in sim.windows.items():
            if name not in out:
                out[name] = np.empty((sc.rows, i1 - i0, img.counts.shape[1]), np.float32)
            out[name][:, j] = img.counts
        for k, v in sim.truth_columns().items():
            truth.setdefault(k, np.empty((sc.rows, i1 - i0), np.asarray(v).dtype))[:, j] = v
    return out, truth, sim


def _zarr_data(path: Path):
    """The data array of a one-signal .zspy store (opened for writing)."""
    import zarr

    root = zarr.open(str(path), mode="r+")
    exp = root["Experiments"]
    return exp[next(iter(exp.group_keys()))]["data"]


def write_map(sc: Scenario, spec: MapSpec, instrument: Instrument, detector: Detector, out_dir, seed=None,
              noise_free: bool = False, chunk_columns: int = 16, overwrite: bool = False, inputs=()) -> Path:
    """Simulate a map and write it block by block: ``<window>.zspy`` (navigation y, x; signal energy),
    ``truth.csv`` (per pixel: iy, ix, x_nm and the line scans' truth), ``scenario.toml`` and
    ``run.json`` (seed record, map parameters, timings).  The folder appears complete or not at all."""
    import dask.array as da
    import numcodecs
    from rsciio.zspy import file_writer

    from .. import __version__
    from ..config import config_to_toml
    from ..io import atomic_write_text, output_directory, write_csv, write_json
    from .output import image_metadata
    from .simulate import make_rng

    if isinstance(chunk_columns, bool) or int(chunk_columns) != chunk_columns or chunk_columns < 1:
        raise SreelsInputError(f"chunk_columns = {chunk_columns!r}: expected an integer >= 1")
    t0 = time.perf_counter()
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    make_rng(seed)  # checks it
    seeds = np.random.SeedSequence(int(seed)).spawn(spec.columns)
    ny, nx, bx = sc.rows, spec.columns, int(chunk_columns)
    chans = {w.name: w.channels for w in instrument.windows}
    if instrument.lowloss_window:
        from ..config import LOWLOSS_NAME
        chans[LOWLOSS_NAME] = instrument.lowloss_channels
    size = sum(ny * nx * c * 4 for c in chans.values())
    hy = min(ny, max(1, CHUNK_PIXELS // bx))  # chunks of the fit's blocks (at least a whole column strip's width)
    truth_all: dict = {}
    with output_directory(out_dir, overwrite=overwrite, inputs=inputs, expected_bytes=size) as tmp:
        arrays, sim = {}, None
        for i0 in range(0, nx, bx):
            i1 = min(i0 + bx, nx)
            block, truth, sim = simulate_columns(sc, spec, instrument, detector, seeds, i0, i1, noise_free)
            if not arrays:  # the stores, with the first block's axes and metadata (zeros are not written)
                for name, c in block.items():
                    img = sim.windows[name]
                    axes = [{"name": "y", "units": "nm", "size": ny, "offset": sim.position.offset_nm,
                             "scale": sim.position.scale_nm, "navigate": True},
                            {"name": "x", "units": "nm", "size": nx, "offset": 0.0, "scale": spec.column_nm,
                             "navigate": True},
                            {"name": "Energy loss", "units": "eV", "size": img.energy.size,
                             "offset": img.energy.offset_ev, "scale": img.energy.scale_ev, "navigate": False}]
                    md = image_metadata(sim, name)
                    md["sreels"]["map"] = dataclasses.asdict(spec)
                    md["sreels"]["seed"] = int(seed)
                    md["sreels"].pop("bit_generator_state", None)
                    meta = {"General": {"title": f"sreels {name} window"},
                            "Signal": {"signal_type": "EELS", "quantity": "Intensity (counts)", **md.get("Signal", {})},
                            "Acquisition_instrument": {"TEM": md["TEM"]}, "Sample": md["Sample"],
                            "sreels": md["sreels"]}
                    sig = {"data": da.zeros((ny, nx, c.shape[2]), dtype=np.float32, chunks=(hy, bx, c.shape[2])),
                           "axes": axes, "metadata": meta, "original_metadata": {}, "tmp_parameters": {},
                           "attributes": {"_lazy": True}, "learning_results": {}, "models": {},
                           "package_info": {"name": "hyperspy", "version": "2.0"}}
                    with warnings.catch_warnings():  # RosettaSciIO's zarr-2 store: deprecated in zarr 3
                        warnings.simplefilter("ignore", FutureWarning)
                        file_writer(str(tmp / f"{name}.zspy"), sig, chunks=(hy, bx, c.shape[2]),
                                    compressor=numcodecs.get_codec(COMPRESSOR), show_progressbar=False,
                                    write_empty_chunks=False)
                    arrays[name] = _zarr_data(tmp / f"{name}.zspy")
            for name, c in block.items():
                arrays[name][:, i0:i1, :] = c
            for k, v in truth.items():
                truth_all.setdefault(k, []).append(v)
        cols = {k: np.concatenate(v, 1).ravel() for k, v in truth_all.items()}
        iy, ix = np.unravel_index(np.arange(ny * nx), (ny, nx))
        write_csv(tmp / "truth.csv", {"iy": iy, "ix": ix, "x_nm": spec.x_nm()[ix], **cols})
        cfg = Config(sc, instrument, detector)
        atomic_write_text(tmp / "scenario.toml", config_to_toml(cfg))
        write_json(tmp / "run.json", {
            "sreels_version": __version__, "rng": {"seed": int(seed), "columns": "SeedSequence(seed).spawn(columns)"},
            "noise_free": noise_free, "map": dataclasses.asdict(spec), "shape": [ny, nx],
            "chunk_columns": bx, "chunks": [hy, bx], "timings_s": {"total": time.perf_counter() - t0},
            "files": [f"{n}.zspy" for n in arrays] + ["truth.csv", "scenario.toml", "run.json"]})
    return Path(out_dir)
