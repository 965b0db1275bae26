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
    import numpy as np

    from .inference.commands import print_summary
    from .inference.derived import derive, derived_truth
    from .inference.fast import fit_image
    from .inference.load import load_measurement
    from .inference.report import write_fit

    inputs = sorted(sim_dir.glob("*.hspy"))
    res = fit_image(load_measurement(inputs))
    d = derive(res.position.y_nm, res.columns, res.status == "ok")
    fit_dir = out / "fit"
    truth = derived_truth(sim)
    write_fit(res, d, inputs, fit_dir, overwrite=True, extra={"truth": truth})
    print(f"2. inverted it with the fast path (per-row batched least squares): {fit_dir}/")
    print_summary(res, d, truth)
    t = sim.truth_columns()
    ok = res.status == "ok"
    print("   per-row pulls (estimate - truth) / sigma over the rows that fitted:")
    for col, tcol in (("li_rel", "li_rel_row"), ("ti3_fraction_raw", "ti3_fraction_row"),
                      ("peak_b_ev", "peak_b_ev_row"), ("r_oo_nm", "r_oo_nm_row")):
        err = res.columns[col.replace("_raw", "") + "_err"]
        z = (res.columns[col] - t[tcol]) / err
        z = z[ok & np.isfinite(z)]
        print(f"   {col:18s} mean {z.mean():+.2f}  sd {z.std():.2f}  (n = {z.size}; honest errors give 0 and 1)")
    print(f"3. figures: {sim_dir}/spectrum_images.png (Fig. 5-like), {fit_dir}/profiles.png (Fig. 6-like), "
          f"{fit_dir}/residuals.png")
    return 0
