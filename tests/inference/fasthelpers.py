"""Simulated scenarios shared by the fast-path tests."""
import numpy as np

from sreels.config import LOWLOSS_NAME, Scenario
from sreels.forward.simulate import simulate
from sreels.inference.derived import derive
from sreels.inference.fast import fit_image, usable, usable_by_edge
from sreels.inference.load import WindowData

SCENARIOS = {
    "study": Scenario(),
    # narrow electrode, lower Li maximum, Ti3+ from a lower threshold, smaller O-O expansion
    "narrow": Scenario(electrode_width_nm=250.0, li_max_rel=5.0, li_rise_nm=60.0, ti3_li_threshold_rel=3.5,
                       r_oo_parent_nm=0.285, r_oo_slope_nm=0.003, grains=()),
    # wide electrode, boundary set by position, thicker lamella with a gradient
    "wide": Scenario(electrode_width_nm=700.0, li_max_rel=10.0, li_rise_nm=150.0, ti3_mode="position",
                     ti3_boundary_nm=300.0, ti3_width_nm=25.0, r_oo_parent_nm=0.278, r_oo_slope_nm=0.005,
                     thickness_nm=120.0, thickness_slope_per_um=-0.2),
}


def windows_of(sim):
    det = sim.config.detector
    inst = sim.config.instrument

    def md(name):  # as sreels.forward.output writes it: the detector and the window's exposure
        exposure = inst.lowloss_exposure_s if name == LOWLOSS_NAME else inst.window(name).exposure_s
        return {"sreels": {"detector": {"psf_decay": det.psf_decay}, "exposure_s": exposure,
                           "instrument": {"plural_scattering": inst.plural_scattering}}}

    return {k: WindowData(k, v.energy, v.counts.astype(float), sim.position, "sim", det.gain_counts_per_e,
                          det.readout_noise_counts, metadata=md(k)) for k, v in sim.windows.items()}


def fit_all():
    """Each scenario simulated with a fixed seed and inverted once for the whole session."""
    out = {}
    for i, (name, sc) in enumerate(SCENARIOS.items()):
        sim = simulate(sc, rng=100 + i)
        res = fit_image(windows_of(sim))
        out[name] = (sim, res, derive(res.position.y_nm, res.columns, usable_by_edge(res.status)))
    return out


def pulls(sim, res, col, truth_col):
    t = sim.truth_columns()
    err = res.columns[col.replace("_raw", "") + "_err"]
    z = (res.columns[col] - t[truth_col]) / err
    return z[usable(res.status) & np.isfinite(z)]
