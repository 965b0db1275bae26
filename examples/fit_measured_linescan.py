"""Fit a measured DualEELS line scan
=================================

A real line scan across a SrTiO3 / La0.7Sr0.3MnO3 interface (exspy demo data: 10 positions,
Ti-L2,3 and O-K in SrTiO3, Mn-L and La-M in LSMO) inverted with the fast path.  Real data
are not our simulation: the axis is uncalibrated, the gain is unknown (errors scaled by
sqrt(chi2_red) and said so), there is no Li-K window and no Pt collector, and most LSMO rows
hold no Ti: the status column says which rows were used and why not.

Run: ``python examples/fit_measured_linescan.py [CORE_LOSS.hspy] [OUT_DIR]``; the default
file is in ``../shared/data`` beside the project (not shipped with sreels).
"""

import sys
from pathlib import Path

import numpy as np

from sreels.inference.derived import derive
from sreels.inference.fast import fit_image
from sreels.inference.load import load_measurement
from sreels.inference.report import write_fit

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "internal-only" / "exspy-demos" / \
    "LSMO_STO_linescan.hspy"


def main(path=DEFAULT, out="example-linescan"):
    path = Path(path)
    if not path.is_file():
        print(f"{path} not found: this example needs a measured line scan (see the docstring)")
        return None
    res = fit_image(load_measurement([path]))
    d = derive(res.position.y_nm, res.columns, res.status == "ok")
    c = res.columns
    print(f"{'y (nm)':>7} {'Ti3+ fraction':>16} {'peak b (eV)':>16} {'R_OO (nm)':>18}  status")
    for i in range(res.position.size):
        def pm(k, f):
            v, e = c[k][i], c[f"{k}_err"][i]
            return f"{v:{f}} ± {e:.2g}" if np.isfinite(v) else "—"
        print(f"{c['y_nm'][i]:7.1f} {pm('ti3_fraction', '.3f'):>16} {pm('peak_b_ev', '.1f'):>16} "
              f"{pm('r_oo_nm', '.4f'):>18}  {res.status[i]}")
    for n in sorted(set(res.notes) | set(d["notes"])):
        print("note:", n)
    return write_fit(res, d, [path], out, overwrite=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
