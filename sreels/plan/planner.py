"""Predicted precision of every number of a design, the exposure a target needs, trade-offs.

Joint (Bayesian) fit: sigma = sqrt(g' Sigma g) from :mod:`.fisher` (g the gradient of the
number with respect to the fit's parameters), Sigma the spread of its estimates over repeated
images (the sandwich F^-1 H F^-1: the detector's noise, readout correlated by the PSF
whitening); the error the fit will report, sqrt(g' F^-1 g), is given beside it.  On a DualEELS design (a
low-loss window, the default) the joint fit is its plural model (``sreels fit --method bayes``'s default there;
:mod:`.plural`) and sigma its F^-1.  Fast path: the per-row errors the fast path
reports when it inverts the design's noise-free expected image: its own per-row information
at the truth (its errors match the spread over seeds within 0.93-1.06, tests/statistics).

Exposure for a target: every core-loss window's exposure is scaled by one factor s (the split between
windows kept; the low loss's exposure kept, :func:`.design.scale_dose`) until sigma(s) = target, solved on F(s) itself (readout noise makes sigma fall
more slowly than s^-1/2 at low dose) by secant steps on sigma^2 = alpha / s + beta / s^2 (shot
noise and readout) through the last two evaluations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import SreelsInputError
from ..inference.bayes.params import DERIVED
from . import design as dz
from .design import Design
from .fisher import (GAUSSIAN_MIN_ELECTRONS, covariance, covariances, dose_scaled, gradients, joint_jacobian,
                     min_electrons, readout_factor, sigmas_cov)

#: The study's six numbers (Yamamoto 2014) and the R_OO change; units as in the names.
TARGET_NAMES = DERIVED
#: The study's numbers in the summary and the figure: (key, label, unit factor, unit)
NUMBERS = (("electrode_width_nm", "electrode width", 1.0, "nm"), ("ti_boundary_nm", "Ti³⁺ boundary", 1.0, "nm"),
           ("li_max_rel", "c_Li max", 1.0, ""), ("li_at_ti_boundary_rel", "c_Li at boundary", 1.0, ""),
           ("r_oo_parent_nm", "R_OO parent", 1e3, "pm"), ("r_oo_max_nm", "R_OO max", 1e3, "pm"),
           ("r_oo_change_nm", "R_OO change", 1e3, "pm"))
#: Rows (distance from Pt, nm) reported by default: Ti3+ region, Ti4+ electrode, parent (those outside a shorter
#: scan are left out, with a note: :func:`rows_in_scan`).
DEFAULT_ROWS_NM = (50.0, 250.0, 1000.0)
#: Range of the exposure factor searched for a target.
SCALE_RANGE = (1e-6, 1e6)


def rows_in_scan(sc, rows_nm=None) -> tuple[tuple, list]:
    """The rows (y, nm) whose per-row sigmas a plan reports, and notes.  A row must lie on the scenario's scan:
    its row centres run from ``first_row_nm`` to ``first_row_nm + (rows - 1) row_nm``, and a y within half a row
    of either end is that end row's.  ``rows_nm`` given (``--rows-nm``): a row outside is a SreelsInputError
    naming it and the scan's range (the fast path read the nearest row, the last, under the asked label, and the
    joint fit its model's profile extrapolated beyond the data).  None: :data:`DEFAULT_ROWS_NM`, those outside a
    shorter scan left out and said in a note."""
    y0 = float(sc.first_row_nm)
    y1 = y0 + (sc.rows - 1) * float(sc.row_nm)
    half = 0.5 * float(sc.row_nm)
    given = rows_nm is not None
    ys = [float(y) for y in (rows_nm if given else DEFAULT_ROWS_NM)]
    inside = tuple(y for y in ys if y0 - half <= y <= y1 + half)
    out = [y for y in ys if y not in inside]
    scan = (f"the scan's rows lie at {y0:g} to {y1:g} nm ({sc.rows} rows of {sc.row_nm:g} nm from first_row_nm "
            f"{y0:g}; a y within half a row of an end is that row)")
    if given and out:
        raise SreelsInputError(f"--rows-nm {' '.join(f'{y:g}' for y in out)}: outside the scan: {scan}")
    notes = []
    if out:
        notes.append(f"default rows {', '.join(f'{y:g}' for y in out)} nm not reported: outside the scan ({scan})"
                     + ("" if inside else "; no default row is inside: give --rows-nm"))
    return inside, notes


# ------------------------------------------------------------------ parsing
def _split_option(it, option: str, form: str, example: str, names, what: str) -> tuple[str, str]:
    """``NAME=VALUE`` of ``--option`` -> (name, value text), the name one of ``names``."""
    name, sep, val = str(it).partition("=")
    name = name.strip()
    if not sep:
        raise SreelsInputError(f"--{option} {it!r}: expected {form}, e.g. {example}")
    if name not in names:
        raise SreelsInputError(f"--{option} {it!r}: unknown {what} {name!r}; accepted: {', '.join(names)}")
    return name, val


def parse_targets(items) -> dict:
    """``NAME=SIGMA`` strings -> {name: sigma}; names are the derived numbers (units in the name)."""
    out = {}
    for it in items or ():
        name, val = _split_option(it, "target", "NAME=SIGMA", "r_oo_change_nm=0.002", TARGET_NAMES, "name")
        try:
            v = float(val)
        except ValueError:
            raise SreelsInputError(f"--target {it!r}: {val!r} is not a number (SIGMA in the unit of {name})") from None
        if not (np.isfinite(v) and v > 0):
            raise SreelsInputError(f"--target {it!r}: SIGMA = {val} must be a positive finite number")
        out[name] = v
    return out


#: Accepted range of each --vary key (inclusive bounds).
VARY_BOUNDS = {"dose": (1e-6, 1e6), "exposure_split": (1e-4, 1 - 1e-4), "dispersion_ev": (0.005, 1.0),
               "resolution_fwhm_ev": (0.05, 3.0), "bin_rows": (1, 64), "thickness_nm": (10.0, 500.0),
               "gain_counts_per_e": (0.01, 1000.0), "readout_noise_counts": (0.0, 1000.0)}


def parse_vary(items) -> dict:
    """``KEY=LO:HI`` strings -> {key: (lo, hi)}."""
    out = {}
    for it in items or ():
        key, rng = _split_option(it, "vary", "KEY=LO:HI", "dose=0.1:10", dz.VARY, "key")
        lo_s, sep2, hi_s = rng.partition(":")
        try:
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            raise SreelsInputError(f"--vary {it!r}: {rng!r} is not LO:HI with two numbers") from None
        if not sep2 or not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise SreelsInputError(f"--vary {it!r}: expected LO:HI with finite LO < HI")
        a, b = VARY_BOUNDS[key]
        if lo < a or hi > b:
            raise SreelsInputError(f"--vary {it!r}: {key} must lie in [{a:g}, {b:g}]")
        if dz.VARY[key][2] and (lo != int(lo) or hi != int(hi)):
            raise SreelsInputError(f"--vary {it!r}: {key} takes integers")
        out[key] = (lo, hi)
    return out


def vary_values(key: str, lo: float, hi: float, n: int) -> np.ndarray:
    if dz.VARY[key][2]:
        v = np.unique(np.round(np.geomspace(lo, hi, n)))
        return v
    if lo > 0 and hi / lo >= 4:
        return np.geomspace(lo, hi, n)
    return np.linspace(lo, hi, n)


# ------------------------------------------------------------------ dose
def dose_e_per_nm2(d: Design, slit_width_nm: float) -> dict:
    """Dose (incident electrons per nm^2) of every window, the low-loss window and the total:
    the same area is illuminated for each window in turn (parallel beam, SR-TEM-EELS)."""
    rate = d.instrument.dose_e_per_row_s / (d.scenario.row_nm * slit_width_nm)
    out = {w.name: rate * w.exposure_s for w in d.instrument.windows}
    if d.instrument.lowloss_window:
        out["lowloss"] = rate * d.instrument.lowloss_exposure_s
    out["total"] = sum(out.values())
    return out


# ------------------------------------------------------------------ joint fit
def joint_sigmas(jac, grads, scale=1.0, rfactor=1.0, kind: str = "spread") -> dict:
    """1-sigma of every number in ``grads``: the spread of the joint fit's estimates (``kind="spread"``)
    or the error it reports (``"reported"``)."""
    return sigmas_cov(covariance(jac, scale, rfactor, kind), grads)


def _next_scale(s1, f1, s2, f2, target) -> float:
    """Next exposure factor from the last two (s, sigma): through them sigma^2 = alpha / s + beta / s^2
    (each bin's variance is s lambda + readout, its information s^2 / (s lambda + readout): exact for one
    ratio of readout to electrons, close for a mixture; usually 1-2 steps), solved for sigma = target;
    where that model does not fit (alpha or beta < 0), a secant step in log s - log sigma."""
    a = np.array([[1 / s1, 1 / s1 ** 2], [1 / s2, 1 / s2 ** 2]])
    with np.errstate(all="ignore"):
        try:
            alpha, beta = np.linalg.solve(a, [f1 ** 2, f2 ** 2]) if s1 != s2 else (np.nan, np.nan)
        except np.linalg.LinAlgError:
            alpha, beta = np.nan, np.nan
        t2 = target ** 2
        s3 = (alpha + np.sqrt(alpha ** 2 + 4 * t2 * beta)) / (2 * t2)
    if not (alpha >= 0 and beta >= 0 and np.isfinite(s3) and s3 > 0):
        slope = (np.log(f2) - np.log(f1)) / (np.log(s2) - np.log(s1)) if s2 != s1 else -0.5
        if not np.isfinite(slope) or slope > -0.05:  # flat or rising: sigma no longer falls with dose
            slope = -0.05
        s3 = np.exp(np.log(s2) + (np.log(target) - np.log(f2)) / slope)
    return float(np.clip(s3, *SCALE_RANGE))


def readout_share(sigma1: float, s: float, sigma_s: float) -> float:
    """beta / alpha of sigma^2 = alpha / s + beta / s^2 through (1, sigma1) and (s, sigma_s): how much
    readout weighs in a design (0: shot-noise limited), a first guess for a similar design's target."""
    if not (np.isfinite(s) and s > 0 and s != 1):
        return 0.0
    alpha, beta = np.linalg.solve([[1.0, 1.0], [1 / s, 1 / s ** 2]], [sigma1 ** 2, sigma_s ** 2])
    return float(beta / alpha) if alpha > 0 and beta >= 0 else 0.0


