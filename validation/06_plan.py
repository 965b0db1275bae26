"""Validation 06: does ``sreels plan`` predict the spread of real fits?

For each design (default; 1/10 of the dose; 0.05 eV/channel with 2 rows binned on the chip):

- the joint fit's predicted 1-sigma of the study's six numbers and the R_OO change
  (:func:`sreels.plan.planner.make_plan`) against the standard deviation of the Bayesian MAP
  over n seeded images of that design (new detector noise per image, seeds recorded);
- the fast path's predicted per-row sigma of c_Li, Ti3+ fraction and R_OO (its errors on the
  noise-free image) against the spread of its per-row estimates over the same images
  (rms over usable rows of the per-row sd, divided by the rms predicted sigma).

Round trip ("trip" design): the exposure factor ``plan`` returns for sigma(R_OO change) = 2 pm
on the default design, fed back into simulate + the joint (MAP) fit; the spread of the MAP's
R_OO change over the images must be 2 pm +- 15 %.

The sd of n samples has a relative sampling error of ~1 / sqrt(2 (n - 1)) (7.1 % at n = 100),
reported with every ratio; pass = |ratio - 1| <= 0.15.  The verdict (``all_pass`` of ``--report``) takes,
per design, every stored image of it: the first set (OUT/<design>.npz) pooled with every further set
(OUT/<design>_<seed0>/, ``--seed0``), never a subset chosen by its result.

Linear check (``--linear DESIGN ...``): the joint fit linearised at the truth (one Gauss-Newton step
with its own model, weights and profiled amplitudes, :func:`sreels.plan.fisher.one_step`) on (a) the
stored images (same seeds: how close the MAP is to the linear estimate, image by image) and (b)
``--linear-n`` fresh detector draws of the noise-free image (cheap: no MAP): its spread is what the
plan's sandwich predicts if the noise model is right, with a sampling error set by the draws alone.

Usage:
  python validation/06_plan.py OUT --designs default tenth fine --n 100   (raw results per design)
  python validation/06_plan.py OUT --linear fine trip --linear-n 200       (linear_<design>.json)
  python validation/06_plan.py OUT --report                              (report.json, ratios.md)
  python validation/06_plan.py OUT --fast-dualeels 40                      (fast_dualeels.json / .md)

DualEELS check of the fast path (``--fast-dualeels N``): the default design as ``sreels plan`` plans it (the
instrument's defaults: plural scattering and a low-loss window, which the fast path uses), its predicted per-row
sigma against the spread of its per-row estimates over N seeded images (seeds DUALEELS_SEED0 + index), as
above; outside the verdict of --report (the joint fit has no plural model by default: not compared here).

DualEELS bias of the joint fit (``--dualeels-joint-bias``): the Bayesian MAP (without --plural: a
single-scattering model) of the default DualEELS design's noise-free image, minus the truth, for every
parameter and derived number, beside the plan's predicted sigma and the linearised (one Gauss-Newton step)
estimate of that bias (dualeels_joint_bias.json / .md): what ``sreels plan``'s joint sigma leaves out there.
Raw results are appended after every image (OUT/<design>.npz), designs interleaved, so a run can be
stopped and resumed.

DualEELS designs with the joint fit's plural model (``--plural-designs``, ``--plural-linear``; sreels plan's prediction
for a DualEELS design since the plural model became ``sreels fit --method bayes``'s default there): the default
design (the instrument's defaults), 1/10 of its dose (every exposure, the low loss's too) and 0.05 eV/channel with 2
rows binned.  ``--plural-designs D ... --n N``: the plural MAP (started from the study's values, i.e. the truth) on
seeded images (seeds PLURAL_SEED0[D] + index), with the MAP's own Laplace sd of each number; ``--plural-linear D
... --linear-n N``: the plural fit linearised at the truth (:func:`sreels.plan.plural.one_step`) on N fresh detector
draws (PLURAL_LINEAR_SEED0[D] + index; the tail's and the kernels' noise from each draw's own low loss).  Both are
appended per image / per 10 draws and resumable; ``--report`` adds their table to ratios.md and their own verdict
(``dualeels_plural.all_pass``: default, ``dualeels_tenth_dose``, fine and the round trip on >= 100 images each).
``dualeels_trip``: the dose the plan returns for sigma(R_OO change) = 2 pm on the default (the round trip; the plan's
dose factor, core-loss exposures only, the low loss's kept: design.scale_dose).  ``--seed0
S``: a further set of seeds S + index in its own OUT (merged into OUT/<design>.npz by hand: distinct seeds).

    python validation/06_plan.py OUT --plural-designs dualeels dualeels_tenth_dose dualeels_fine dualeels_trip --n 100
    python validation/06_plan.py OUT --plural-linear dualeels dualeels_tenth --linear-n 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from sreels.config import Detector, Instrument, Scenario
from sreels.forward.simulate import simulate, window_models
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.fit import fit_bayes, single_threaded_blas
from sreels.inference.bayes.params import DERIVED, derived
from sreels.inference.derived import KEYS as DERIVED_KEYS
from sreels.inference.derived import derive
from sreels.inference.fast import fit_image, usable, usable_by_edge
from sreels.inference.load import WindowData
from sreels.plan import design as dz
from sreels.plan.fisher import priors_for
from sreels.plan.planner import fast_windows, make_plan

SIX = ("electrode_width_nm", "ti_boundary_nm", "li_max_rel", "li_at_ti_boundary_rel", "r_oo_parent_nm",
       "r_oo_max_nm")
ROW_COLS = (("li_rel", "li_rel"), ("ti3_fraction", "ti3_fraction_raw"), ("r_oo_nm", "r_oo_nm"))
TOL = 0.15
TARGET_PM = 2.0
SEED0 = {"default": 60000, "tenth": 61000, "fine": 62000, "trip": 63000}
#: fresh detector draws of the linear check (seed = LINEAR_SEED0[design] + index)
LINEAR_SEED0 = {"default": 900000, "tenth": 905000, "fine": 910000, "trip": 920000}
LINEAR_KEYS = ("r_oo_change_nm", "r_oo_max_nm", "r_oo_parent_nm", "li_max_rel", "electrode_width_nm")


#: seeds of the DualEELS check of the fast path (--fast-dualeels)
DUALEELS_SEED0 = 64000


#: The instrument of every design: single scattering, no low-loss window. The Bayesian (MAP) path does not
#: model plural scattering (a DualEELS input makes it warn), and the fits in validation/results/06_plan were
#: made with this instrument (the defaults before plural scattering and the low-loss window became the
#: defaults, commit dcf151c), so new images must use it too.
INSTRUMENT = dict(plural_scattering=False, lowloss_window=False)


def base() -> dz.Design:
    return dz.Design(Scenario(), dataclasses.replace(Instrument(), **INSTRUMENT), Detector())


def designs(trip_factor: float | None = None) -> dict:
    b = base()
    out = {"default": b, "tenth": dz.scale_exposures(b, 0.1), "fine": dz.bin_rows(dz.set_dispersion(b, 0.05), 2)}
    if trip_factor is not None:
        out["trip"] = dz.scale_exposures(b, trip_factor)
    return out


def trip_factor(out: Path) -> float:
    p = out / "trip_target.json"
    if not p.exists():
        plan = make_plan(base(), targets={"r_oo_change_nm": TARGET_PM * 1e-3}, fast=False)
        p.write_text(json.dumps({k: plan[k] for k in ("targets", "joint", "seconds")}, indent=1, default=float))
    return float(json.loads(p.read_text())["targets"]["r_oo_change_nm"]["dose_factor"])


def linear_check(name: str, d: dz.Design, out: Path, n_fresh: int) -> dict:
    """The linear estimate of the stored images (vs their MAP) and of ``n_fresh`` new detector draws."""
    from sreels.forward.detector import apply_detector
    from sreels.plan.fisher import joint_jacobian, one_step

    jac = joint_jacobian(d)
    grads = _derived_rows(jac, LINEAR_KEYS)
    step = one_step(jac)
    pred = json.loads((out / f"{name}_plan.json").read_text())["joint"]["derived_sigma"]
    raw = dict(np.load(out / f"{name}.npz"))
    models = window_models(d.instrument)
    stored = np.array([grads @ step(from_simulation(simulate(d.scenario, d.instrument, d.detector, rng=int(sd),
                                                                 models=models)))
                       for sd in raw["seeds"]])
    mapv = raw["map"][:, [DERIVED.index(k) for k in LINEAR_KEYS]]
    sim = jac.simulation
    fresh = []
    for i in range(n_fresh):
        gen = np.random.default_rng(LINEAR_SEED0[name] + i)
        noisy = dataclasses.replace(sim, windows={k: dataclasses.replace(w, counts=apply_detector(w.electrons, d.detector,
                                                                                                   gen).counts)
                                                  for k, w in sim.windows.items()})
        fresh.append(grads @ step(from_simulation(noisy)))
    fresh = np.array(fresh).reshape(n_fresh, len(LINEAR_KEYS))
    res = {"n_stored": int(len(stored)), "stored_seeds": [int(raw["seeds"][0]), int(raw["seeds"][-1])],
           "n_fresh": n_fresh, "fresh_seeds": [LINEAR_SEED0[name], LINEAR_SEED0[name] + n_fresh - 1] if n_fresh else [],
           "numbers": {}}
    for j, k in enumerate(LINEAR_KEYS):
        p = pred[k]
        a, b = stored[:, j], mapv[:, j]
        res["numbers"][k] = {
            "predicted": p,
            "stored_map_sd_over_predicted": float(np.std(b, ddof=1) / p),
            "stored_linear_sd_over_predicted": float(np.std(a, ddof=1) / p),
            "stored_map_linear_correlation": float(np.corrcoef(a, b)[0, 1]),
            "stored_sd_of_map_minus_linear_over_predicted": float(np.std(b - a, ddof=1) / p),
            **({"fresh_linear_sd_over_predicted": float(np.std(fresh[:, j], ddof=1) / p),
                "fresh_sampling_se": float(np.std(fresh[:, j], ddof=1) / p / np.sqrt(2 * (n_fresh - 1)))}
               if n_fresh > 1 else {})}
    (out / f"linear_{name}.json").write_text(json.dumps(res, indent=1))
    return res


def fast_dualeels(out: Path, n: int) -> dict:
    """The fast path's predicted per-row sigma on the default DualEELS design (sreels plan's default) against
    its per-row spread over ``n`` seeded images; raw estimates appended per image (fast_dualeels.npz)."""
    d = dz.Design(Scenario(), Instrument(), Detector())
    raw_p, pred_p = out / "fast_dualeels.npz", out / "fast_dualeels_plan.json"
    if not pred_p.exists():
        plan = make_plan(d, fast=True)
        pred_p.write_text(json.dumps({"fast": plan["fast"], "fast_profile": {
            k: np.asarray(v).tolist() for k, v in plan["_profiles"].items() if k != "joint"},
            "design": plan["design"], "seconds": plan["seconds"]}, indent=1, default=float))
    prof = json.loads(pred_p.read_text())["fast_profile"]
    acc = {k: list(v) for k, v in dict(np.load(raw_p)).items()} if raw_p.exists() else {}
    models = window_models(d.instrument)
    while len(acc.get("seeds", [])) < n:
        seed = DUALEELS_SEED0 + len(acc.get("seeds", []))
        t0 = time.perf_counter()
        sim = simulate(d.scenario, d.instrument, d.detector, rng=seed, models=models)
        r = fit_image(fast_windows(sim, "sim"), progress=False)
        ok = usable(r.status)
        dd = derive(r.position.y_nm, r.columns, usable_by_edge(r.status))   # what sreels fit reports
        acc.setdefault("seeds", []).append(seed)
        for key, col in ROW_COLS:
            acc.setdefault(f"fast_{key}", []).append(np.where(ok, r.columns[col], np.nan))
        acc.setdefault("fast_derived", []).append([dd.get(k, np.nan) for k in DERIVED_KEYS])
        acc.setdefault("fast_derived_err", []).append([dd.get(f"{k}_err", np.nan) for k in DERIVED_KEYS])
        np.savez(raw_p, **{k: np.asarray(v) for k, v in acc.items()})
        print(f"dualeels {len(acc['seeds'])}/{n}: fast {time.perf_counter() - t0:.1f} s", flush=True)
    r = {k: np.asarray(v) for k, v in acc.items()}
    lines = ["# Validation 06, DualEELS: the fast path's predicted per-row sigma against its spread", "",
             "The default design as `sreels plan` plans it (plural scattering, low-loss window; "
             f"{d.scenario.rows} rows), seeds {int(r['seeds'][0])}-{int(r['seeds'][-1])}.  Predicted: its errors on "
             "the noise-free image; empirical: the rms over usable rows of the per-row sd over the images.", "",
             "| set | n | number | predicted | empirical | empirical / predicted | +- (sampling) | | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    res = {"design": "default DualEELS (sreels plan's default scenario)", "seeds": [int(r["seeds"][0]),
                                                                                    int(r["seeds"][-1])],
           "fast_rows": _fast_rows("dualeels", r, prof, lines)}
    res["all_pass"] = bool(all(e["pass"] for e in res["fast_rows"].values()))
    # the derived numbers: the errors the fast path reports (on the noise-free image: the plan's
    # fast.derived_reported; and their mean over the images) against the spread of its estimates; outside the
    # verdict: those errors carry systematics common to every image (the plural-scattering and C / E_b terms,
    # the Ti boundary's shape term), which add no spread over detector draws
    rep = json.loads(pred_p.read_text())["fast"]["derived_reported"]
    lines += ["", "The derived numbers of the fast path (outside the verdict: its errors include systematics common "
              "to every image, which add no spread over detector draws):", "",
              "| number | reported on the noise-free image (plan) | mean reported over the images | empirical sd | "
              "sd / plan's | +- (sampling) |", "|---|---|---|---|---|---|"]
    res["fast_derived"] = {}
    for j, k in enumerate(DERIVED_KEYS):
        v, e = r["fast_derived"][:, j], r["fast_derived_err"][:, j]
        good = np.isfinite(v)
        sd = float(np.std(v[good], ddof=1)) if good.sum() > 2 else float("nan")
        pk = rep.get(k, float("nan"))
        res["fast_derived"][k] = {"reported_noise_free": pk, "reported_mean": float(np.nanmean(e)),
                                  "empirical_sd": sd, "n": int(good.sum()), "sd_over_reported": sd / pk}
        lines.append(f"| {k} | {pk:.4g} | {np.nanmean(e):.4g} | {sd:.4g} | {sd / pk:.3f} | "
                     f"{sd / pk / np.sqrt(2 * (good.sum() - 1)):.3f} |")
    (out / "fast_dualeels.json").write_text(json.dumps(res, indent=1))
    (out / "fast_dualeels.md").write_text("\n".join(lines) + "\n")
    return res


def dualeels_joint_bias(out: Path) -> dict:
    """MAP of the noise-free default DualEELS image (the joint fit without --plural) minus the truth, the
    plan's predicted sigma, and the linearised estimate of the bias (one Gauss-Newton step from the truth)."""
    from sreels.inference.bayes.likelihood import Likelihood
    from sreels.inference.bayes.model import ImageModel
    from sreels.plan.fisher import _projection, gradients, joint_jacobian

    d = dz.Design(Scenario(), Instrument(), Detector())
    jac = joint_jacobian(d)
    plan = make_plan(d, fast=False)
    data = from_simulation(jac.simulation, source="plan")
    model = ImageModel(data, jac.priors.pset)
    like = Likelihood(model, chunk=4)
    a, _, _ = like.fit_rows(jac.theta)
    nw = like.nw
    c0 = model.columns(jac.theta[None])
    F, coef, Ws = _projection(jac, np.ones(len(jac.windows)), 1.0)
    P = jac.theta.size
    score = np.zeros(P)
    for i, (w, W, wd, c) in enumerate(zip(jac.windows, Ws, data.windows, c0)):
        mu = a[:, i, None] * c.background[0] + a[:, nw, None] * c.host[0] + a[:, nw + 1, None] * c.alpo4[0]
        Gt = w.full_G(P) - np.matmul(w.cols, coef[:, [i, nw, nw + 1], :])
        score += np.einsum("rcp,rc->p", Gt, W * (wd.data - mu))
    lin = np.linalg.solve(F + np.diag(jac.prior_info), score)
    g = gradients(jac, [100.0])
    t0 = time.perf_counter()
    fit = fit_bayes(data, jac.priors, sample=False, progress=False)
    names = jac.priors.pset.names
    truth = derived(jac.priors.pset.as_dict(jac.theta[None]), jac.priors.pset.ti3_mode)
    dv = derived(jac.priors.pset.as_dict(fit.map.theta[None]), jac.priors.pset.ti3_mode)
    sig = plan["joint"]["derived_sigma"]
    res = {"design": "default DualEELS (sreels plan's default scenario), noise-free image, joint fit without --plural",
           "map_success": bool(fit.map.success), "map_seconds": time.perf_counter() - t0,
           "derived": {k: {"truth": float(np.ravel(truth[k])[0]),
                           "map_minus_truth": float(np.ravel(dv[k])[0] - np.ravel(truth[k])[0]),
                           "predicted_sigma": sig[k],
                           "bias_over_sigma": float((np.ravel(dv[k])[0] - np.ravel(truth[k])[0]) / sig[k]),
                           "linearised_bias": float(g[f"derived:{k}"] @ lin)} for k in DERIVED},
           "parameters": {n: {"truth": float(t), "map_minus_truth": float(m - t), "linearised_bias": float(b)}
                          for n, t, m, b in zip(names, jac.theta, fit.map.theta, lin)}}
    lines = ["# Validation 06, DualEELS: the joint fit's bias that sreels plan's sigma leaves out", "",
             "The default design (plural scattering, low-loss window), its noise-free image fitted by the Bayesian "
             "MAP without --plural (single-scattering model).  The plan's sigma is the spread about the fit's own "
             "mean; the bias below is not part of it.  The linearised bias (one Gauss-Newton step from the "
             "truth) is shown to say that it does not predict the MAP's: the misfit is far outside the linear "
             "regime.", "", "| number | truth | MAP - truth | predicted sigma | bias / sigma | linearised bias |",
             "|---|---|---|---|---|---|"]
    for k, v in res["derived"].items():
        lines.append(f"| {k} | {v['truth']:.6g} | {v['map_minus_truth']:+.4g} | {v['predicted_sigma']:.3g} | "
                     f"{v['bias_over_sigma']:+.3g} | {v['linearised_bias']:+.4g} |")
    (out / "dualeels_joint_bias.json").write_text(json.dumps(res, indent=1))
    (out / "dualeels_joint_bias.md").write_text("\n".join(lines) + "\n")
    return res


