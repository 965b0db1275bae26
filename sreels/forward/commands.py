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
    p.add_argument("--columns", type=int, default=None, metavar="NX",
                   help="simulate a 2-D map of NX columns (x) of the scenario's line scan (y), written block by "
                        "block to <window>.zspy at bounded memory (see --chunk-columns)")
    p.add_argument("--column-nm", type=float, default=None, metavar="NM",
                   help="(map) pixel size along x (default: the scenario's row_nm)")
    p.add_argument("--thickness-slope-x", type=float, default=0.0, metavar="PER_UM",
                   help="(map) relative thickness change per um along x (a wedge; default 0)")
    p.add_argument("--grain-drift", type=float, default=0.0, metavar="NM_PER_UM",
                   help="(map) shift of the AlPO4 grains along y per um of x (oblique grains; default 0)")
    p.add_argument("--grain-swell", type=float, default=0.0, metavar="PER_UM",
                   help="(map) relative change of the grains' widths per um of x (default 0)")
    p.add_argument("--chunk-columns", type=int, default=16, metavar="N",
                   help="(map) columns simulated and written at a time (default 16)")
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
    if args.columns is not None:  # a 2-D map, written block by block
        from .maps import MapSpec, write_map
        spec = MapSpec(args.columns, args.column_nm or sc.row_nm, args.thickness_slope_x, args.grain_drift,
                       args.grain_swell)
        out = write_map(sc, spec, cfg.instrument, cfg.detector, args.out, seed=args.seed, noise_free=args.noise_free,
                        chunk_columns=args.chunk_columns, overwrite=args.overwrite, inputs=inputs)
        print(f"simulated a {sc.rows} x {spec.columns} map (y x x); wrote {out}/ "
              f"({', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))})")
        return 0
    sim = simulate(sc, cfg.instrument, cfg.detector, rng=args.seed, noise_free=args.noise_free)
    out = write_simulation(sim, args.out, overwrite=args.overwrite, plot=args.plot, inputs=inputs)
    sat = {k: int(v.saturated.sum()) for k, v in sim.windows.items()}
    wins = ", ".join(f"{k} ({v.energy.size} ch, {v.energy.offset_ev:.1f}-{v.energy.end_ev:.1f} eV)"
                     for k, v in sim.windows.items())
    print(f"simulated {sim.position.size} rows x {wins} in {sim.timings_s['total'] * 1e3:.0f} ms; "
          f"rng {sim.rng_record}; saturated pixels {sat}")
    print(f"wrote {out}/")
    return 0