def solve_scale(jac, grad, target: float, scale0=1.0, rfactor=1.0, rel_tol: float = 1e-3, max_iter: int = 30,
                sigma1: float | None = None, share: float = 0.0):
    """The dose factor s (on every core-loss exposure, times ``scale0`` per window) with sigma(s) = target
    (``sigma1``: sigma at s = 1 if known; ``share``: :func:`readout_share` of a similar design, for the
    first guess; 0 takes the shot-noise limit (sigma1 / target)^2).

    Returns (s, sigma(s), iterations); s = nan when the target is not reached in SCALE_RANGE.
    """
    def sig(s):
        return joint_sigmas(jac, {"x": grad}, dose_scaled(jac, scale0, s), rfactor)["x"]

    s1, f1 = 1.0, (sig(1.0) if sigma1 is None else float(sigma1))
    if not np.isfinite(f1) or f1 <= 0:
        return float("nan"), float("nan"), 1
    # first guess: sigma^2 = alpha (1 / s + share / s^2) through (1, sigma1); share = 0: the shot-noise limit
    a = f1 ** 2 / (1 + share)
    s2 = float(np.clip((a + np.sqrt(a ** 2 + 4 * target ** 2 * share * a)) / (2 * target ** 2), *SCALE_RANGE))
    f2 = sig(s2)
    it = 2
    while it < max_iter and abs(f2 / target - 1) > rel_tol:
        s3 = _next_scale(s1, f1, s2, f2, target)
        s1, f1 = s2, f2
        s2, f2 = s3, sig(s3)
        it += 1
        if s2 in SCALE_RANGE and ((s2 == SCALE_RANGE[1] and f2 > target) or (s2 == SCALE_RANGE[0] and f2 < target)):
            return float("nan"), f2, it
    if abs(f2 / target - 1) > 10 * rel_tol:
        return float("nan"), f2, it
    return s2, f2, it


