"""``sreels fit --method bayes``: options and the run (called from the fit command).

Exit codes: 0 converged; 3 the sampler did not converge (results are still written,
flagged, unless ``--allow-unconverged`` turns the code into 0); 2 bad input (raised as
SreelsInputError and reported by the CLI).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ... import __version__
from ...config import Config, Detector, load_config
from ...errors import SreelsInputError

EXIT_UNCONVERGED = 3


def _add(parser, *flags, **kw):
    if not any(f in parser._option_string_actions for f in flags):
        parser.add_argument(*flags, **kw)


def configure_bayes(parser):
    """Options of the Bayesian path (added only if the fit command has not defined them)."""
    _add(parser, "--priors", metavar="FILE.toml", default=None,
         help="priors / fixed parameters / ti3_mode for --method bayes (see sreels.inference.bayes.priors)")
    _add(parser, "--walkers", type=int, default=None, help="emcee walkers (default max(P + 6, 24))")
    _add(parser, "--steps", type=int, default=3000, help="maximum emcee steps (default 3000)")
    _add(parser, "--min-ess", type=float, default=1000.0, help="bulk ESS every parameter must reach")
    _add(parser, "--energy-bin", type=int, default=None,
         help="--method bayes: energy channels summed per bin (default: 4 in the low window, 2 in the high)")
    _add(parser, "--allow-unconverged", action="store_true",
         help="exit 0 even if the sampler did not converge (the summary still says so)")


# ------------------------------------------------------------------ input
def _expand(inputs):
    files = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(p.glob("*.hspy"))
            if not found:
                raise SreelsInputError(f"folder {p} holds no .hspy files")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise SreelsInputError(f"input {p} does not exist")
    return files


def _read(files):
    """{name: (offset_ev, scale_ev, counts, y_nm)} through the fast path's loader or RosettaSciIO."""
    try:
        from ..load import load_measurement
    except ImportError:  # pragma: no cover - the fast path's loader not there yet
        load_measurement = None
    out = {}
    if load_measurement is not None:
        for name, w in load_measurement([str(f) for f in files]).items():
            out[name] = (w.energy.offset_ev, w.energy.scale_ev, np.asarray(w.counts, float), w.position.y_nm)
        return out
    from rsciio.hspy import file_reader  # pragma: no cover
    for f in files:  # pragma: no cover
        sig = file_reader(str(f))[0]
        ax = sig["axes"]
        ya = ax[0]
        ea = ax[-1]
        y = ya["offset"] + ya["scale"] * np.arange(ya["size"])
        out[sig["metadata"].get("sreels", {}).get("window", f.stem)] = (ea["offset"], ea["scale"],
                                                                       np.asarray(sig["data"], float), y)
    return out


def load_input(inputs) -> tuple:
    """Counts per window, the Config (scenario.toml beside the files if present) and y (nm)."""
    files = _expand(inputs)
    raw = _read(files)
    toml = next((f.parent / "scenario.toml" for f in files if (f.parent / "scenario.toml").is_file()), None)
    cfg = load_config(toml) if toml else Config()
    windows = []
    for w in cfg.instrument.windows:
        if w.name not in raw:
            continue
        off, sc, c, _ = raw[w.name]
        windows.append(dataclasses.replace(w, offset_ev=float(off), scale_ev=float(sc), channels=c.shape[1]))
    if not windows:
        raise SreelsInputError(f"none of the windows {list(raw)} is known to the instrument "
                               f"({[w.name for w in cfg.instrument.windows]})")
    inst = dataclasses.replace(cfg.instrument, windows=tuple(windows))
    y = next(iter(raw.values()))[3]
    counts = {w.name: raw[w.name][2] for w in windows}
    truth = None
    tpath = toml.parent / "truth.csv" if toml else None
    if tpath is not None and tpath.is_file():
        from ...io import read_csv
        truth = read_csv(tpath)
    return counts, Config(cfg.scenario, inst, cfg.detector if toml else Detector()), np.asarray(y, float), \
        [str(f) for f in files], truth


