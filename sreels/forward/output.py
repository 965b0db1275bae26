"""Write a :class:`~sreels.forward.simulate.Simulation` to a folder (the output contract).

DIR/<window>.hspy  2-D image, navigation y (nm), signal energy loss (eV)
DIR/truth.csv      per-row truth (y_nm, li_rel, ti3_fraction, r_oo_nm, peak positions, ...)
DIR/scenario.toml  the fully resolved scenario, instrument and detector
DIR/run.json       seed record, version, timings, saturation, files
DIR/spectrum_images.png  with ``plot=True``: a Fig. 5-like figure
The folder appears complete or not at all (written to a temporary folder, then renamed).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path

from .. import __version__
from ..config import config_to_toml
from ..io import atomic_write_text, hdf5_safe, output_directory, save_hspy, write_csv, write_json


def image_metadata(sim, name: str) -> dict:
    cfg = sim.config
    w = cfg.instrument.window(name)
    det = cfg.detector
    return {
        "TEM": {
            "beam_energy": cfg.instrument.beam_energy_kev,
            "Detector": {"EELS": {"collection_angle": cfg.instrument.collection_semiangle_mrad,
                                  "exposure": w.exposure_s}},
        },
        "sreels": {
            "window": name, "noise_free": sim.noise_free, **hdf5_safe(sim.rng_record),
            "detector": dataclasses.asdict(det), "exposure_s": w.exposure_s,
            "gain_counts_per_e": det.gain_counts_per_e, "version": __version__,
        },
    }


def write_simulation(sim, out_dir, overwrite: bool = False, plot: bool = False, inputs=()) -> Path:
    t0 = time.perf_counter()
    inputs = [*inputs, *([sim.config.scenario.profile_table] if sim.config.scenario.profile_table else [])]
    size = sum(2 * v.counts.nbytes for v in sim.windows.values())  # images, truth and figure: a generous bound
    with output_directory(out_dir, overwrite=overwrite, inputs=inputs, expected_bytes=size) as tmp:
        files = []
        for name, img in sim.windows.items():
            save_hspy(tmp / f"{name}.hspy", img.counts, img.energy, sim.position,
                      image_metadata(sim, name), title=f"sreels {name} window")
            files.append(f"{name}.hspy")
        write_csv(tmp / "truth.csv", sim.truth_columns())
        atomic_write_text(tmp / "scenario.toml", config_to_toml(sim.config))
        files += ["truth.csv", "scenario.toml", "run.json"]
        if plot:
            from ..plots import spectrum_image_figure
            spectrum_image_figure(sim, tmp / "spectrum_images.png")
            files.append("spectrum_images.png")
        run = {
            "sreels_version": __version__, "python": platform.python_version(),
            "rng": sim.rng_record, "noise_free": sim.noise_free,
            "timings_s": {**sim.timings_s, "write": time.perf_counter() - t0},
            "saturated_pixels": {k: int(v.saturated.sum()) for k, v in sim.windows.items()},
            "windows": {k: {"offset_ev": v.energy.offset_ev, "scale_ev": v.energy.scale_ev,
                            "channels": v.energy.size} for k, v in sim.windows.items()},
            "rows": sim.position.size, "files": files,
        }
        write_json(tmp / "run.json", run)
    return Path(out_dir)