# ------------------------------------------------------------------ fast path
def fast_windows(sim, source: str = "plan") -> dict:
    """A simulation's windows as the fast path reads them from sreels files (the detector's and the
    instrument's metadata they carry)."""
    from ..inference.load import WindowData

    det = sim.config.detector
    md = {"sreels": {"detector": {"psf_decay": det.psf_decay, "adc_max_counts": det.adc_max_counts,
                                  "dark_offset_counts": det.dark_offset_counts,
                                  "dark_subtracted": det.dark_subtracted},
                     "instrument": {"plural_scattering": sim.config.instrument.plural_scattering}},
          "resolution_fwhm_ev": sim.config.instrument.resolution_fwhm_ev}
    return {k: WindowData(k, v.energy, np.asarray(v.counts, float), sim.position, source, det.gain_counts_per_e,
                          det.readout_noise_counts, metadata=md) for k, v in sim.windows.items()}


def fast_prediction(sim, rows_nm) -> dict:
    """The fast path on the noise-free expected image: its per-row errors and reported derived errors."""
    from ..inference.derived import derive
    from ..inference.fast import EDGE_OF_NUMBER as edge, fit_image, usable_by_edge, withheld_reasons

    res = fit_image(fast_windows(sim), progress=False)
    y = res.position.y_nm
    c = res.columns
    ok = np.array([s == "ok" for s in res.status])
    by_edge = usable_by_edge(res.status)     # each number from the rows its own edge allows (as the fit reports it)
    why = withheld_reasons(res.status)
    rows = {}
    half = 0.5 * abs(float(res.position.scale_nm))
    for yy in rows_nm:
        j = int(np.argmin(np.abs(y - yy)))
        if abs(y[j] - yy) > half + 1e-9:  # the nearest row is not this y's (make_plan checks first: rows_in_scan)
            raise SreelsInputError(f"row y = {yy:g} nm: outside the scan ({y[0]:g} to {y[-1]:g} nm)")
        rows[f"{yy:g}"] = {"row_y_nm": float(y[j]), "status": str(res.status[j]),
                           **{k: float(c[f"{k}_err"][j]) for k in ("li_rel", "ti3_fraction", "r_oo_nm")}}
    try:
        dd = derive(y, c, by_edge, why=why)   # (lmfit: imported here, in the forked child by default)
        rep = {k: float(dd[f"{k}_err"]) for k in TARGET_NAMES if f"{k}_err" in dd}
    except Exception as exc:  # noqa: BLE001 - reported, the per-row prediction stands on its own
        rep = {"error": f"{type(exc).__name__}: {exc}"}
    return {"rows": rows, "derived_reported": rep, "usable_rows": int(ok.sum()), "total_rows": int(ok.size),
            "usable_rows_by_number": {k: int(by_edge[e].sum()) for k, e in edge.items()},
            "withheld": {k: why[e] for k, e in edge.items() if e in why},
            "profile": {"y_nm": y, **{f"{k}_err": np.where(by_edge[e], c[f"{k}_err"], np.nan)
                                      for k, e in edge.items()}}}