# -------------------------------------------------------------------- run
def run_on_data(data, priors, rng, out_dir, overwrite=False, walkers=None, steps=3000, min_ess=1000.0,
                settings=None, truth_profiles=None, truth_params=None, progress=True):
    """Fit prepared data and write DIR/summary.json, posterior.nc, profiles.csv and figures."""
    from ...io import output_directory, write_csv, write_json
    from . import figures
    from .fit import fit_bayes
    from .params import DERIVED, derived
    from .results import inference_data, profile_bands, summarise

    t0 = time.perf_counter()
    fit = fit_bayes(data, priors, rng, walkers=walkers, max_steps=steps, min_ess=min_ess, progress=progress)
    summary = summarise(fit, settings)
    summary["seconds_total"] = time.perf_counter() - t0
    with output_directory(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / "summary.json", summary)
        cols = profile_bands(fit)
        write_csv(tmp / "profiles.csv", cols)
        idata = inference_data(fit, {"sreels_version": __version__, **(settings or {})})
        idata.to_netcdf(str(tmp / "posterior.nc"), engine="h5netcdf")
        flat = fit.samples.flat
        pset = fit.likelihood.model.pset
        dd = derived(pset.as_dict(flat), pset.ti3_mode)
        keys = [k for k in DERIVED if k != "r_oo_change_nm"]  # the change is max - parent
        dtruth = None
        if truth_params and all(n in truth_params for n in pset.names):
            dtruth = derived(pset.as_dict(np.array([truth_params[n] for n in pset.names])), pset.ti3_mode)
        figures.corner(np.column_stack([np.asarray(dd[k]) for k in keys]), keys, tmp / "corner.png",
                       dtruth, title="the study's numbers: posterior (red: truth where known)")
        figures.corner(flat, list(fit.map.names), tmp / "corner_parameters.png", truth_params,
                       title="every sampled parameter: posterior (red: truth where known)")
        figures.profiles(cols, summary, tmp / "profiles.png", truth_profiles)
        _, pred, _ = fit.likelihood.fit_rows(fit.map.theta)
        figures.residual_image(fit.data, pred, tmp / "residuals.png")
    return fit, summary


def run_bayes(args) -> int:
    """Entry point for ``sreels fit --method bayes``; returns the exit code."""
    from .data import prepare
    from .params import default_values
    from .priors import load_priors

    if Path(args.out).exists() and not getattr(args, "overwrite", False):
        raise SreelsInputError(f"output folder {args.out} exists; choose another or pass --overwrite")
    counts, cfg, y, files, truth = load_input(args.inputs)
    row_nm = float(np.median(np.diff(y))) if y.size > 1 else cfg.scenario.row_nm
    data = prepare(counts, cfg, y, row_nm, bin=getattr(args, "energy_bin", None), source=", ".join(files))
    priors = load_priors(getattr(args, "priors", None), cfg.instrument)
    seed = getattr(args, "seed", None)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2 ** 63))
    rng = np.random.default_rng(seed)
    settings = {"input_files": files, "version": __version__, "seed": seed, "priors_file": getattr(args, "priors", None),
                "ti3_mode": priors.pset.ti3_mode, "fixed": priors.pset.fixed,
                "priors": {n: dataclasses.asdict(d) | {"dist": type(d).__name__} for n, d in priors.dists.items()}}
    tp = None
    if truth is not None:
        tv = default_values(cfg.scenario, cfg.instrument)
        tp = {n: tv[n] for n in priors.pset.names if n in tv}
    fit, summary = run_on_data(data, priors, rng, args.out, overwrite=getattr(args, "overwrite", False),
                               walkers=getattr(args, "walkers", None), steps=getattr(args, "steps", 3000) or 3000,
                               min_ess=getattr(args, "min_ess", 1000.0) or 1000.0, settings=settings,
                               truth_profiles=truth, truth_params=tp)
    d = summary["derived"]
    for k, v in d.items():
        if v.get("median") is not None:
            print(f"{k:24s} {v['median']:.5g}  [{v['p2_5']:.5g}, {v['p97_5']:.5g}] (95 %)")
    diag = summary["diagnostics"]
    print(f"MAP {summary['map']['seconds']:.1f} s, chi2_red {summary['map']['chi2_red']:.4f}; emcee "
          f"{diag['seconds']:.1f} s, tau_max {diag['tau_max']:.2f}, run/tau {diag['run_over_tau']:.0f}, "
          f"min ESS {diag['ess_bulk_min']:.0f}, acceptance {diag['acceptance_mean']:.2f}")
    for f in summary["flags"]:
        print(f"warning: {f}")
    print(f"wrote {args.out}/")
    if not fit.converged and not getattr(args, "allow_unconverged", False):
        print(json.dumps({"converged": False, "reasons": summary["convergence_reasons"]}))
        return EXIT_UNCONVERGED
    return 0