def windows_of(sim):
    det = sim.config.detector
    md = {"sreels": {"detector": {"psf_decay": det.psf_decay, "adc_max_counts": det.adc_max_counts,
                                  "dark_offset_counts": det.dark_offset_counts, "dark_subtracted": det.dark_subtracted}}}
    return {k: WindowData(k, v.energy, np.asarray(v.counts, float), sim.position, "sim", det.gain_counts_per_e,
                          det.readout_noise_counts, metadata=md) for k, v in sim.windows.items()}


def _derived_rows(jac, keys=DERIVED) -> np.ndarray:
    """d(number)/d(theta) of the derived numbers ``keys`` at the design's truth, one row each (D, P)."""
    from sreels.plan.fisher import gradients

    g = gradients(jac, [100.0])
    return np.array([g[f"derived:{k}"] for k in keys])


class _Results:
    """A design's raw results so far (OUT/<name>.npz, appended per image: resumable), its priors and kernels."""

    def __init__(self, name: str, d: dz.Design, out: Path):
        self.name, self.d, self.out = name, d, out
        self.raw = out / f"{name}.npz"
        prev = dict(np.load(self.raw, allow_pickle=False)) if self.raw.exists() else {}
        self.acc = {k: list(v) for k, v in prev.items()}
        self.priors = priors_for(d)
        self.models = window_models(d.instrument)

    @property
    def done(self) -> int:
        return len(self.acc.get("seeds", []))


