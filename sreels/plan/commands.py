"""``sreels plan``: the precision of every number before the beam time."""

from __future__ import annotations

import numpy as np

from ..config import load_config
from ..errors import SreelsInputError


def configure_plan(p):
    from .design import VARY
    from .planner import DEFAULT_ROWS_NM, TARGET_NAMES

    p.add_argument("--scenario", metavar="FILE.toml", help="scenario/instrument/detector TOML (default: the source "
                   "study's interface and instrument)")
    p.add_argument("--target", action="append", default=None, metavar="NAME=SIGMA",
                   help="a 1-sigma wanted for a derived number, in the unit of its name (repeatable); names: "
                        + ", ".join(TARGET_NAMES) + " (e.g. r_oo_change_nm=0.002 for 2 pm)")
    p.add_argument("--vary", action="append", default=None, metavar="KEY=LO:HI",
                   help="trade-off over a design choice (repeatable); keys: " + ", ".join(VARY))
    p.add_argument("--vary-points", type=int, default=5, metavar="N", help="values per --vary key (default 5)")
    p.add_argument("--critical-dose", type=float, default=None, metavar="E_PER_NM2",
                   help="dose (e/nm^2) at which beam damage sets in for your specimen (your number; sreels has none)")
    p.add_argument("--slit-width-nm", type=float, default=1000.0, metavar="NM",
                   help="illuminated width along x that one row integrates, for doses per nm^2 (default 1000)")
    p.add_argument("--rows-nm", type=float, nargs="+", default=None, metavar="Y",
                   help="distances from Pt (nm) of the rows whose per-row sigma is reported, each on the scan "
                        "(default: " + " ".join(f"{y:g}" for y in DEFAULT_ROWS_NM) + ", those on the scan)")
    p.add_argument("--no-fast", action="store_true", help="skip the fast path's prediction")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")


def _check_args(args):
    if args.critical_dose is not None and not (np.isfinite(args.critical_dose) and args.critical_dose > 0):
        raise SreelsInputError(f"--critical-dose {args.critical_dose}: expected a positive dose in e/nm^2")
    if not (np.isfinite(args.slit_width_nm) and args.slit_width_nm > 0):
        raise SreelsInputError(f"--slit-width-nm {args.slit_width_nm}: expected a positive width in nm")
    if not 2 <= args.vary_points <= 50:
        raise SreelsInputError(f"--vary-points {args.vary_points}: expected 2-50")
    if args.rows_nm is not None and not all(np.isfinite(y) for y in args.rows_nm):
        raise SreelsInputError(f"--rows-nm {args.rows_nm}: expected finite distances in nm")


#: glibc malloc settings for the plan's process (:func:`_keep_freed_memory`): arrays up to 32 MiB from the heap, which
#: keeps up to 2 GiB freed and grows by 256 MiB at a time
MALLOC_MMAP_THRESHOLD = 32 * 2 ** 20
MALLOC_TRIM_THRESHOLD = 2 ** 31 - 1
MALLOC_TOP_PAD = 256 * 2 ** 20


def _keep_freed_memory() -> bool:
    """:func:`sreels.resources.keep_freed_memory` with the plan's settings: the plan's many short-lived temporaries
    of a few to a few tens of MB otherwise each come from fresh, zeroed pages.  Measured on the default plan's own
    process (make_plan without the fast path and the figure, 2-3 runs each, load ~3.3): system time 1.05-1.3 s ->
    0.5-0.75 s, minor page faults 147k -> 48k, user time unchanged.  Only in the ``sreels plan`` process (and the
    processes it forks)."""
    from ..resources import keep_freed_memory

    return keep_freed_memory(MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD, MALLOC_TOP_PAD)


def run_plan(args) -> int:
    from ..io import write_csv, write_json
    from ..outdir import check_output, output_directory
    from .design import Design
    from .planner import make_plan, parse_targets, parse_vary

    inputs = [args.scenario] if args.scenario else []
    targets = parse_targets(args.target)
    vary = parse_vary(args.vary)
    _check_args(args)
    check_output(args.out, args.overwrite, inputs)
    cfg = load_config(args.scenario)
    d = Design(cfg.scenario, cfg.instrument, cfg.detector)
    _keep_freed_memory()
    plan = make_plan(d, targets, vary, rows_nm=args.rows_nm, critical_dose=args.critical_dose,
                     slit_width_nm=args.slit_width_nm, vary_points=args.vary_points, fast=not args.no_fast,
                     figure=True)   # plan.png drawn beside the joint part where the fast path's process is forked
    plan["inputs"] = {"scenario": args.scenario, "targets": targets, "vary": {k: list(v) for k, v in vary.items()},
                      "critical_dose_e_per_nm2": args.critical_dose,
                      "rows_nm": None if args.rows_nm is None else list(args.rows_nm),  # None: the defaults
                      "randomness": "none (Jacobians of the model at the truth; the noise-free simulation uses no "
                                    "random draws)"}
    with output_directory(args.out, overwrite=args.overwrite, inputs=inputs) as out:
        write_json(out / "plan.json", {k: v for k, v in plan.items() if not k.startswith("_")})
        (out / "plan.png").write_bytes(plan["_png"])
        for key, v in plan["vary"].items():
            write_csv(out / f"vary_{key}.csv", {c: np.array([r[c] for r in v["rows"]]) for c in v["rows"][0]})
    _summary(plan)
    print(f"wrote {args.out}/")
    return 0


def _summary(plan):
    from .planner import NUMBERS

    print(f"plan in {plan['seconds']['total']:.1f} s; predicted 1-sigma of the joint fit at the design's dose "
          f"(total {plan['dose_e_per_nm2']['total']:.3g} e/nm^2)\n  (the fit predicted: "
          f"{plan['predicts']['joint_short']}; plan.json 'predicts'):")
    for k, lab, f, unit in NUMBERS:
        line = f"  {k:24s} {plan['joint']['derived_sigma'][k] * f:.3g} {unit}"
        t = plan["targets"].get(k)
        if t:
            if np.isfinite(t["dose_factor"]):
                ex = ", ".join(f"{w} {s:.3g} s" for w, s in t["exposure_s"].items())
                line += (f"  -> target {t['sigma_target'] * f:.3g} {unit}: x{t['dose_factor']:.3g} dose ({ex}; "
                         f"{t['dose_e_per_nm2']['total']:.3g} e/nm^2)")
                if not t["gaussian_valid"]:
                    line += " [< 20 electrons per bin: Gaussian approximation of the likelihood not valid]"
                if t.get("beyond_critical_dose"):
                    line += " [beyond your critical dose]"
            else:
                line += f"  -> target {t['sigma_target'] * f:.3g} {unit}: {t['reason']}"
        print(line)
    for k, why in plan.get("fast", {}).get("withheld", {}).items():
        print(f"  the fast path (sreels fit --method fast) gives no {k} on this design: {why}")
    if "critical_dose" in plan:
        c = plan["critical_dose"]
        print(f"  your critical dose {c['e_per_nm2']:.3g} e/nm^2 = x{c['dose_factor']:.3g} of this design's core-loss "
              "dose" + (f" ({c['note']})" if c.get("note") else ""))
