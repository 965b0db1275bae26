"""Simulate a scenario of your own
================================

A narrower electrode than the study's, written as a TOML scenario, simulated with a fixed
seed, saved as HyperSpy files with the Fig. 5-like figure, and read back with HyperSpy's
metadata intact.

Run: ``python examples/simulate_scenario.py [OUT_DIR]`` (default ``./example-simulation``).
"""

import sys
from pathlib import Path

import numpy as np

from sreels.config import load_config
from sreels.forward.output import write_simulation
from sreels.forward.simulate import simulate

SCENARIO = """
[scenario]
rows = 120                  # 120 rows of 5.7 nm: the interface and the electrode
electrode_width_nm = 250.0  # where c_Li has fallen to 2.3 % of its excess
li_max_rel = 6.0            # c_Li at the Pt interface, parent electrolyte = 1
ti3_li_threshold_rel = 4.0  # Ti3+ where c_Li exceeds 4x the parent
grains = []                 # no AlPO4 grains

[detector]
gain_counts_per_e = 1.55
readout_noise_counts = 3.0
"""


def main(out="example-simulation"):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    toml = out / "narrow.toml"
    toml.write_text(SCENARIO)
    cfg = load_config(toml)
    sim = simulate(cfg.scenario, cfg.instrument, cfg.detector, rng=7)
    folder = write_simulation(sim, out / "simulation", overwrite=True, plot=True)
    p = sim.profiles
    print(f"{p.y_nm.size} rows, c_Li max {p.li_rel.max():.2f}, R_OO {np.nanmin(p.r_oo_nm):.4f}-{np.nanmax(p.r_oo_nm):.4f} nm")
    print("files:", ", ".join(sorted(f.name for f in folder.iterdir())))
    return folder


if __name__ == "__main__":
    main(*sys.argv[1:])