class _Run(_Results):
    """One design's state: its prediction (written once), priors, kernels and the raw results so far."""

    def __init__(self, name: str, d: dz.Design, out: Path, fast: bool, seed0: int | None = None):
        super().__init__(name, d, out)
        self.fast = fast
        self.seed0 = SEED0[name] if seed0 is None else seed0
        pred_p = out / f"{name}_plan.json"
        if not pred_p.exists():
            plan = make_plan(d, fast=fast)
            keep = {k: plan[k] for k in ("joint", "seconds", "exposure_s")}
            if fast:
                keep["fast_profile"] = {k: np.asarray(v).tolist() for k, v in plan["_profiles"].items()
                                        if k != "joint"}
            pred_p.write_text(json.dumps(keep, indent=1, default=float))

    def one(self, n: int) -> None:
        """Fit the next seeded image (seed = SEED0[name] + index, or ``--seed0`` + index)."""
        name, d, priors, acc, fast = self.name, self.d, self.priors, self.acc, self.fast
        i = self.done
        seed = self.seed0 + i
        t0 = time.perf_counter()
        sim = simulate(d.scenario, d.instrument, d.detector, rng=seed, models=self.models)
        with single_threaded_blas():
            fit = fit_bayes(from_simulation(sim), priors, sample=False, progress=False)
        t1 = time.perf_counter()
        dv = derived(priors.pset.as_dict(fit.map.theta), priors.pset.ti3_mode)
        acc.setdefault("seeds", []).append(seed)
        acc.setdefault("map", []).append([float(dv[k]) for k in DERIVED])
        acc.setdefault("map_ok", []).append(bool(fit.map.success))
        acc.setdefault("map_seconds", []).append(t1 - t0)
        if fast:
            r = fit_image(windows_of(sim), progress=False)
            ok = usable(r.status)
            for key, col in ROW_COLS:
                acc.setdefault(f"fast_{key}", []).append(np.where(ok, r.columns[col], np.nan))
            acc.setdefault("fast_seconds", []).append(time.perf_counter() - t1)
        np.savez(self.raw, **{k: np.asarray(v) for k, v in acc.items()})
        print(f"{name} {i + 1}/{n}: MAP {t1 - t0:.1f} s{' fast %.1f s' % acc['fast_seconds'][-1] if fast else ''}"
              f"{'' if fit.map.success else ' (MAP not converged)'}", flush=True)


