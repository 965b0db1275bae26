"""``sreels fit --method bayes``: options and the run (called from the fit command).

Exit codes: 0 converged; 3 the sampler did not converge (results are still written,
flagged, unless ``--allow-unconverged`` turns the code into 0); 2 bad input (raised as
SreelsInputError and reported by the CLI).
"""

from __future__ import annotations

import argparse

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from ... import __version__
from ...config import LOWLOSS_NAME, Config, Detector, load_config
from ...errors import EXIT_UNCONVERGED, SreelsInputError
from ...io import dumps_json


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
    _add(parser, "--plural", action=argparse.BooleanOptionalAction, default=True,
         help="--method bayes: convolve the model with a DualEELS input's low loss (plural scattering; default "
              "on for a DualEELS input; validation/16's pulls within target on 52 simulated images per t/lambda "
              "0.3-0.9); --no-plural fits it single-scattering, with a warning")
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
    """{window name: WindowData} through the fast path's loader."""
    from ..load import load_measurement

    return load_measurement([str(f) for f in files])


def _detector_metadata(w) -> dict:
    sre = w.metadata.get("sreels", {}) if isinstance(w.metadata, dict) else {}
    det = dict(sre.get("detector", {}) or {}) if isinstance(sre, dict) else {}
    if w.gain_counts_per_e is not None:
        det["gain_counts_per_e"] = w.gain_counts_per_e
    return det


def detector_for(meta: dict, toml_detector: Detector | None, gain=None, readout=None, psf=None):
    """The detector the likelihood assumes, whether its gain is known, and notes on assumptions.

    Order: scenario.toml beside the files (a sreels simulation), then the file's sreels
    metadata, then the command line (``--gain``, ``--readout-noise``, ``--psf-decay``), which
    overrides both; anything still unknown keeps :class:`~sreels.config.Detector`'s default and
    is named in the notes (an unknown gain is then estimated from the MAP chi2, see run_bayes).
    """
    if toml_detector is not None and gain is None and readout is None and psf is None:
        return toml_detector, True, []
    base = toml_detector or Detector()
    fields = {f.name for f in dataclasses.fields(Detector)}
    kw = {}
    for k, v in (meta or {}).items():
        if k in fields and toml_detector is None:
            try:
                kw[k] = (str(v).strip().lower() in ("true", "1", "yes")) if isinstance(getattr(base, k), bool) \
                    else type(getattr(base, k))(v)
            except (TypeError, ValueError):  # an unreadable metadata value counts as unknown
                continue
    for k, v in (("gain_counts_per_e", gain), ("readout_noise_counts", readout), ("psf_decay", psf)):
        if v is not None:
            kw[k] = float(v)
    known = toml_detector is not None or "gain_counts_per_e" in kw
    notes = [f"{what} not known (give {flag}): assumed {getattr(base, k)}"
             for k, what, flag in (("readout_noise_counts", "readout noise", "--readout-noise"),
                                   ("psf_decay", "detector PSF decay", "--psf-decay"))
             if toml_detector is None and k not in kw]
    return dataclasses.replace(base, **kw), known, notes


#: t/lambda above which the Bayesian path warns when it leaves plural scattering out (--no-plural)
PLURAL_WARN_TL = 0.1