# ------------------------------------------------------------------ the plan
def predicted_fits(d: Design, sim=None, jac_plural=None) -> dict:
    """Which fits the plan predicts, said plainly (plan.json ``predicts``; the summary prints ``joint``).
    ``jac_plural``: whether the joint prediction is the plural model's (default: a DualEELS design's is)."""
    inst = d.instrument
    tl = None
    if sim is not None and getattr(sim, "lowloss_truth", None) and "t_over_lambda" in sim.lowloss_truth:
        tl = float(np.median(sim.lowloss_truth["t_over_lambda"]))
    if inst.lowloss_window and jac_plural is not False:
        joint = ("sreels fit --method bayes: its plural model, the default on this DualEELS design (the model "
                 "convolved with each row's low loss, the Li-K window's multiple-scattering tail from it with that "
                 "tail's noise carried as per-row nuisance columns; validation/16: MAP pulls within 0 +- 0.3, sd "
                 "0.8-1.3" + (f"; median t/lambda {tl:.2f} in the low-loss window" if tl is not None else "") + "). "
                 "sigma = its information with every amplitude profiled out (sreels.plan.plural), i.e. the "
                 "error that fit reports, which validation/16 found equal to its spread over repeated images; "
                 "the dose factors scale the low-loss exposure with the core-loss ones. "
                 "--no-plural (single-scattering model) is not predicted: on this design its numbers are biased by "
                 "4-1500 sigma (validation/results/06_plan/dualeels_joint_bias.md).")
    elif inst.plural_scattering:
        joint = ("sreels fit --method bayes --no-plural: its model has single scattering only, while this "
                 "design's images have plural scattering" + (f" (median t/lambda {tl:.2f} in the low-loss window)"
                                                             if tl is not None else "")
                 + (" and a low-loss window, which that fit does not use" if inst.lowloss_window else "")
                 + ". That fit leaves plural scattering out (it warns that its numbers are biased, c_Li most): the "
                 "sigma given is the spread of its estimates about their own mean over repeated images, not their "
                 "error about the truth; the bias is not predicted. On the default design it dwarfs sigma: the MAP of "
                 "its noise-free image is off by 4-1500 sigma (R_OO change +14 pm against 0.06 pm, electrode width "
                 "-380 nm, c_Li max +12.5; validation/results/06_plan/dualeels_joint_bias.md). "
                 + ("sreels fit --method bayes on this DualEELS design uses its plural model by default (the model "
                    "convolved with each row's low loss; its MAP pulls are within 0 +- 0.3 and sd 0.8-1.3 at t/lambda "
                    "0.3-0.9, validation/16): its sigma is not what the plan predicts." if inst.lowloss_window else
                    "Without a low-loss window the Bayesian path has no plural model."))
    else:
        joint = ("sreels fit --method bayes: its model (single scattering) is the one that made this design's images; "
                 "sigma is the spread of its estimates over repeated images")
    fast = ("sreels fit --method fast" + (": it models plural scattering from each row's low loss (DualEELS)"
                                          if inst.plural_scattering and inst.lowloss_window else
                                          ": plural scattering without a low-loss window is not removed (flagged rows)"
                                          if inst.plural_scattering else "")
            + "; per-row sigma = the errors it reports on the noise-free image (checked against its spread over "
            "seeded images: validation/results/06_plan, ratios.md and fast_dualeels.md)")
    if inst.lowloss_window and jac_plural is not False:
        short = ("sreels fit --method bayes, its plural model (the DualEELS default" +
                 (f", t/lambda {tl:.2f}" if tl is not None else "") + ")")
    elif inst.plural_scattering:
        short = ("sreels fit --method bayes --no-plural (single-scattering model; these images have plural "
                 "scattering" + (f", t/lambda {tl:.2f}" if tl is not None else "") + "): sigma = spread about its own "
                 "biased mean, the bias not predicted (on the default design 4-1500 sigma)")
    else:
        short = "sreels fit --method bayes"
    return {"joint": joint, "joint_short": short, "fast": fast,
            "joint_model": "plural" if inst.lowloss_window and jac_plural is not False else "single scattering",
            "plural_scattering_in_images": bool(inst.plural_scattering),
            "lowloss_window": bool(inst.lowloss_window), "median_t_over_lambda": tl}


def _derived_at(jac, grads, scale=1.0, rfactor=1.0) -> dict:
    s = joint_sigmas(jac, {k: grads[f"derived:{k}"] for k in DERIVED}, scale, rfactor)
    return {k: s[k] for k in DERIVED}


