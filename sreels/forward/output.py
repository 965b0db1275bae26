"""Write a :class:`~sreels.forward.simulate.Simulation` to a folder (the output contract).

- ``DIR/<window>.hspy``: 2-D image, navigation y (nm), signal energy loss (eV); ``lowloss.hspy``
  is the low-loss (zero-loss + plasmon) window of a DualEELS recording (``lowloss_window = true``)
- ``DIR/truth.csv``: per-row truth (y_nm, li_rel, ti3_fraction, r_oo_nm, peak positions,
  t_over_lambda, zlp_shift_ev, ...)
- ``DIR/scenario.toml``: the fully resolved scenario, instrument and detector
- ``DIR/run.json``: seed record, version, timings, saturation, files
- ``DIR/spectrum_images.png``: with ``plot=True``, a Fig. 5-like figure

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


#: convergence semi-angle written to the files: the study illuminates the slit with a parallel
#: beam (DESIGN.md, "The measurement in one paragraph"), so alpha ~ 0 and the collection
#: semi-angle alone sets the cross sections (as in sreels' own forward model)
CONVERGENCE_SEMIANGLE_MRAD = 0.0


def image_metadata(sim, name: str) -> dict:
    """HyperSpy metadata of one window's image: microscope parameters (beam energy,
    convergence and collection semi-angles, exposure), the elements of the window's edges,
    the detector's noise as HyperSpy's variance model, and the sreels record.

    Var[counts] = gain^2 sum(k^2) electrons + readout^2 = (a E[counts] + b) c with
    a = gain, b = readout^2 / sum(k^2), c = sum(k^2) (the PSF kernel's squared sum), the
    form of ``Signal.Noise_properties.Variance_linear_model`` that
    ``estimate_poissonian_noise_variance`` reads.  Without dark subtraction the offset makes
    b negative, which HyperSpy refuses: then no variance model is written."""
    from .detector import psf_variance_factor

    cfg = sim.config
    from ..config import LOWLOSS_NAME
    low = name == LOWLOSS_NAME
    exposure = cfg.instrument.lowloss_exposure_s if low else cfg.instrument.window(name).exposure_s
    # the low-loss window holds the shallow edges of every window below it
    edges = [e for w in cfg.instrument.windows for e in w.edges] if low else cfg.instrument.window(name).edges
    det = cfg.detector
    md = {
        "TEM": {
            "beam_energy": cfg.instrument.beam_energy_kev,
            "convergence_angle": CONVERGENCE_SEMIANGLE_MRAD,
            "Detector": {"EELS": {"collection_angle": cfg.instrument.collection_semiangle_mrad,
                                  "exposure": exposure}},
        },
        "Sample": {"elements": sorted({e.split("-")[0] for e in edges})},
        "sreels": {
            "window": name, "noise_free": sim.noise_free, **hdf5_safe(sim.rng_record),
            "detector": dataclasses.asdict(det), "exposure_s": exposure,
            "gain_counts_per_e": det.gain_counts_per_e, "version": __version__,
            "instrument": {"beam_energy_kev": cfg.instrument.beam_energy_kev,
                           "collection_semiangle_mrad": cfg.instrument.collection_semiangle_mrad,
                           "resolution_fwhm_ev": cfg.instrument.resolution_fwhm_ev,
                           "plural_scattering": cfg.instrument.plural_scattering},
        },
    }
    if det.dark_subtracted and not sim.noise_free:
        c = psf_variance_factor(det.psf_decay)
        md["Signal"] = {"Noise_properties": {"Variance_linear_model": {
            "gain_factor": det.gain_counts_per_e, "gain_offset": det.readout_noise_counts ** 2 / c,
            "correlation_factor": c}}}
    return md


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