#: DualEELS designs (--plural-designs): sreels plan's default scenario (the instrument's defaults: plural
#: scattering and a low-loss window), fitted by the Bayesian MAP with its plural model (sreels fit --method bayes's
#: default on a DualEELS input); seeds PLURAL_SEED0[design] + index, MAP started from the study's values
#: (fit_bayes's default start: the truth of these images)
PLURAL_SEED0 = {"dualeels": 66000, "dualeels_tenth_dose": 71000, "dualeels_tenth": 67000, "dualeels_fine": 68000,
                "dualeels_trip": 69000}
#: fresh detector draws of the DualEELS linear check (--plural-linear)
PLURAL_LINEAR_SEED0 = {"dualeels": 930000, "dualeels_tenth": 935000, "dualeels_fine": 940000, "dualeels_tenth_dose": 945000}


def plural_designs(out: Path | None = None) -> dict:
    """The DualEELS designs: default; 1/10 of the dose as ``sreels plan`` scales it (``dualeels_tenth_dose``: the
    core-loss exposures, the low loss's kept, design.scale_dose) and 1/10 of every exposure, the low loss's too
    (``dualeels_tenth``: the Li-K tail's noise then 10x larger against the core loss's, a harder case); 0.05
    eV/channel with 2 rows binned on the chip; with ``out`` also ``dualeels_trip``, the dose the plan returns for
    sigma(R_OO change) = 2 pm on the default (:func:`plural_trip_factor`)."""
    b = dz.Design(Scenario(), Instrument(), Detector())
    d = {"dualeels": b, "dualeels_tenth_dose": dz.scale_dose(b, 0.1), "dualeels_tenth": dz.scale_exposures(b, 0.1),
         "dualeels_fine": dz.bin_rows(dz.set_dispersion(b, 0.05), 2)}
    if out is not None:
        d["dualeels_trip"] = dz.scale_dose(b, plural_trip_factor(out))
    return d


def plural_trip_factor(out: Path) -> float:
    """The dose factor (the core-loss exposures, the low loss's kept) ``sreels plan`` returns for sigma(R_OO change) = 2 pm on the
    DualEELS default (OUT/dualeels_trip_target.json, written once)."""
    p = out / "dualeels_trip_target.json"
    if not p.exists():
        plan = make_plan(dz.Design(Scenario(), Instrument(), Detector()), targets={"r_oo_change_nm": TARGET_PM * 1e-3},
                         fast=False)
        p.write_text(json.dumps({k: plan[k] for k in ("targets", "joint", "seconds", "predicts")}, indent=1,
                                default=float))
    return float(json.loads(p.read_text())["targets"]["r_oo_change_nm"]["dose_factor"])


class _PluralRun(_Results):
    """A DualEELS design's MAP fits with the plural model, appended per image to OUT/<name>.npz (resumable): the
    derived numbers, the parameters and the MAP's own (Laplace) sd of the derived numbers.  ``seed0``: the first seed
    (default PLURAL_SEED0[name])."""

    def __init__(self, name: str, d: dz.Design, out: Path, seed0: int | None = None):
        super().__init__(name, d, out)
        self.seed0 = PLURAL_SEED0[name] if seed0 is None else seed0

    def one(self, n: int) -> None:
        from sreels.inference.bayes.crlb import derived_gradient

        d, priors, acc = self.d, self.priors, self.acc
        i = self.done
        seed = self.seed0 + i
        t0 = time.perf_counter()
        sim = simulate(d.scenario, d.instrument, d.detector, rng=seed, models=self.models)
        with single_threaded_blas():
            data = from_simulation(sim, plural=True)
            t1 = time.perf_counter()
            fit = fit_bayes(data, priors, sample=False, progress=False)
        t2 = time.perf_counter()
        dv = derived(priors.pset.as_dict(fit.map.theta), priors.pset.ti3_mode)
        g = derived_gradient(priors, fit.map.theta)
        cov = np.asarray(fit.map.cov, float) if fit.map.cov is not None else np.full((g.shape[1],) * 2, np.nan)
        acc.setdefault("seeds", []).append(seed)
        acc.setdefault("map", []).append([float(dv[k]) for k in DERIVED])
        acc.setdefault("map_laplace_sd", []).append(np.sqrt(np.maximum(np.einsum("dp,pq,dq->d", g, cov, g), 0)))
        acc.setdefault("theta", []).append(np.asarray(fit.map.theta, float))
        acc.setdefault("map_ok", []).append(bool(fit.map.success))
        acc.setdefault("prep_seconds", []).append(t1 - t0)
        acc.setdefault("map_seconds", []).append(t2 - t1)
        np.savez(self.raw, **{k: np.asarray(v) for k, v in acc.items()})
        print(f"{self.name} {i + 1}/{n} (seed {seed}): prep {t1 - t0:.1f} s, MAP {t2 - t1:.1f} s"
              f"{'' if fit.map.success else ' (MAP not converged)'}", flush=True)


def plural_plan(name: str, d: dz.Design, out: Path) -> dict:
    """OUT/<name>_plan.json: sreels plan's prediction for the DualEELS design (its plural model), written once."""
    p = out / f"{name}_plan.json"
    if not p.exists():
        plan = make_plan(d, fast=False)
        p.write_text(json.dumps({k: plan[k] for k in ("joint", "seconds", "exposure_s", "predicts", "method")},
                                indent=1, default=float))
    return json.loads(p.read_text())


def plural_linear(name: str, d: dz.Design, out: Path, n_fresh: int) -> dict:
    """The plural fit linearised at the truth (:func:`sreels.plan.plural.one_step`) on ``n_fresh`` fresh detector draws
    of the design's noise-free image (core-loss and low-loss windows: the tail's and the kernels' noise included),
    appended per draw to OUT/linear_<name>.npz; its sd of every derived number against the plan's sigma."""
    from sreels.forward.detector import apply_detector
    from sreels.plan.fisher import joint_jacobian
    from sreels.plan.plural import one_step

    pred = plural_plan(name, d, out)["joint"]["derived_sigma"]
    raw_p = out / f"linear_{name}.npz"
    acc = {k: list(v) for k, v in dict(np.load(raw_p)).items()} if raw_p.exists() else {}
    if len(acc.get("seeds", [])) < n_fresh:
        jac = joint_jacobian(d)
        grads = _derived_rows(jac)
        step = one_step(jac)
        sim = jac.simulation
        while len(acc.get("seeds", [])) < n_fresh:
            seed = PLURAL_LINEAR_SEED0[name] + len(acc.get("seeds", []))
            gen = np.random.default_rng(seed)
            noisy = dataclasses.replace(sim, windows={k: dataclasses.replace(
                w, counts=apply_detector(w.electrons, d.detector, gen).counts) for k, w in sim.windows.items()})
            dt = step(noisy)
            acc.setdefault("seeds", []).append(seed)
            acc.setdefault("theta", []).append(dt)
            acc.setdefault("derived", []).append(grads @ dt)
            if len(acc["seeds"]) % 10 == 0 or len(acc["seeds"]) == n_fresh:
                np.savez(raw_p, **{k: np.asarray(v) for k, v in acc.items()})
                print(f"{name} linear {len(acc['seeds'])}/{n_fresh}", flush=True)
    v = np.asarray(acc["derived"])[:n_fresh]
    n = v.shape[0]
    res = {"n_fresh": n, "fresh_seeds": [PLURAL_LINEAR_SEED0[name], PLURAL_LINEAR_SEED0[name] + n - 1], "numbers": {}}
    for j, k in enumerate(DERIVED):
        sd = float(np.std(v[:, j], ddof=1))
        res["numbers"][k] = {"predicted": pred[k], "fresh_linear_sd": sd, "fresh_linear_sd_over_predicted": sd / pred[k],
                             "fresh_sampling_se": sd / pred[k] / np.sqrt(2 * (n - 1)),
                             "mean_over_predicted": float(np.mean(v[:, j]) / pred[k])}
    (out / f"linear_{name}.json").write_text(json.dumps(res, indent=1))
    return res


