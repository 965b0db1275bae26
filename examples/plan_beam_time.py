"""Plan a beam time: how much dose does a 5 pm change in R_OO need?
====================================================================

Before the session: the electrode amorphises and loses Li under the beam, so the question is the
least dose that still answers the scientific question.  Here the question is the study's (Yamamoto
et al. 2014): is R_OO at the Pt interface larger than in the parent electrolyte by ~5 pm, and is the
maximum c_Li known to 10 %?  Asking for a 3-sigma answer gives the targets

- sigma(R_OO change) = 5 pm / 3 = 1.7 pm  -> ``r_oo_change_nm=0.0017``
- sigma(c_Li max) = 10 % of 8.5 / 3 = 0.28 -> ``li_max_rel=0.28``

and ``--critical-dose`` is the dose at which *your* specimen is known to change (here 5e3 e/nm^2,
an illustration, not a property of LASGTP).  ``--vary exposure_split=0.005:0.2`` shows how to share
the time between the Li-K (low) window and the Ti-L / O-K (high) window.  The interface here is 120
rows (the first 680 nm) to keep the example quick; drop ``rows`` to plan the study's 330 rows.

Run: ``python examples/plan_beam_time.py [OUT_DIR]`` (default ``./example-plan``).  It writes
``plan.json``, ``plan.png`` and ``vary_exposure_split.csv`` and prints, per target, the exposure
of each window and the dose it needs; a target marked "< 20 electrons per bin" asks for so little
dose that the Gaussian likelihood of the joint fit is an approximation there (validation/06_plan.py
measures how good it still is).
"""

import json
import sys
from pathlib import Path

from sreels.cli import main as sreels

SCENARIO = """
[scenario]
rows = 120
"""


def main(out=Path("example-plan")):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    toml = out.parent / f"{out.name}-scenario.toml"
    toml.write_text(SCENARIO)
    rc = sreels(["plan", "--scenario", str(toml), "--target", "r_oo_change_nm=0.0017", "--target", "li_max_rel=0.28",
                 "--critical-dose", "5e3", "--vary", "exposure_split=0.005:0.2", "--vary-points", "3",
                 "--no-fast", "--out", str(out), "--overwrite"])
    if rc:
        raise SystemExit(rc)
    plan = json.loads((out / "plan.json").read_text())
    for name, t in plan["targets"].items():
        print(f"{name}: x{t['dose_factor']:.3g} of the default core-loss exposures (the low loss's kept), {t['dose_e_per_nm2']['total']:.3g} e/nm^2 "
              f"({'beyond' if t['beyond_critical_dose'] else 'within'} the critical dose)")
    return out


if __name__ == "__main__":
    main(*sys.argv[1:2])