def load_input(inputs, saturation: float | None = None, plural: bool = True) -> tuple:
    """Counts per window, the Config (scenario.toml beside the files if present), y (nm), the
    file names, the truth table (simulations), the files' detector metadata, whether a
    scenario.toml was found, per-window saturation masks (pixels at or above ``saturation``
    counts, else at the level the sreels metadata give; None when unknown), and the low-loss
    window of a DualEELS input for :func:`.data.prepare` (``plural=True``, the default); with
    ``plural=False`` (``--no-plural``) None, and a DualEELS input warns that plural scattering is left out."""
    from ..lowloss import saturation_level

    files = _expand(inputs)
    raw = _read(files)
    toml = next((f.parent / "scenario.toml" for f in files if (f.parent / "scenario.toml").is_file()), None)
    cfg = load_config(toml) if toml else Config()
    windows = []
    for w in cfg.instrument.windows:
        if w.name not in raw:
            continue
        e = raw[w.name].energy
        windows.append(dataclasses.replace(w, offset_ev=float(e.offset_ev), scale_ev=float(e.scale_ev),
                                           channels=raw[w.name].counts.shape[1]))
    if not windows:
        raise SreelsInputError(f"none of the windows {list(raw)} is known to the instrument "
                               f"({[w.name for w in cfg.instrument.windows]})")
    inst = dataclasses.replace(cfg.instrument, windows=tuple(windows))
    y = next(iter(raw.values())).position.y_nm
    counts = {w.name: np.asarray(raw[w.name].counts, float) for w in windows}
    lowloss = None
    if LOWLOSS_NAME in raw:  # a DualEELS pair: the model carries each row's plural scattering (.plural)
        from ..lowloss import _exposure_ratio, low_loss_floor, low_loss_floor_note, read_zlp

        ll = raw[LOWLOSS_NAME]
        clean, floor = low_loss_floor(ll.counts, ll.energy)   # a pedestal and what lies beyond the signal's end
        ll = dataclasses.replace(ll, counts=clean)
        if low_loss_floor_note(ll.source, floor):
            print("note: " + low_loss_floor_note(ll.source, floor))
        tl = np.nanmedian(read_zlp(ll.counts, ll.energy)[3])
        if plural:
            ratio = {w.name: _exposure_ratio(raw[w.name], ll) for w in windows}
            if cfg.instrument.windows and toml:  # a sreels simulation: its recorded exposures
                ratio = {w.name: ratio[w.name] or w.exposure_s / cfg.instrument.lowloss_exposure_s for w in windows}
            lowloss = {"counts": np.asarray(ll.counts, float), "axis": ll.energy, "exposure_ratio": ratio}
            print(f"note: t/lambda = {tl:.2f} (median) from the low-loss window: the model is convolved with each "
                  "row's low loss (plural scattering; validated on 52 simulated images per "
                  "t/lambda, validation/16)")
        elif tl > PLURAL_WARN_TL:
            print(f"warning: t/lambda = {tl:.2f} from the low-loss window: the Bayesian model has no plural "
                  "scattering, so its numbers are biased (c_Li most); the fast path (--method fast) models it "
                  "(without --no-plural the model carries it)")
    saturated = {}
    for w in windows:
        level = saturation if saturation is not None else saturation_level(raw[w.name])
        saturated[w.name] = counts[w.name] >= level if level is not None else None
    truth = None
    tpath = toml.parent / "truth.csv" if toml else None
    if tpath is not None and tpath.is_file():
        from ...io import read_csv
        truth = read_csv(tpath)
    meta = {}
    for w in raw.values():
        meta.update(_detector_metadata(w))
    return counts, Config(cfg.scenario, inst, cfg.detector if toml else Detector()), np.asarray(y, float), \
        [str(f) for f in files], truth, meta, toml is not None, saturated, lowloss


# -------------------------------------------------------------------- run
def run_on_data(data, priors, rng, out_dir, overwrite=False, walkers=None, steps=3000, min_ess=1000.0,
                settings=None, truth_profiles=None, truth_params=None, progress=True, points=None):
    """Fit prepared data and write DIR/summary.json, posterior.nc, profiles.csv and figures
    (``points``: the fast path's per-row columns, drawn over the posterior bands)."""
    from ...io import output_directory, write_csv, write_json
    from . import figures
    from .fit import fit_bayes
    from .params import DERIVED, derived
    from .results import inference_data, posterior_predictive, profile_bands, summarise

    t0 = time.perf_counter()
    fit = fit_bayes(data, priors, rng, walkers=walkers, max_steps=steps, min_ess=min_ess, progress=progress)
    summary = summarise(fit, settings)
    summary["seconds_total"] = time.perf_counter() - t0
    with output_directory(out_dir, overwrite=overwrite, inputs=(settings or {}).get("input_files", ())) as tmp:
        write_json(tmp / "summary.json", summary)
        if fit.samples is None:   # no posterior (the flags say why): the summary alone
            return fit, summary
        if progress:
            print("writing results: profile bands, posterior.nc (per-row log-likelihood, posterior predictive), "
                  "figures ...", file=sys.stderr, flush=True)
        cols = profile_bands(fit)
        write_csv(tmp / "profiles.csv", cols)
        idata = inference_data(fit, {"sreels_version": __version__, **(settings or {})}, priors=priors, rng=rng)
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
        figures.marginals(flat, list(fit.map.names), tmp / "parameters.png", truth_params)
        figures.profiles(cols, summary, tmp / "profiles.png", truth_profiles, points)
        mean, var = posterior_predictive(fit)
        figures.residual_image(fit.data, mean, tmp / "residuals.png", var,
                               "posterior predictive (mean of 64 draws)" if fit.samples is not None else "MAP")
    return fit, summary


def fast_points(files) -> dict | None:
    """The fast path's per-row values (status ok, else NaN) on the same files, to draw over the
    posterior bands; None, with a note, when the fast path cannot fit them."""
    from ..fast import fit_image
    from ..load import load_measurement

    try:
        res = fit_image(load_measurement(files))
    except (SreelsInputError, ValueError) as e:  # the figure then shows the posterior alone
        print(f"note: no fast-path points in profiles.png ({e})")
        return None
    from ..fast import usable
    ok = usable(res.status)
    return {k: (np.where(ok, v, np.nan) if k not in ("y_nm", "parent") else v) for k, v in res.columns.items()
            if np.asarray(v).dtype.kind in "fi"}