def plural_linear_stored(name: str, d: dz.Design, out: Path, n: int = 0) -> dict:
    """The plural fit linearised at the truth (:func:`sreels.plan.plural.one_step`) on the design's stored MAP images
    (OUT/<name>.npz, the same seeds re-simulated): MAP against linear image by image (OUT/linear_stored_<name>.json).
    Tells the MAP's nonlinearity and each image's own preparation (the linear step keeps the design's columns) from
    the sample of images.  ``n`` is not used (the stored images are all taken)."""
    from sreels.plan.fisher import joint_jacobian
    from sreels.plan.plural import one_step

    pred = plural_plan(name, d, out)["joint"]["derived_sigma"]
    st = np.load(out / f"{name}.npz")
    models = window_models(d.instrument)
    jac = joint_jacobian(d)
    grads = _derived_rows(jac)
    step = one_step(jac)
    truth = derived(jac.priors.pset.as_dict(jac.theta), jac.priors.pset.ti3_mode)
    lin = np.array([grads @ step(simulate(d.scenario, d.instrument, d.detector, rng=int(s), models=models))
                    for s in st["seeds"]])
    m = st["map"] - np.array([truth[k] for k in DERIVED])
    res = {"n_stored": int(m.shape[0]), "numbers": {}}
    for j, k in enumerate(DERIVED):
        res["numbers"][k] = {"map_sd_over_predicted": float(m[:, j].std(ddof=1) / pred[k]),
                             "linear_sd_over_predicted": float(lin[:, j].std(ddof=1) / pred[k]),
                             "map_linear_correlation": float(np.corrcoef(m[:, j], lin[:, j])[0, 1]),
                             "sd_of_map_minus_linear_over_predicted": float((m[:, j] - lin[:, j]).std(ddof=1) / pred[k])}
    (out / f"linear_stored_{name}.json").write_text(json.dumps(res, indent=1))
    return res


def plural_linear_sources(name: str, d: dz.Design, out: Path, n: int) -> dict:
    """Which noise makes the linearised plural fit's spread: the first ``n`` draws of :func:`plural_linear` (same
    seeds) again with the design's noise-free kernels and unscattered fractions (the kernels' noise out: the
    likelihood does not carry it), and with the design's Li-K tail as well (only the core loss's own noise);
    sd / the plan's sigma of each (OUT/linear_<name>_sources.json)."""
    from sreels.forward.detector import apply_detector
    from sreels.plan.fisher import joint_jacobian
    from sreels.plan.plural import one_step

    pred = plural_plan(name, d, out)["joint"]["derived_sigma"]
    jac = joint_jacobian(d)
    G = _derived_rows(jac)
    steps = {"no_kernel_noise": one_step(jac, kernel_noise=False),
             "no_kernel_no_tail_noise": one_step(jac, kernel_noise=False, tail_noise=False)}
    vals = {k: [] for k in steps}
    sim = jac.simulation
    for i in range(n):
        gen = np.random.default_rng(PLURAL_LINEAR_SEED0[name] + i)
        noisy = dataclasses.replace(sim, windows={k: dataclasses.replace(
            w, counts=apply_detector(w.electrons, d.detector, gen).counts) for k, w in sim.windows.items()})
        for k, st in steps.items():
            vals[k].append(G @ st(noisy))
    lin = np.load(out / f"linear_{name}.npz")["derived"][:n]
    res = {"n": n, "seeds": [PLURAL_LINEAR_SEED0[name], PLURAL_LINEAR_SEED0[name] + n - 1], "numbers": {}}
    for j, k in enumerate(DERIVED):
        res["numbers"][k] = {"all_noise": float(lin[:, j].std(ddof=1) / pred[k]),
                             **{q: float(np.array(v)[:, j].std(ddof=1) / pred[k]) for q, v in vals.items()}}
    (out / f"linear_{name}_sources.json").write_text(json.dumps(res, indent=1))
    return res


