"""``sreels demo``: the main job on the built-in default, the source study's interface.

Simulates the Pt / in-situ electrode / LASGTP interface of Yamamoto et al. (2014),
writes the images and a Fig. 5-like figure, inverts the image with the fast path and
prints the recovered numbers next to the truth.  With ``--bayes`` it also fits the
whole image jointly (MAP + emcee, 1.5-6 min on 2 cores) and puts both methods' error bars side by side.
"""

from __future__ import annotations

from pathlib import Path

from .config import seed_arg


def configure_demo(p):
    p.add_argument("--out", default="sreels-demo", metavar="DIR", help="output folder (default ./sreels-demo)")
    p.add_argument("--seed", type=seed_arg, default=2014, help="random seed (default 2014)")
    p.add_argument("--bayes", action="store_true",
                   help="also run the Bayesian joint fit (~2 min more on 2 idle cores, longer on a busy machine) into DIR/bayes")
    p.add_argument("--overwrite", action="store_true",
                   help="replace DIR from an earlier demo (a folder that is not a demo's is never replaced)")


def run_demo(args) -> int:
    from .forward.output import write_simulation
    from .forward.simulate import simulate

    out = Path(args.out)
    sim_dir = out / "simulation"
    if out.exists() and any(out.iterdir()):
        from .errors import SreelsInputError
        if not (out / "simulation").exists():
            raise SreelsInputError(f"{out} exists and is not an earlier sreels demo; choose another --out")
        if not getattr(args, "overwrite", False):
            raise SreelsInputError(f"{out} holds an earlier demo; pass --overwrite to replace it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    print("sreels demo: the Pt / in-situ electrode / LASGTP interface of Yamamoto et al., "
          "J. Power Sources 266 (2014) 414")
    sim = simulate(rng=args.seed)
    write_simulation(sim, sim_dir, overwrite=True, plot=True)
    wins = ", ".join(f"{k}: {v.energy.offset_ev:.0f}-{v.energy.end_ev:.0f} eV" for k, v in sim.windows.items())
    print(f"1. simulated {sim.position.size} rows x 2048 channels ({wins}) in "
          f"{sim.timings_s['total'] * 1e3:.0f} ms, seed {args.seed}")
    print(f"   images, truth and the Fig. 5-like figure: {sim_dir}/")
    rc = _invert(sim, sim_dir, out)
    if rc == 0 and getattr(args, "bayes", False):
        rc = _bayes(sim_dir, out, args.seed)
    return rc


def _bayes(sim_dir: Path, out: Path, seed: int) -> int:
    """The Bayesian path on a single-scattering image of the same interface and seed (its model has no
    plural scattering yet); then both methods' errors next to the truth."""
    import dataclasses
    import json
    from types import SimpleNamespace

    import numpy as np

    from .config import Instrument
    from .forward.output import write_simulation
    from .forward.simulate import simulate
    from .inference.bayes.commands import run_bayes

    single = out / "simulation-single-scattering"
    inst = dataclasses.replace(Instrument(), plural_scattering=False, lowloss_window=False)
    write_simulation(simulate(None, inst, rng=seed), single, overwrite=True)
    print(f"4. the whole image fitted jointly (lmfit MAP, then emcee; seed {seed}): {out / 'bayes'}/")
    print(f"   on a single-scattering image of the same interface ({single}/): the Bayesian model has no plural "
          "scattering yet")
    rc = run_bayes(SimpleNamespace(inputs=[str(p) for p in sorted(single.glob("*.hspy"))], out=str(out / "bayes"),
                                   overwrite=True, seed=seed, priors=None, allow_unconverged=False))
    fast = json.loads((out / "fit" / "summary.json").read_text())
    bayes = json.loads((out / "bayes" / "summary.json").read_text())["derived"]
    truth = fast.get("truth", {})
    print("   error bars side by side (fast: estimate ± error; Bayesian: median ± half the 16-84 % width;")
    print("   z = (estimate - truth) / error: honest errors scatter as N(0, 1) over many images)")
    print(f"   {'quantity':24s}{'truth':>9s}{'fast':>22s}{'z':>6s}{'Bayesian':>22s}{'z':>6s}{'err ratio':>11s}")
    for k, t in truth.items():
        b = bayes.get(k)
        if b is None or fast.get(k) is None:
            continue
        half = 0.5 * (b["p84"] - b["p16"])
        fe = fast.get(k + "_err") or float("nan")  # a missing or zero error prints as nan, never a crash
        with np.errstate(divide="ignore", invalid="ignore"):
            zf, zb, ratio = np.divide(fast[k] - t, fe), np.divide(b["median"] - t, half), np.divide(fe, half)
        print(f"   {k:24s}{t:>9.5g}{fast[k]:>12.5g} ± {fe:<7.2g}{zf:>+6.1f}"
              f"{b['median']:>12.5g} ± {half:<7.2g}{zb:>+6.1f}{ratio:>10.1f}x")
    print("   one image is one draw of the noise; validation/05_bayes_coverage.py measures the coverage over hundreds")
    return rc