def estimate_gain(data, priors, det, prepared, iterations: int = 3, tol: float = 0.01):
    """An unknown conversion gain from the MAP: with the gain g0 assumed, the data in electrons
    are (g/g0) x the true ones and their Poisson variance (g/g0) x the one the likelihood
    assumes, so chi2_red = g/g0 at the MAP; g <- g0 chi2_red, repeated until chi2_red is within
    ``tol`` of 1.  Returns the detector, the data prepared with it and a note for the user."""
    from .fit import fit_bayes

    g0 = det.gain_counts_per_e
    chi = float("nan")
    for _ in range(iterations):
        chi = fit_bayes(data, priors, sample=False).map.chi2_red
        det = dataclasses.replace(det, gain_counts_per_e=det.gain_counts_per_e * chi)
        data = prepared(det)
        if abs(chi - 1) < tol:
            break
    return det, data, (f"detector gain unknown (give --gain): estimated {det.gain_counts_per_e:.3g} counts/e "
                       f"from the MAP chi2 (started at {g0:g}; last chi2_red {chi:.3f}); the errors rely on "
                       "the model describing the data")


def _refuse_single_spectrum(files, counts) -> None:
    """One row has no profile: the joint model's parameters (electrode width, Ti3+/Ti4+ boundary, R_OO's change
    along y) are not constrained by it.  Fitted anyway (EELS_STO.dm3, CoO.dat), the MAP covariance was singular, the
    sampler did not run and summary.json held the optimiser's start (electrode width 400 nm) as numbers."""
    rows = {int(np.shape(c)[0]) for c in counts.values()}
    if rows == {1}:
        raise SreelsInputError(
            f"{', '.join(files)}: one row (a single spectrum): --method bayes fits one profile model to a line scan "
            "(electrode width, Ti3+/Ti4+ boundary, R_OO along y) and a single spectrum has no profile; --method fast "
            "fits it (spectrum_fits.png, its values in profiles.csv)")


def run_bayes(args) -> int:
    """Entry point for ``sreels fit --method bayes``; returns the exit code."""
    from .data import prepare
    from .params import default_values
    from .priors import load_priors

    from ...io import hdf5_safe
    from ...outdir import check_output

    counts, cfg, y, files, truth, meta, from_toml, saturated, lowloss = load_input(
        args.inputs, getattr(args, "saturation", None), plural=bool(getattr(args, "plural", True)))
    _refuse_single_spectrum(files, counts)
    check_output(args.out, getattr(args, "overwrite", False), files)
    det, gain_known, notes = detector_for(meta, cfg.detector if from_toml else None, getattr(args, "gain", None),
                                          getattr(args, "readout_noise", None), getattr(args, "psf_decay", None))
    row_nm = float(np.median(np.diff(y))) if y.size > 1 else cfg.scenario.row_nm
    priors = load_priors(getattr(args, "priors", None), cfg.instrument)

    def prepared(d):
        return prepare(counts, dataclasses.replace(cfg, detector=d), y, row_nm, saturated=saturated,
                       bin=getattr(args, "energy_bin", None), source=", ".join(files), lowloss=lowloss)

    data = prepared(det)
    if not gain_known:
        det, data, note = estimate_gain(data, priors, det, prepared)
        notes.append(note)
    for n in notes:
        print(f"note: {n}")
    seed = getattr(args, "seed", None)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2 ** 63))
    rng = np.random.default_rng(seed)
    settings = {"input_files": files, "version": __version__, "seed": hdf5_safe(seed), "priors_file": getattr(args, "priors", None),
                "ti3_mode": priors.pset.ti3_mode, "fixed": priors.pset.fixed,
                "detector": dataclasses.asdict(det), "detector_notes": notes,
                "priors": {n: dataclasses.asdict(d) | {"dist": type(d).__name__} for n, d in priors.dists.items()}}
    tp = None
    if truth is not None:
        tv = default_values(cfg.scenario, cfg.instrument)
        tp = {n: tv[n] for n in priors.pset.names if n in tv}
    fit, summary = run_on_data(data, priors, rng, args.out, overwrite=getattr(args, "overwrite", False),
                               walkers=getattr(args, "walkers", None), steps=getattr(args, "steps", 3000) or 3000,
                               min_ess=getattr(args, "min_ess", 1000.0) or 1000.0, settings=settings,
                               truth_profiles=truth, truth_params=tp, points=fast_points(files))
    d = summary["derived"]
    for k, v in d.items():
        if v.get("median") is not None:
            print(f"{k:24s} {v['median']:.5g}  [{v['p2_5']:.5g}, {v['p97_5']:.5g}] (95 %)")
    if "map_not_final" in summary:
        print("no posterior: the derived numbers are withheld (null in summary.json; the MAP's, without errors and "
              "not a result, under map_not_final)")
    diag = summary["diagnostics"]
    print(f"MAP {summary['map']['seconds']:.1f} s, chi2_red {summary['map']['chi2_red']:.4f}; " + (
          f"emcee {diag['seconds']:.1f} s, tau_max {diag['tau_max']:.2f}, run/tau {diag['run_over_tau']:.0f}, "
          f"min ESS {diag['ess_bulk_min']:.0f}, acceptance {diag['acceptance_mean']:.2f}" if diag else "no sampling"))
    for f in summary["flags"]:
        print(f"warning: {f}")
    print(f"wrote {args.out}/")
    if not fit.converged and not getattr(args, "allow_unconverged", False):
        print(dumps_json({"converged": False, "reasons": summary["convergence_reasons"] or summary["flags"]}, indent=None))
        return EXIT_UNCONVERGED
    return 0