def _vary_point(jac_base, d_base: Design, key: str, value: float, rows_nm, targets: dict, shares: dict):
    """(sigmas, dose factors for the targets, min electrons) of one varied design."""
    if dz.VARY[key][3]:  # cheap: same Jacobian, other exposures / readout
        # one factor per exposure (the plural model's low loss last): the dose factor and a split of the core-loss
        # time leave the low loss's (design.scale_dose)
        jac, scale, rf = jac_base, np.ones(jac_base.n_exposures), 1.0
        if key == "dose":
            scale = dose_scaled(jac, scale, value)
        elif key == "exposure_split":
            dv = dz.set_exposure_split(d_base, value)
            scale[:len(d_base.instrument.windows)] = [a.exposure_s / b.exposure_s for a, b in
                                                      zip(dv.instrument.windows, d_base.instrument.windows)]
        elif key == "gain_counts_per_e":
            rf = readout_factor(jac, gain=value)
        else:
            rf = readout_factor(jac, readout_counts=value)
    else:
        jac = joint_jacobian(dz.apply(d_base, key, value), plural=jac_base.plural is not None)
        scale, rf = np.ones(jac.n_exposures), 1.0
    grads = gradients(jac, rows_nm)
    sig = joint_sigmas(jac, grads, scale, rf)
    need = {k: solve_scale(jac, grads[f"derived:{k}"], t, scale, rf, sigma1=sig[f"derived:{k}"],
                           share=shares.get(k, 0.0))[0]
            for k, t in targets.items()}
    return sig, need, min_electrons(jac, scale)


def make_plan(d: Design, targets: dict | None = None, vary: dict | None = None, rows_nm=None,
              critical_dose: float | None = None, slit_width_nm: float = 1000.0, vary_points: int = 5,
              fast: bool = True, figure: bool = False) -> dict:
    """Everything ``sreels plan`` writes, as a JSON-ready dict (plus ``_profiles`` and ``_dose_curve`` for the
    figure).  ``figure``: also ``_png``, the bytes of plan.png (:func:`.figures.plan_png`), drawn in a forked
    process (FAST_IN_PROCESS) that imports matplotlib from the start, beside this one's work.  ``rows_nm``: the
    rows whose sigmas are reported, each on the scan (None: :data:`DEFAULT_ROWS_NM` on it; :func:`rows_in_scan`)."""
    from ..resources import single_threaded_blas

    with single_threaded_blas():  # small matrix products: BLAS threads only spin on a busy machine
        return _make_plan(d, targets, vary, rows_nm, critical_dose, slit_width_nm, vary_points, fast, figure)


def _make_plan(d, targets, vary, rows_nm, critical_dose, slit_width_nm, vary_points, fast, figure=False):
    t0 = time.perf_counter()
    rows_nm, row_notes = rows_in_scan(d.scenario, rows_nm)
    targets = dict(targets or {})
    vary = dict(vary or {})
    if d.instrument.plural_scattering:
        note_ps = ("plural scattering is on in the instrument: the expected electrons (the noise) include it; the "
                   "joint fit's Jacobian is that of its own model")
    else:
        note_ps = None
    # On two cores: the fast path's process (its imports: lmfit, ~2 s) and plan.png's (matplotlib's import and a
    # warm-up drawing) start now, on the core this process leaves idle while it simulates; the fast path's
    # prediction (its fit of the noise-free image) as soon as the noise-free simulation exists, beside the joint
    # fit's Jacobian and algebra: both in forked processes (FAST_IN_PROCESS), else in a thread and here
    early = fig_job = None
    fast_jobs = []

    def start_fast(sim):
        if early is not None:
            early.give(sim)
        fast_jobs.append(early or _start_fast(sim, rows_nm))

    try:   # the children are started inside: a signal while the second is forked still ends the first
        early = _start_fast(None, rows_nm, give=False) if fast and _fork_context() is not None else None
        fig_job = _start_figure() if figure else None
        jac = joint_jacobian(d, on_simulation=start_fast if fast else None)
        t_jac = time.perf_counter() - t0
        out = _joint_part(d, jac, t0, t_jac, targets, vary, rows_nm, critical_dose, slit_width_nm, vary_points,
                          note_ps, fast_jobs[0] if fast_jobs else None)
        out["rows_nm"] = list(rows_nm)
        out["notes"] += row_notes
        if figure:
            if fig_job is not None:
                out["_png"] = fig_job.draw(out)
            else:
                from .figures import plan_png
                out["_png"] = plan_png(out)
        out["seconds"]["total"] = time.perf_counter() - t0
        return out
    finally:
        for job in {id(j): j for j in fast_jobs + [early, fig_job] if j is not None}.values():
            job.close()


#: run the fast path's prediction and plan.png in forked processes instead of a thread and this process: the
#: thread shares the GIL with the joint part (both are Python-heavy), the processes run on the second core.
#: Measured cold: benchmarks/README.md (bench_plan.py; --fast-in-thread for the other mode).
FAST_IN_PROCESS = True


def _fork_context():
    import multiprocessing as mp

    return mp.get_context("fork") if FAST_IN_PROCESS and "fork" in mp.get_all_start_methods() else None


def _start_fast(sim, rows_nm, give: bool = True):
    """The fast path's prediction on ``sim`` in a forked process, or a thread.  ``give=False``: the process only,
    started before the simulation exists (it imports what it needs meanwhile); :meth:`_ForkedFast.give` hands it."""
    ctx = _fork_context()
    if ctx is None:
        return _ThreadFast(sim, rows_nm)
    job = _ForkedFast(ctx, rows_nm)
    if give:
        job.give(sim)
    return job