def plural_report(out: Path) -> tuple:
    """The DualEELS designs' table (plural model): the plan's sigma against the spread of the plural MAP over the
    seeded images (every stored image of a design) and of the linearised fit over fresh draws."""
    res = {}
    lines = ["", "DualEELS designs (`--plural-designs`, `--plural-linear`): `sreels plan`'s default (the instrument's "
             "defaults: plural scattering, t/lambda 0.54, a low-loss window), the joint fit's plural model "
             "(`sreels fit --method bayes`'s default on DualEELS). Predicted: the plan's sigma (sreels.plan.plural); "
             "empirical: the sd of the plural MAP (started from the study's values, the truth) over the seeded images, "
             "and of the fit linearised at the truth over fresh detector draws (core loss and low loss: the tail's "
             "and the kernels' noise in it). Sampling error of a sd ratio ~1/sqrt(2(n-1)).", "",
             "| design | number | predicted sd | MAP n | MAP sd / predicted | +- (sampling) | bootstrap 95 % | "
             "mean Laplace sd / predicted | linear n | linear sd / predicted | pass (MAP) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in PLURAL_SEED0:
        pp = out / f"{name}_plan.json"
        if not pp.exists():
            continue
        pred = json.loads(pp.read_text())["joint"]["derived_sigma"]
        raw = out / f"{name}.npz"
        r = dict(np.load(raw)) if raw.exists() else None
        lin_p = out / f"linear_{name}.json"
        lin = json.loads(lin_p.read_text()) if lin_p.exists() else None
        e = res[name] = {"numbers": {}}
        if r is not None:
            e.update(n_images=int(r["seeds"].size), seed_ranges=_ranges(r["seeds"]),
                     map_not_converged=int(np.sum(~r["map_ok"].astype(bool))),
                     map_seconds_mean=float(np.mean(r["map_seconds"])),
                     prep_seconds_mean=float(np.mean(r["prep_seconds"])))
        if lin is not None:
            e["linear"] = lin
        for j, k in enumerate(DERIVED):
            if k not in SIX + ("r_oo_change_nm",):
                continue
            x = e["numbers"][k] = {"predicted": pred[k]}
            cells = ["", "", "", "", "", ""]
            if r is not None and r["seeds"].size > 2:
                n = int(r["seeds"].size)
                x.update(_ratio(pred[k], float(np.std(r["map"][:, j], ddof=1)), n))
                x["ratio_bootstrap_95"] = ci = _boot_ci(r["map"][:, j], pred[k])
                x["laplace_mean_over_predicted"] = lap = float(np.mean(r["map_laplace_sd"][:, j]) / pred[k])
                cells = [str(n), f"{x['ratio']:.3f}", f"{x['ratio_sampling_se']:.3f}", f"{ci[0]:.2f}-{ci[1]:.2f}",
                         f"{lap:.3f}", "yes" if x["pass"] else "NO"]
            ln = lin["numbers"][k] if lin is not None else None
            lc = ([str(lin["n_fresh"]), f"{ln['fresh_linear_sd_over_predicted']:.3f} +- {ln['fresh_sampling_se']:.3f}"]
                  if ln else ["", ""])
            lines.append(f"| {name} | {k} | {pred[k]:.4g} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | "
                         f"{cells[4]} | {lc[0]} | {lc[1]} | {cells[5]} |")
    rt_raw = out / "dualeels_trip.npz"
    if rt_raw.exists() and (out / "dualeels_trip_target.json").exists() and "dualeels_trip" in res:
        m = np.load(rt_raw)["map"]
        if m.shape[0] > 2:
            rt = res["dualeels_trip"]["round_trip"] = _round_trip(out, "dualeels_trip", m)
            lines += ["", f"Round trip on the DualEELS default (plural model): the dose planned for sigma(R_OO change) = "
                          f"{TARGET_PM} pm (x{rt['dose_factor']:.4g}) gives a MAP sd of {rt['empirical_sd_pm']:.3f} pm over "
                          f"{rt['n_images']} images: ratio {rt['ratio']:.3f} +- {rt['ratio_sampling_se']:.3f} "
                          f"({'pass' if rt['pass'] else 'FAIL'})."]
    verdict = {}
    for name in PLURAL_VERDICT:
        e = res.get(name, {})
        nums = [x for x in e.get("numbers", {}).values() if "pass" in x]
        n = e.get("n_images", 0)
        verdict[name] = {"n_images": n, "enough_images": n >= MIN_IMAGES,
                         "worst_ratio": max((x["ratio"] for x in nums), key=lambda r: abs(r - 1), default=None),
                         "pass": bool(nums) and n >= MIN_IMAGES and all(x["pass"] for x in nums)}
    rt = res.get("dualeels_trip", {}).get("round_trip")
    verdict["dualeels_trip (round trip)"] = {"n_images": rt["n_images"] if rt else 0,
                                             "ratio": rt["ratio"] if rt else None,
                                             "pass": bool(rt and rt["pass"] and rt["n_images"] >= MIN_IMAGES)}
    res["verdict"] = verdict
    res["all_pass"] = all(v["pass"] for v in verdict.values())
    lines += ["", f"DualEELS verdict (`dualeels_plural.all_pass`): the designs of the issue as `sreels plan` scales them "
              f"(default, 1/10 of the dose, fine) and the round trip, each on >= {MIN_IMAGES} images; "
              "`dualeels_tenth` (every exposure x0.1, the low loss's too) and the trip design's other numbers are "
              "reported above, outside it.", "", "| design | n | worst ratio | pass |", "|---|---|---|---|"]
    for name, v in verdict.items():
        w = v.get("worst_ratio", v.get("ratio"))
        lines.append(f"| {name} | {v['n_images']} | {'' if w is None else f'{w:.3f}'} | {'yes' if v['pass'] else 'NO'} |")
    lines.append(f"\nDualEELS all_pass: {res['all_pass']}")
    return res, lines


#: the DualEELS designs whose MAP spread the DualEELS verdict takes (the issue's three designs, the dose as ``sreels
#: plan`` scales it), each on at least MIN_IMAGES images
PLURAL_VERDICT = ("dualeels", "dualeels_tenth_dose", "dualeels_fine")
MIN_IMAGES = 100


#: bootstrap of the sd (resamples of the images, seeded): a 95 % interval of each ratio that does not assume
#: Gaussian estimates (the 1/sqrt(2(n-1)) error does; heavier tails widen it)
BOOT = 4000
BOOT_SEED = 6


def _boot_ci(v, pred):
    v = np.asarray(v, float)
    idx = np.random.default_rng(BOOT_SEED).integers(0, v.shape[0], (BOOT, v.shape[0]))
    return (np.percentile(np.std(v[idx], axis=1, ddof=1), [2.5, 97.5]) / pred).tolist()


def _ratio(pred, emp, n):
    r = emp / pred
    return {"predicted": pred, "empirical_sd": emp, "ratio": r, "ratio_sampling_se": r / np.sqrt(2 * (n - 1)),
            "pass": bool(abs(r - 1) <= TOL)}


def report(out: Path) -> dict:
    rep = {"tolerance": TOL, "designs": {}}
    lines = ["| design | n | number | predicted sd | empirical sd | empirical / predicted | +- (sampling) | "
             "bootstrap 95 % | pass |", "|---|---|---|---|---|---|---|---|---|"]
    lin_lines = ["", "Linear check (`--linear`): sd / predicted sd of the MAP and of the fit linearised at the truth "
                 "(fisher.one_step) on the stored images, their correlation and the sd of MAP - linear; the linear "
                 "estimate's sd over fresh detector draws (+- its sampling error).", "",
                 "| design | number | stored n | MAP | linear | corr(MAP, linear) | sd(MAP - linear) | fresh n | "
                 "linear, fresh draws |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ("default", "tenth", "fine", "trip", "trip_at_reported_factor"):
        raw = out / f"{name}.npz"
        if not raw.exists():
            continue
        r = dict(np.load(raw))
        plan = json.loads((out / f"{name}_plan.json").read_text())
        n = int(r["seeds"].size)
        m = r["map"]
        entry = {"n_images": n, "seeds": [int(r["seeds"][0]), int(r["seeds"][-1])],
                 "map_not_converged": int(np.sum(~r["map_ok"].astype(bool))),
                 "map_seconds_mean": float(np.mean(r["map_seconds"])), "joint": {}, "fast_rows": {},
                 "plan_seconds": plan["seconds"]}
        keys = SIX + ("r_oo_change_nm",)
        for j, k in enumerate(DERIVED):
            if k not in keys:
                continue
            pred = plan["joint"]["derived_sigma"][k]
            emp = float(np.std(m[:, j], ddof=1))
            entry["joint"][k] = _ratio(pred, emp, n)
            entry["joint"][k]["bias_over_sd"] = float((np.mean(m[:, j]) - np.median(m[:, j])) / emp)
            entry["joint"][k]["ratio_bootstrap_95"] = ci = _boot_ci(m[:, j], pred)
            e = entry["joint"][k]
            lines.append(f"| {name} | {n} | {k} | {pred:.4g} | {emp:.4g} | {e['ratio']:.3f} | "
                         f"{e['ratio_sampling_se']:.3f} | {ci[0]:.2f}-{ci[1]:.2f} | {'yes' if e['pass'] else 'NO'} |")
        if "fast_li_rel" in r and "fast_profile" in plan:
            entry["fast_rows"] = _fast_rows(name, r, plan["fast_profile"], lines)
        if name.startswith("trip"):
            entry["round_trip"] = _round_trip(out, name, m)
        lin = out / f"linear_{name}.json"
        if lin.exists():
            entry["linear_check"] = lc = json.loads(lin.read_text())
            for k, v in lc["numbers"].items():
                lin_lines.append(
                    f"| {name} | {k} | {lc['n_stored']} | {v['stored_map_sd_over_predicted']:.3f} | "
                    f"{v['stored_linear_sd_over_predicted']:.3f} | {v['stored_map_linear_correlation']:.4f} | "
                    f"{v['stored_sd_of_map_minus_linear_over_predicted']:.3f} | {lc['n_fresh']} | "
                    f"{v['fresh_linear_sd_over_predicted']:.3f} +- {v['fresh_sampling_se']:.3f} |")
        rep["designs"][name] = entry
    main_designs = [n for n in rep["designs"] if n != "trip_at_reported_factor"]
    rep["all_pass_first_sets"] = _passes(rep["designs"][n] for n in main_designs)
    more = _more_sets(out, lines, lin_lines)
    if more:
        rep["more_sets"] = more
    # the verdict: per design, every stored image of it (first set and every further set, pooled); never a
    # subset chosen by its result
    rep["verdict"] = {n: _verdict_entry(rep["designs"][n], more.get(f"{n}_pooled"),
                                        [n] + [k for k in more if k.startswith(f"{n}_") and k != f"{n}_pooled"])
                      for n in main_designs}
    rep["all_pass"] = _passes(rep["verdict"].values())
    rep["all_pass_note"] = ("all_pass: per design, the largest pooled set, i.e. every stored image of that design "
                            "(OUT/<design>.npz and every further set OUT/<design>_<seed0>/ made with --seed0), for the "
                            "joint fit's numbers and the round trip; the fast path's per-row comparison over every "
                            "stored image that has fast-path estimates (the further sets made with --no-fast have "
                            "none); verdict gives the set and n of each design.  all_pass_first_sets: the same rule "
                            "over the first sets only (the verdict before further sets were pooled)")
    lines += ["", "Verdict (`all_pass`): per design, every stored image of it pooled (the largest set: the first set "
              "and every further set, never a subset chosen by its result); the fast path's per-row comparison over every "
              "image with fast-path estimates.", "",
              "| design | sets pooled (joint fit) | n | worst ratio | fast path n | round trip (+- sampling) | pass |",
              "|---|---|---|---|---|---|---|"]
    for n, v in rep["verdict"].items():
        worst = max(v["joint"].values(), key=lambda e: abs(e["ratio"] - 1))
        rt = v.get("round_trip")
        lines.append(f"| {n} | {v['set']} | {v['n_images']} | {worst['ratio']:.3f} | {v.get('fast_rows_n_images', '')}"
                     f" | {'%.3f +- %.3f' % (rt['ratio'], rt['ratio_sampling_se']) if rt else ''} | "
                     f"{'yes' if _passes([v]) else 'NO'} |")
    lines.append(f"\nall_pass: {rep['all_pass']} (over the first sets only: {rep['all_pass_first_sets']})")
    (out / "report.json").write_text(json.dumps(rep, indent=1, default=float))
    if len(lin_lines) > 5:
        lines += lin_lines
    prep, plines = plural_report(out)
    if prep:   # its own verdict (dualeels_plural.all_pass), beside the single-scattering designs' all_pass above
        rep["dualeels_plural"] = prep
        lines += plines
    (out / "report.json").write_text(json.dumps(rep, indent=1, default=float))
    (out / "ratios.md").write_text("\n".join(lines) + "\n")
    return rep


def _more_sets(out: Path, lines: list, lin_lines: list) -> dict:
    """Further sets of a design (``OUT/<design>_<seed0>/<design>.npz``, made with ``--seed0``): the MAP's sd of
    the study's numbers against the design's prediction (``OUT/<design>_plan.json``), for each new set alone
    and pooled with the first set (its own prediction file must agree with it: the same code path)."""
    res = {}
    for name in ("default", "tenth", "fine", "trip"):
        sets = sorted(p for p in out.glob(f"{name}_[0-9]*") if (p / f"{name}.npz").exists())
        if not sets or not (out / f"{name}.npz").exists():
            continue
        full_plan = json.loads((out / f"{name}_plan.json").read_text())
        plan = full_plan["joint"]["derived_sigma"]
        first = dict(np.load(out / f"{name}.npz"))
        pool = [first["map"]]
        seeds = [first["seeds"]]
        fast = [first] if "fast_li_rel" in first else []
        for p in sets:
            r = dict(np.load(p / f"{name}.npz"))
            own = json.loads((p / f"{name}_plan.json").read_text())["joint"]["derived_sigma"]
            dev = max(abs(own[k] / plan[k] - 1) for k in plan)
            assert dev < 1e-9, (p, dev)
            assert not set(r["seeds"].tolist()) & set(np.concatenate(seeds).tolist()), "seeds repeat"
            pool.append(r["map"])
            seeds.append(r["seeds"])
            if "fast_li_rel" in r:
                fast.append(r)
            res[p.name] = _set_entry(p.name, r["map"], r["seeds"], r["map_ok"], plan, lines)
            res[p.name]["prediction_max_rel_dev_from_first"] = dev
            lin = p / f"linear_{name}.json"
            if lin.exists():   # the linear check of these images (--linear DESIGN with this OUT)
                res[p.name]["linear_check"] = lc = json.loads(lin.read_text())
                for k, v in lc["numbers"].items():
                    fr = (f"{v['fresh_linear_sd_over_predicted']:.3f} +- {v['fresh_sampling_se']:.3f}"
                          if "fresh_sampling_se" in v else "")
                    lin_lines.append(f"| {p.name} | {k} | {lc['n_stored']} | {v['stored_map_sd_over_predicted']:.3f} | "
                                     f"{v['stored_linear_sd_over_predicted']:.3f} | "
                                     f"{v['stored_map_linear_correlation']:.4f} | "
                                     f"{v['stored_sd_of_map_minus_linear_over_predicted']:.3f} | {lc['n_fresh']} | {fr} |")
        res[f"{name}_pooled"] = e = _set_entry(f"{name} pooled", np.concatenate(pool), np.concatenate(seeds),
                                               None, plan, lines)
        if len(fast) > 1 and "fast_profile" in full_plan:   # more than the first set has fast-path estimates
            e["fast_rows"] = _fast_rows(f"{name} pooled", {f"fast_{k}": np.concatenate([r[f"fast_{k}"] for r in fast])
                                                           for k, _ in ROW_COLS}, full_plan["fast_profile"], lines)
        if name == "trip":
            e["round_trip"] = _round_trip(out, name, np.concatenate(pool))
    return res


def _fast_rows(label, r, prof, lines) -> dict:
    """The fast path's per-row sd (rms over usable rows) against its predicted per-row sigma."""
    res = {}
    n = int(r["fast_li_rel"].shape[0])
    for key, _ in ROW_COLS:
        v = r[f"fast_{key}"]
        p = np.asarray(prof[f"{key}_err"], float)
        good = np.all(np.isfinite(v), 0) & np.isfinite(p) & (p > 0)
        emp_rms = float(np.sqrt(np.mean(np.var(v[:, good], 0, ddof=1))))
        pred_rms = float(np.sqrt(np.mean(p[good] ** 2)))
        per_row = np.std(v[:, good], 0, ddof=1) / p[good]
        res[key] = e = {**_ratio(pred_rms, emp_rms, n), "rows": int(good.sum()), "n_images": n,
                        "per_row_ratio_p5_p50_p95": np.percentile(per_row, [5, 50, 95]).tolist()}
        lines.append(f"| {label} (fast, {int(good.sum())} rows) | {n} | {key} per row (rms) | {pred_rms:.4g} | "
                     f"{emp_rms:.4g} | {e['ratio']:.3f} | {e['ratio_sampling_se'] / np.sqrt(good.sum()):.3f}"
                     f" | | {'yes' if e['pass'] else 'NO'} |")
    return res


def _round_trip(out: Path, name: str, m) -> dict:
    """The MAP's sd of R_OO change (pm) over the images at the exposure planned for 2 pm, against 2 pm."""
    n = m.shape[0]
    emp = float(np.std(m[:, DERIVED.index("r_oo_change_nm")], ddof=1)) * 1e3
    f = json.loads((out / f"{name}_target.json").read_text())["targets"]["r_oo_change_nm"]["dose_factor"]
    return {"target_pm": TARGET_PM, "dose_factor": f, "n_images": int(n), "empirical_sd_pm": emp,
            "ratio": emp / TARGET_PM, "ratio_sampling_se": emp / TARGET_PM / np.sqrt(2 * (n - 1)),
            "pass": bool(abs(emp / TARGET_PM - 1) <= TOL)}


def _verdict_entry(first: dict, pooled: dict | None, sets: list) -> dict:
    """A design's verdict: the pooled set of all its stored images where further sets exist, else the first
    set; the fast path's rows from the pooled set if it has them, else from the first set (its only images
    with fast-path estimates)."""
    src = pooled if pooled is not None else first
    v = {"set": " + ".join(sets), "n_images": src["n_images"], "joint": src["joint"]}
    fr = (pooled or {}).get("fast_rows") or first.get("fast_rows")
    if fr:
        v["fast_rows"] = fr
        v["fast_rows_n_images"] = next(iter(fr.values()))["n_images"]
    rt = (pooled or {}).get("round_trip") or first.get("round_trip")
    if rt:
        v["round_trip"] = rt
    return v


def _passes(entries) -> bool:
    """Every joint and fast-path comparison and the round trip (if any) of every entry within TOL."""
    entries = list(entries)
    return bool(all(e["pass"] for d in entries for grp in ("joint", "fast_rows") for e in d.get(grp, {}).values())
                and all(d.get("round_trip", {"pass": True})["pass"] for d in entries))


def _set_entry(label, m, seeds, ok, plan, lines) -> dict:
    n = int(seeds.size)
    e = {"n_images": n, "seed_ranges": _ranges(seeds), "joint": {}}
    if ok is not None:
        e["map_not_converged"] = int(np.sum(~ok.astype(bool)))
    for j, k in enumerate(DERIVED):
        if k not in SIX + ("r_oo_change_nm",):
            continue
        pred = plan[k]
        emp = float(np.std(m[:, j], ddof=1))
        x = e["joint"][k] = _ratio(pred, emp, n)
        x["ratio_bootstrap_95"] = ci = _boot_ci(m[:, j], pred)
        lines.append(f"| {label} | {n} | {k} | {pred:.4g} | {emp:.4g} | {x['ratio']:.3f} | "
                     f"{x['ratio_sampling_se']:.3f} | {ci[0]:.2f}-{ci[1]:.2f} | {'yes' if x['pass'] else 'NO'} |")
    return e


def _ranges(seeds) -> list:
    s = np.sort(np.asarray(seeds, int))
    cut = np.flatnonzero(np.diff(s) != 1) + 1
    return [[int(a[0]), int(a[-1])] for a in np.split(s, cut)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--designs", nargs="+", default=["default", "tenth", "fine", "trip"],
                    choices=["default", "tenth", "fine", "trip"])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--no-fast", action="store_true")
    ap.add_argument("--seed0", type=int, default=None,
                    help="first seed of a new set (one design; default SEED0[design]); use a new OUT for it")
    ap.add_argument("--linear", nargs="+", default=[], metavar="DESIGN",
                    choices=["default", "tenth", "fine", "trip"], help="the linear check of DESIGN (linear_DESIGN.json)")
    ap.add_argument("--linear-n", type=int, default=200,
                    help="fresh detector draws of the linear check (0: the stored images only)")
    ap.add_argument("--fast-dualeels", type=int, default=0, metavar="N",
                    help="the fast path's per-row check on N seeded images of the default DualEELS design")
    ap.add_argument("--dualeels-joint-bias", action="store_true",
                    help="the joint fit's MAP on the noise-free default DualEELS image against the truth")
    ap.add_argument("--repredict", nargs="+", default=[], metavar="DESIGN",
                    help="recompute DESIGN_plan.json with the current code (the fits are kept)")
    ap.add_argument("--plural-sources", nargs="+", default=[], metavar="DESIGN", choices=list(PLURAL_SEED0),
                    help="the linear check's first --linear-n draws without the kernels' / the tail's noise")
    ap.add_argument("--plural-linear-stored", nargs="+", default=[], metavar="DESIGN", choices=list(PLURAL_SEED0),
                    help="the plural fit linearised at the truth on the design's stored MAP images, MAP against linear")
    ap.add_argument("--plural-linear", nargs="+", default=[], metavar="DESIGN", choices=list(PLURAL_SEED0),
                    help="the plural fit linearised at the truth on --linear-n fresh draws of these DualEELS designs")
    ap.add_argument("--plural-designs", nargs="+", default=[], metavar="DESIGN", choices=list(PLURAL_SEED0),
                    help="MAP fits (plural model) of seeded images of these DualEELS designs, --n per design")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for names, check, digits in ((a.plural_sources, plural_linear_sources, 3), (a.plural_linear, plural_linear, 4),
                                 (a.plural_linear_stored, plural_linear_stored, 3)):
        if names:   # the linearised plural fit (by noise source), then stop
            pds = plural_designs(out)
            with single_threaded_blas():
                for name in names:
                    r = check(name, pds[name], out, a.linear_n)
                    for k, v in r["numbers"].items():
                        print(name, k, {q: round(x, digits) for q, x in v.items()}, flush=True)
            return 0
    if a.plural_designs:
        pds = plural_designs(out)
        for name in a.plural_designs:   # the prediction first (written once)
            plural_plan(name, pds[name], out)
        # --seed0: a further set of seeds (its own OUT; pooled by the report only when merged)
        runs = [_PluralRun(name, pds[name], out, a.seed0) for name in a.plural_designs]
        while any(r.done < a.n for r in runs):  # designs interleaved, appended per image: resumable
            for r in runs:
                if r.done < a.n:
                    r.one(a.n)
        return 0
    if a.dualeels_joint_bias:
        with single_threaded_blas():
            dualeels_joint_bias(out)
        print((out / "dualeels_joint_bias.md").read_text())
        return 0
    if a.fast_dualeels:
        with single_threaded_blas():
            res = fast_dualeels(out, a.fast_dualeels)
        print((out / "fast_dualeels.md").read_text())
        return 0 if res["all_pass"] else 1
    for name in a.repredict:
        (out / f"{name}_plan.json").unlink(missing_ok=True)
        if name == "trip_at_reported_factor":  # the exposure an earlier plan (the fit's reported sigma) gave
            f = json.loads((out / f"{name}_target.json").read_text())["targets"]["r_oo_change_nm"]["dose_factor"]
            d = dz.scale_exposures(base(), f)
            plan = make_plan(d, fast=False)
            (out / f"{name}_plan.json").write_text(json.dumps({k: plan[k] for k in ("joint", "seconds", "exposure_s")},
                                                              indent=1, default=float))
        else:
            _Run(name, designs(trip_factor(out) if name == "trip" else None)[name], out, fast=name != "trip")
    for name in a.linear:
        d = designs(trip_factor(out) if name == "trip" else None)[name]
        with single_threaded_blas():
            r = linear_check(name, d, out, a.linear_n)
        for k, v in r["numbers"].items():
            print(name, k, {q: round(x, 4) for q, x in v.items()}, flush=True)
    if (a.repredict or a.linear) and not a.report:
        return 0
    if a.report:
        rep = report(out)
        print((out / "ratios.md").read_text())
        return 0 if rep["all_pass"] and rep.get("dualeels_plural", {}).get("all_pass", True) else 1
    ds = designs(trip_factor(out) if "trip" in a.designs else None)
    if a.seed0 is not None and len(a.designs) != 1:
        ap.error("--seed0 takes one design")
    runs = [_Run(name, ds[name], out, fast=not a.no_fast and name != "trip", seed0=a.seed0) for name in a.designs]
    while any(r.done < a.n for r in runs):  # designs interleaved: a stopped run leaves all of them comparable
        for r in runs:
            if r.done < a.n:
                r.one(a.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