def _invert(sim, sim_dir: Path, out: Path) -> int:
    import numpy as np

    from .inference.commands import print_summary
    from .inference.derived import derive, derived_truth
    from .inference.fast import fit_image, usable, usable_by_edge, withheld_reasons
    from .inference.load import load_measurement
    from .inference.report import write_fit

    inputs = sorted(sim_dir.glob("*.hspy"))
    res = fit_image(load_measurement(inputs))
    d = derive(res.position.y_nm, res.columns, usable_by_edge(res.status), why=withheld_reasons(res.status))
    fit_dir = out / "fit"
    truth = derived_truth(sim)
    write_fit(res, d, inputs, fit_dir, overwrite=True, extra={"truth": truth})
    print(f"2. inverted it with the fast path (per-row batched least squares): {fit_dir}/")
    print_summary(res, d, truth)
    t = sim.truth_columns()
    ok = usable(res.status)
    print("   per-row pulls (estimate - truth) / sigma over the rows that fitted:")
    for col, tcol in (("li_rel", "li_rel_row"), ("ti3_fraction_raw", "ti3_fraction_row"),
                      ("peak_b_ev", "peak_b_ev_row"), ("r_oo_nm", "r_oo_nm_row")):
        err = res.columns[col.replace("_raw", "") + "_err"]
        z = (res.columns[col] - t[tcol]) / err
        z = z[ok & np.isfinite(z)]
        print(f"   {col:18s} mean {z.mean():+.2f}  sd {z.std():.2f}  (n = {z.size}; honest errors give 0 and 1)")
    if np.isfinite(res.columns.get("li_per_fu", np.array([np.nan]))).any():
        from .forward.material import LASGTP_ATOMS_PER_FU
        from .structures import compare, nasicon
        c = res.columns
        z = (c["li_per_fu"] - LASGTP_ATOMS_PER_FU["Li"] * t["li_rel_row"]) / c["li_per_fu_err"]
        z = z[ok & np.isfinite(z)]
        print(f"   {'li_per_fu':18s} mean {z.mean():+.2f}  sd {z.std():.2f}  (n = {z.size}; absolute Li per formula "
              f"unit, max {np.nanmax(np.where(ok, c['li_per_fu'], np.nan)):.1f}; cross sections +-"
              f"{np.nanmedian(c['li_per_fu_xs_err'] / c['li_per_fu']) * 100:.0f} % apart)")
        if np.isfinite(c.get("li_per_fu_o", np.array([np.nan]))).any():
            zo = ((c["li_per_fu_o"] - t["li_per_fu_o_row"]) / c["li_per_fu_o_err"])
            both = ok & np.isfinite(c["li_per_fu_o"]) & np.isfinite(c["li_per_fu"])
            print(f"   {'li_per_fu_o':18s} mean {zo[ok & np.isfinite(zo)].mean():+.2f}  sd "
                  f"{zo[ok & np.isfinite(zo)].std():.2f}  (n = {np.sum(ok & np.isfinite(zo))}; from Li-K / O-K, "
                  f"against 12 N_Li / N_O; median ratio to the Ti route {np.median(c['li_per_fu_o'][both] / c['li_per_fu'][both]):.3f}; "
                  f"cross sections +-{np.nanmedian(c['li_per_fu_o_xs_err'] / c['li_per_fu_o']) * 100:.0f} % apart)")
        if nasicon.available():
            for route in ("ti", "o"):
                v = compare.verdict(c, c["parent"].astype(bool) & ok, route=route)
                print(f"   the study's comparison (R_OO measured vs the computed NASICON series at the measured Li per f.u., "
                      f"{compare.ROUTES[route]}): {v['text']}")
    if "t_over_lambda" in res.columns:  # the low-loss window: energy reference and thickness per row
        c = res.columns
        dz = c["zlp_shift_ev"] - t["zlp_shift_ev"]
        print(f"   low loss: t/lambda {np.median(c['t_over_lambda']):.3f} (truth {np.median(t['t_over_lambda']):.3f}, "
              f"largest deviation {np.max(np.abs(c['t_over_lambda'] / t['t_over_lambda'] - 1)) * 100:.1f} %); "
              f"ZLP line {np.ptp(c['zlp_shift_ev']):.3f} eV peak-to-peak, {np.sqrt(np.mean(dz**2)):.4f} eV rms from the "
              f"truth; resolution {np.median(c['resolution_ev']):.2f} eV FWHM")
    figs = ", ".join(f"{fit_dir}/{f}" for f in ("profiles.png", "region_spectra.png", "residuals.png")
                     if (fit_dir / f).is_file())
    print(f"3. figures: {sim_dir}/spectrum_images.png (Fig. 5: spectrum images), {figs} (Fig. 6: profiles with "
          "errors, spectra by region; residuals)")
    if (fit_dir / "lowloss.png").is_file():
        print(f"   {fit_dir}/lowloss.png (the ZLP line, t/lambda and resolution across the rows: Supplementary data 1)")
    return 0