def _start_figure():
    """The forked process that draws plan.png, or None (then it is drawn here)."""
    ctx = _fork_context()
    return _ForkedFigure(ctx) if ctx is not None else None


class _ThreadFast:
    def __init__(self, sim, rows_nm):
        self._pool = ThreadPoolExecutor(1)
        self._job = self._pool.submit(fast_prediction, sim, rows_nm)

    def result(self):
        return self._job.result()

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


#: niceness the forked children add to their own: on two cores the planning process (the longest chain) keeps one
#: core to itself and the two children share the other
CHILD_NICENESS = 10


#: seconds a forked child has to end after its answer or SIGTERM before it is killed: one forked while another
#: thread of the parent held a lock can block before it unblocks SIGTERM (:func:`_in_child`), and its parent then
#: waited for it for ever (a test of the signals hung twice in ~20 runs on a loaded 2-core machine)
CHILD_EXIT_S = 10.0

#: the signals that end a forked child at once and silently (:func:`_in_child`)
_CHILD_SIGNALS = ("SIGINT", "SIGTERM")


def _in_child(target, conn, other, args):
    """A forked child's life.  SIGTERM (the parent's ``terminate``, :meth:`_ForkedJob.close`) and SIGINT (Ctrl-C
    reaches the whole process group) end it at once and silently: the handlers forked from the parent
    (:mod:`sreels.signals`) would raise ``Interrupted`` here, which multiprocessing prints as a traceback of ~30
    lines before the parent's one line.  The parent blocks both signals around the fork (:func:`_signals_blocked`),
    so none arrives before the default actions are in place.  A parent that has gone (its pipe closed) gets no
    answer; any other failure goes to the parent, which raises it as its one-line error."""
    import os
    import signal

    for name in _CHILD_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    _unblock_signals()
    other.close()   # the parent's end: the child sees EOF when the parent closes it
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    try:
        target(conn, *args)
    except (BrokenPipeError, ConnectionResetError):   # the parent has gone: nobody to answer
        return
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        with contextlib.suppress(OSError):
            conn.send((False, RuntimeError(f"the forked process failed: {type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def _child_signals():
    import signal

    return {getattr(signal, name) for name in _CHILD_SIGNALS}


@contextlib.contextmanager
def _signals_blocked():
    """SIGINT and SIGTERM held back in this thread while a child is forked (the child inherits the mask and unblocks
    once its own handlers are set, :func:`_in_child`); one that arrives meanwhile is delivered here afterwards."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _child_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _unblock_signals():
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _child_signals())


def _recv_simulation(conn):
    """The simulation :meth:`_ForkedFast.give` sent: the pickle stream, then its out-of-band array buffers (writable,
    as the arrays were)."""
    import pickle

    n, head = pickle.loads(conn.recv_bytes())
    return pickle.loads(head, buffers=[bytearray(conn.recv_bytes()) for _ in range(n)])


def _fast_child(conn, rows_nm):
    import importlib
    import sys

    # lmfit imports pandas where it can (emcee's chains; pandas.isnull where np.isnan does for arrays): not in this
    # process (0.4 s of its imports; the prediction is the in-process one bit for bit, tests/plan)
    sys.modules.setdefault("pandas", None)
    for mod in ("lmfit", "sreels.inference.fast", "sreels.inference.derived"):   # before the simulation arrives
        with contextlib.suppress(ImportError):
            importlib.import_module(mod)
    try:
        sim = _recv_simulation(conn)
    except EOFError:  # the parent wants no prediction
        return
    try:
        out = (True, fast_prediction(sim, rows_nm))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        out = (False, RuntimeError(f"the fast path's prediction failed: {type(exc).__name__}: {exc}"))
    conn.send(out)


def _figure_child(conn):
    try:
        from . import figures   # matplotlib's import, then a drawing of the same texts: fonts and text metrics
        figures.warm_up()       # cached while the parent computes the plan
        plan = conn.recv()
        res = (True, figures.plan_png(plan))
    except EOFError:  # the parent wants no figure
        return
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
        res = (False, RuntimeError(f"plan.png failed: {type(exc).__name__}: {exc}"))
    conn.send(res)


class _ForkedJob:
    """A forked child (it inherits this process's objects: nothing pickled on the way in) that answers through a
    pipe (pickled, small); ``close`` ends it if its answer was not taken."""

    def __init__(self, ctx, target, args=()):
        import warnings

        self._conn, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(target=_in_child, args=(target, child, self._conn, args), daemon=True)
        self._done = False
        try:
            with warnings.catch_warnings():   # Python >= 3.12 warns on fork() beside BLAS threads; the child runs
                warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)  # numpy only
                with _signals_blocked():
                    self._proc.start()
        except BaseException:   # a signal held back during the fork is raised here, once the child exists
            if self._proc.pid is not None:
                _ForkedJob.close(self)   # this class's: a subclass's own parts do not exist yet
            else:
                self._conn.close()
            raise
        finally:
            child.close()

    def _recv(self, what):
        try:
            ok, val = self._conn.recv()
        except EOFError:
            self._done = True
            raise RuntimeError(f"the {self.what} process ended without {what} (exit code "
                               f"{self._proc.exitcode})") from None
        # an exception here (a signal while waiting) leaves the child to close(), which ends it: it may be blocked
        # sending an answer (plan.png's bytes) larger than the pipe holds, which nobody would read
        self._done = True
        if not ok:
            raise val
        return val

    def close(self):
        if not self._done:   # the joint part failed: the answer is not wanted
            self._proc.terminate()
        self._proc.join(CHILD_EXIT_S)
        if self._proc.exitcode is None:   # a child that never unblocked SIGTERM (stuck before :func:`_in_child`)
            self._proc.kill()
            self._proc.join()
        self._proc.close()
        self._conn.close()


class _ForkedFast(_ForkedJob):
    """:func:`fast_prediction` in a forked child, which imports lmfit and the fast path first, then takes the
    simulation from the pipe (:meth:`give`); the result (a small dict of floats and three per-row arrays) comes
    back through the pipe."""
    what = "fast path's"

    def __init__(self, ctx, rows_nm):
        super().__init__(ctx, _fast_child, (rows_nm,))
        self._sender = None

    def give(self, sim):
        """Hand the noise-free simulation to the child through the pipe from a thread: the pipe takes it only as
        fast as the child reads, and the child reads once its imports are done (measured: the send in this thread
        waited 3.1 s at load 4).  Pickled here with its arrays out of band (protocol 5: a small stream, ~35 MB of
        array buffers written from the thread as they are, without the GIL; pickled whole in the thread, the
        planning process waited ~0.5 s for it at load 5); :func:`_recv_simulation` reads it."""
        import pickle
        import threading

        bufs = []
        head = pickle.dumps(sim, protocol=5, buffer_callback=bufs.append)

        def send():
            with contextlib.suppress(OSError):   # a child that has ended: its error is what result() reads
                self._conn.send_bytes(pickle.dumps((len(bufs), head)))
                for b in bufs:
                    self._conn.send_bytes(b.raw())
        self._sender = threading.Thread(target=send, daemon=True)
        self._sender.start()

    def result(self):
        if self._sender is not None:
            self._sender.join()
        return self._recv("a result")

    def close(self):
        super().close()   # ends the child if its answer was not taken: a send still under way then fails
        if self._sender is not None:
            self._sender.join()


class _ForkedFigure(_ForkedJob):
    """plan.png in a forked child that imports matplotlib and warms its fonts at once, then waits for the plan
    (:meth:`draw` sends it and returns the PNG's bytes)."""
    what = "plan.png's"

    def __init__(self, ctx):
        super().__init__(ctx, _figure_child)

    def draw(self, plan) -> bytes:
        # a child that has already ended cannot take the plan: its error (or its exit code) is what _recv reads
        with contextlib.suppress(OSError):
            self._conn.send({k: v for k, v in plan.items() if k != "_png"})
        return self._recv("plan.png")


def _joint_part(d, jac, t0, t_jac, targets, vary, rows_nm, critical_dose, slit_width_nm, vary_points, note_ps,
                fast_job):
    grads = gradients(jac, rows_nm)
    cov, cov_rep = covariances(jac)
    sig = sigmas_cov(cov, grads)
    rep = sigmas_cov(cov_rep, grads)
    nmin = min_electrons(jac)
    dose = dose_e_per_nm2(d, slit_width_nm)
    out = {
        "method": ("joint fit (its plural model: the design is DualEELS): Jacobians of that model at the design's "
                   "truth through the fit's own DualEELS preparation, every per-row amplitude profiled out (the extra "
                   "background columns with flat priors, the Li-K tail's noise directions with their N(0,1) priors), "
                   "the tail's remaining noise in the weights; derived_sigma = derived_sigma_reported_by_the_fit = F^-1 "
                   "(the readout's correlation between bins is left out: 0.1 % of sigma on the single-scattering "
                   "default); exposures scaled per window, the tail's noise with the core-loss exposure squared over "
                   "the low loss's (sreels.plan.plural); fast path: its reported errors on the noise-free image"
                   if jac.plural is not None else
                   "joint fit: Jacobians of its model at the design's truth, amplitudes profiled out, Gaussian "
                   "priors included; derived_sigma = spread over repeated images (sandwich F^-1 H F^-1 with the "
                   "detector's noise: Poisson + gain + readout + quantisation, the readout correlated between bins by "
                   "the PSF whitening), derived_sigma_reported_by_the_fit = F^-1 of its likelihood (which keeps only "
                   "the diagonal of that correlation); fast path: its reported errors on the noise-free image"),
        "design": {"scenario": dataclasses.asdict(d.scenario), "instrument": dataclasses.asdict(d.instrument),
                   "detector": dataclasses.asdict(d.detector)},
        "predicts": predicted_fits(d, jac.simulation, jac.plural is not None),
        "parameters": list(jac.names),
        "joint": {"derived_sigma": {k: sig[f"derived:{k}"] for k in DERIVED},
                  "derived_sigma_reported_by_the_fit": {k: rep[f"derived:{k}"] for k in DERIVED},
                  "rows_sigma": {f"{y:g}": {k: sig[f"{k}@{y:g}"] for k in ("li_rel", "ti3_fraction", "r_oo_nm")}
                                 for y in rows_nm},
                  "min_electrons_per_bin": nmin, "gaussian_valid": bool(nmin >= GAUSSIAN_MIN_ELECTRONS)},
        "exposure_s": d.exposures_s(),
        "dose_e_per_nm2": dose,
        "slit_width_nm": slit_width_nm,
        "slit_width_note": "illuminated width along x per row (not part of the scenario): dose = electrons per row "
                           "/ (row_nm x slit_width_nm)",
        "notes": [n for n in (note_ps,) if n],
    }
    # targets
    tres, shares = {}, {}
    for k, t in targets.items():
        s, got, it = solve_scale(jac, grads[f"derived:{k}"], t, sigma1=sig[f"derived:{k}"])
        shares[k] = readout_share(sig[f"derived:{k}"], s, got)   # first guess of this target at the --vary points
        entry = {"sigma_target": t, "dose_factor": s, "sigma_reached": got, "iterations": it}
        if np.isfinite(s):
            dt = dz.scale_dose(d, s)
            entry.update(exposure_s=dt.exposures_s(), dose_e_per_nm2=dose_e_per_nm2(dt, slit_width_nm),
                         min_electrons_per_bin=min_electrons(jac, s),
                         shot_noise_limit_factor=(sig[f"derived:{k}"] / t) ** 2)
            entry["gaussian_valid"] = bool(entry["min_electrons_per_bin"] >= GAUSSIAN_MIN_ELECTRONS)
            if critical_dose is not None:
                entry["beyond_critical_dose"] = bool(entry["dose_e_per_nm2"]["total"] > critical_dose)
        else:
            entry["reason"] = (f"not reached for an exposure factor in [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}]"
                               f" (sigma there {got:.3g})")
        tres[k] = entry
    out["targets"] = tres
    if critical_dose is not None:   # the low loss's dose does not scale with the dose factor (design.scale_dose)
        ll = dose.get("lowloss", 0.0)
        f = max(critical_dose - ll, 0.0) / (dose["total"] - ll)
        out["critical_dose"] = {"e_per_nm2": critical_dose, "source": "given by the user (--critical-dose)",
                                "dose_factor": f, "design_exceeds_it": bool(dose["total"] > critical_dose)}
        if f > 0:
            out["critical_dose"].update(exposure_s=dz.scale_dose(d, f).exposures_s(),
                                        derived_sigma_at_critical=_derived_at(jac, grads, f))
        else:   # no core-loss exposure fits under it
            out["critical_dose"].update(exposure_s=None, derived_sigma_at_critical={k: float("nan") for k in DERIVED},
                                        note="the low-loss window alone gives this dose: no core-loss exposure fits "
                                             "under it")
    # joint per-row profile for the figure
    yall = jac.y_nm
    gall = gradients(jac, yall)
    sall = sigmas_cov(cov, {k: v for k, v in gall.items() if not k.startswith("derived")})
    out.setdefault("_profiles", {})["joint"] = {
        "y_nm": yall, **{f"{k}_err": np.array([sall[f"{k}@{y:g}"] for y in yall]) for k in ("li_rel", "r_oo_nm")}}
    # the sigma-dose curve of the base design
    marks = [t["dose_factor"] for t in tres.values() if np.isfinite(t["dose_factor"])]
    marks += [out["critical_dose"]["dose_factor"]] if critical_dose is not None else []
    marks = [m for m in marks if m > 0]
    f = np.geomspace(min([0.01] + [m / 2 for m in marks]), max([100.0] + [m * 2 for m in marks]), 5)
    at1 = {k: sig[f"derived:{k}"] for k in DERIVED}   # the design itself (x = 1): computed above
    curve = [at1 if abs(x - 1.0) < 1e-12 else _derived_at(jac, grads, x) for x in f]
    out["_dose_curve"] = {"factor": f, **{k: np.array([c[k] for c in curve]) for k in DERIVED}}
    # trade-offs
    vres = {}
    for key, (lo, hi) in vary.items():
        vals = vary_values(key, lo, hi, vary_points)
        rows = []
        for v in vals:
            s, need, nm = _vary_point(jac, d, key, float(v), rows_nm, targets, shares)
            rows.append({"value": float(v), **{f"sigma:{k}": s[f"derived:{k}"] for k in DERIVED},
                         **{f"dose_factor_for:{k}": need[k] for k in need}, "min_electrons_per_bin": nm})
        vres[key] = {"what": dz.VARY[key][0], "unit": dz.VARY[key][1], "base_value": dz.base_value(d, key),
                     "rows": rows}
    out["vary"] = vres
    if fast_job is not None:
        fp = fast_job.result()
        out["_profiles"].update(fp.pop("profile"))
        out["fast"] = fp
    out["seconds"] = {"jacobian": t_jac, "total": time.perf_counter() - t0}
    return out
