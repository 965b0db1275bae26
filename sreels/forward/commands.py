"""``sreels simulate``."""

from __future__ import annotations

import dataclasses

from ..config import load_config, seed_arg


def configure_simulate(p):
    p.add_argument("--scenario", metavar="FILE.toml", help="scenario/instrument/detector TOML "
                   "(default: the source study's interface; keys: the README's Scenarios section, "
                   "examples/simulate_scenario.py and the docs' reference)")
    p.add_argument("--seed", type=seed_arg, default=None,
                   help="random seed (default: fresh entropy, recorded in run.json)")
    p.add_argument("--noise-free", action="store_true", help="write expected counts, no detector noise")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--plot", action="store_true", help="also write a Fig. 5-like spectrum_images.png")
    p.add_argument("--rows", type=int, default=None, help="override scenario.rows")
    p.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                   help="refuse a simulation estimated to need more memory than this (default: "
                        "$SREELS_MAX_MEMORY_GIB, else 80 %% of the machine's memory)")


def run_simulate(args) -> int:
    from .output import write_simulation
    from .simulate import simulate

    from ..outdir import check_output
    from ..resources import set_limit

    set_limit(args.max_memory)
    inputs = [args.scenario] if args.scenario else []
    check_output(args.out, args.overwrite, inputs)
    cfg = load_config(args.scenario)
    sc = cfg.scenario if args.rows is None else dataclasses.replace(cfg.scenario, rows=args.rows)
    sim = simulate(sc, cfg.instrument, cfg.detector, rng=args.seed, noise_free=args.noise_free)
    out = write_simulation(sim, args.out, overwrite=args.overwrite, plot=args.plot, inputs=inputs)
    sat = {k: int(v.saturated.sum()) for k, v in sim.windows.items()}
    wins = ", ".join(f"{k} ({v.energy.size} ch, {v.energy.offset_ev:.1f}-{v.energy.end_ev:.1f} eV)"
                     for k, v in sim.windows.items())
    print(f"simulated {sim.position.size} rows x {wins} in {sim.timings_s['total'] * 1e3:.0f} ms; "
          f"rng {sim.rng_record}; saturated pixels {sat}")
    print(f"wrote {out}/")
    return 0
