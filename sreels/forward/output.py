"""Write a :class:`~sreels.forward.simulate.Simulation` to a folder (the output contract).

DIR/<window>.hspy  2-D image, navigation y (nm), signal energy loss (eV); lowloss.hspy is the
                   low-loss (zero-loss + plasmon) window of a DualEELS recording
DIR/truth.csv      per-row truth (y_nm, li_rel, ti3_fraction, r_oo_nm, peak positions, t_over_lambda,
                   zlp_shift_ev, ...)
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
from ..io import atomic_write_text, output_directory, save_hspy, write_csv, write_json


def image_metadata(sim, name: str) -> dict:
    cfg = sim.config
    from ..config import LOWLOSS_NAME
    exposure = cfg.instrument.lowloss_exposure_s if name == LOWLOSS_NAME else cfg.instrument.window(name).exposure_s
    det = cfg.detector
    return {
        "TEM": {
            "beam_energy": cfg.instrument.beam_energy_kev,
            "Detector": {"EELS": {"collection_angle": cfg.instrument.collection_semiangle_mrad,
                                  "exposure": exposure}},
        },
        "sreels": {
            "window": name, "noise_free": sim.noise_free, **sim.rng_record,
            "detector": dataclasses.asdict(det), "exposure_s": exposure,
            "gain_counts_per_e": det.gain_counts_per_e, "version": __version__,
        },
    }


def write_simulation(sim, out_dir, overwrite: bool = False, plot: bool = False) -> Path:
    t0 = time.perf_counter()
    with output_directory(out_dir, overwrite=overwrite) as tmp:
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
