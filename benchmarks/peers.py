"""Peer timings on a sreels simulation: exspy MLLS on Ti-L2,3, lmfit / curve_fit loops on O-K.

Import it from a benchmark that runs in the peers venv (see benchmarks/README.md)::

    from peers import load_simulation, time_exspy_ti_mlls, time_lmfit_ok_loop, time_curve_fit_ok_loop
    data = load_simulation(sim)              # a sreels Simulation, a `sreels simulate --out` DIR,
                                             # or {window: (counts (rows, ch), energy_ev (ch,))}
    ex = time_exspy_ti_mlls(data, repeats=3) # dict per variant: median_ms, ms_per_row, accuracy...
    lm = time_lmfit_ok_loop(data, repeats=1)
    cf = time_curve_fit_ok_loop(data, repeats=3)

or run it alone (prints JSON)::

    python benchmarks/peers.py [--dir DIR | --seed N] [--repeats N] [--rows N]

Every function builds its model and start values first (untimed) and times only the fit.
Each returns a plain dict (JSON-serialisable) with ``median_ms``, ``ms_per_row``, ``rows``,
all repeat times, an ``accuracy`` block against the truth when the input carries it (a sanity
check that the peer solved the task, not a contest), the fairness ``choices`` and any warnings.

Fairness choices (also in the README):
- exspy ``ScalableFixedPattern``: ``xscale``/``shift`` fixed (its default ``interpolate=True``
  frees them, which makes the peer slow *and* wrong); references are the sreels per-atom
  Ti4+/Ti3+ shapes convolved with the resolution, on the data's axis.
- exspy nonlinear case: power law A and r free per row + 2 yscales (4 free), Levenberg-Marquardt
  (``multifit()`` default); start values per row from the two-area power-law estimate and a
  linear solve of the references (untimed, favourable to the peer).
- exspy linear case: r fixed to one value (median of the per-row estimates) for all rows, so that
  ``multifit(optimizer='lstsq')`` stays vectorised.
- O-K: the power law is fitted (closed form, log-log) in a pre-edge window and subtracted before
  timing; the timed fit is StepModel(arctan, width fixed) + 2 Gaussians = 8 free parameters per
  row. lmfit with bounds (as a user writes it); curve_fit with 'lm', no bounds (its cheapest path);
  both start every row from the fit of the mean spectrum (untimed).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchutil as bu  # noqa: E402

#: Ti-L2,3 task (eV): pre-edge for the start values, fit range of the MLLS.
TI_PRE_EV = (440.0, 453.0)
TI_FIT_EV = (440.0, 480.0)
#: O-K task (eV): pre-edge of the power law, peak-fit range, step width (fixed).
OK_PRE_EV = (505.0, 527.0)
OK_FIT_EV = (534.0, 585.0)
OK_STEP_WIDTH_EV = 1.2


# --------------------------------------------------------------------------- input
@dataclass
class SimData:
    """Counts (rows, channels) float64 and energy axes (eV) per window, plus optional truth."""

    windows: dict            # name -> (counts, energy_ev)
    truth: dict = field(default_factory=dict)   # column -> (rows,) array
    resolution_fwhm_ev: float = 0.5
    beam_energy_kev: float = 300.0
    collection_semiangle_mrad: float = 10.0
    source: str = ""

    def window_covering(self, lo, hi):
        for name, (c, e) in self.windows.items():
            if e[0] <= lo and hi <= e[-1]:
                return name, c, e
        raise ValueError(f"no window covers {lo}-{hi} eV; have "
                         f"{ {k: (float(e[0]), float(e[-1])) for k, (c, e) in self.windows.items()} }")

    @property
    def rows(self):
        return next(iter(self.windows.values()))[0].shape[0]


def load_simulation(sim_or_dir) -> SimData:
    """Accept a ``sreels`` Simulation, a ``sreels simulate --out`` folder, a SimData, or a dict
    ``{window: (counts, energy_ev)}``."""
    if isinstance(sim_or_dir, SimData):
        return sim_or_dir
    if isinstance(sim_or_dir, dict):
        return SimData({k: (np.asarray(c, float), np.asarray(e, float)) for k, (c, e) in sim_or_dir.items()},
                       source="arrays")
    if isinstance(sim_or_dir, (str, Path)):
        return _load_dir(Path(sim_or_dir))
    # a sreels.forward.simulate.Simulation
    sim = sim_or_dir
    wins = {k: (np.asarray(w.counts, dtype=np.float64), w.energy.energy_ev) for k, w in sim.windows.items()}
    ins = sim.config.instrument
    return SimData(wins, {k: np.asarray(v) for k, v in sim.truth_columns().items()},
                   ins.resolution_fwhm_ev, ins.beam_energy_kev, ins.collection_semiangle_mrad,
                   source=f"Simulation(noise_free={sim.noise_free}, rng={sim.rng_record})")


def _load_dir(d: Path) -> SimData:
    from rsciio.hspy import file_reader
    wins = {}
    for f in sorted(d.glob("*.hspy")):
        rec = file_reader(str(f))[0]
        sig = [a for a in rec["axes"] if not a.get("navigate", False)][-1]
        e = float(sig["offset"]) + float(sig["scale"]) * np.arange(int(sig["size"]))
        wins[f.stem] = (np.asarray(rec["data"], dtype=np.float64), e)
    if not wins:
        raise FileNotFoundError(f"no .hspy files in {d}")
    out = SimData(wins, source=str(d))
    if (d / "truth.csv").exists():
        import csv
        with open(d / "truth.csv") as fh:
            rows = list(csv.DictReader(fh))
        out.truth = {k: np.array([float(r[k]) if r[k] not in ("", "nan") else np.nan for r in rows])
                     for k in rows[0]}
    if (d / "scenario.toml").exists():
        try:
            import tomllib
        except ImportError:  # pragma: no cover
            import tomli as tomllib
        ins = tomllib.loads((d / "scenario.toml").read_text()).get("instrument", {})
        out.resolution_fwhm_ev = float(ins.get("resolution_fwhm_ev", out.resolution_fwhm_ev))
        out.beam_energy_kev = float(ins.get("beam_energy_kev", out.beam_energy_kev))
        out.collection_semiangle_mrad = float(ins.get("collection_semiangle_mrad",
                                                      out.collection_semiangle_mrad))
    return out


def _sl(e, lo, hi):
    return slice(int(np.searchsorted(e, lo)), int(np.searchsorted(e, hi, side="right")))


def powerlaw_closed_form(counts, e, lo, hi):
    """Per-row log-log regression I = A E^-r over [lo, hi] eV (vectorised; the start values)."""
    s = _sl(e, lo, hi)
    x = np.log(e[s])
    y = np.log(np.maximum(counts[:, s], 1.0))
    xc = x - x.mean()
    slope = (y @ xc) / (xc @ xc)
    icpt = y.mean(axis=1) - slope * x.mean()
    return np.exp(icpt), -slope


def ti_references(e, fwhm_ev, beam_energy_kev=300.0, beta_mrad=10.0):
    """sreels per-atom Ti4+ and Ti3+ L2,3 shapes convolved with a Gaussian resolution, on ``e``.

    Both are scaled by the same factor (Ti4+ peak = 1), so yscale3 / (yscale3 + yscale4) is the
    Ti3+ fraction."""
    from sreels.forward import edges as ed
    de = float(e[1] - e[0])
    pad = int(math.ceil(10 * fwhm_ev / de)) + 1
    ep = e[0] + de * np.arange(-pad, e.size + pad)
    beam = ed.Beam(beam_energy_kev, beta_mrad * 1e-3)
    s = fwhm_ev * ed.FWHM_TO_SIGMA
    k = np.exp(-0.5 * (de * np.arange(-pad, pad + 1) / s) ** 2)
    k /= k.sum()
    r4 = np.convolve(ed.ti4_l23(ep, beam), k, mode="same")[pad:-pad]
    r3 = np.convolve(ed.ti3_l23(ep, beam), k, mode="same")[pad:-pad]
    norm = r4.max()
    return r4 / norm, r3 / norm


def _truth_mask(data: SimData, key):
    t = data.truth
    if key not in t:
        return None
    m = np.isfinite(t[key])
    if "in_pt" in t:
        m &= t["in_pt"] == 0
    if "host_fraction" in t:
        m &= t["host_fraction"] > 0.5
    return m


def _rmse(est, truth, mask):
    d = (np.asarray(est, float) - truth)[mask]
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d**2))) if d.size else None


def _result(tool, variant, timing, rows, **kw):
    out = {"tool": tool, "variant": variant, "rows": rows, "median_ms": timing["median_ms"],
           "ms_per_row": timing["median_ms"] / rows, "min_ms": timing["min_ms"],
           "times_ms": timing["times_ms"], "warmup_ms": timing["warmup_ms"],
           "repeats": timing["repeats"], "warmup": timing["warmup"]}
    out.update(kw)
    return out


# ------------------------------------------------------------------ exspy Ti MLLS
def _exspy_ti_model(counts, e, r4, r3, data: SimData, r_mode):
    import hyperspy.api as hs
    from exspy.signals import EELSSpectrum
    s = EELSSpectrum(counts.copy())
    ax = s.axes_manager.signal_axes[0]
    ax.offset, ax.scale, ax.units, ax.name = float(e[0]), float(e[1] - e[0]), "eV", "Energy loss"
    s.set_microscope_parameters(beam_energy=data.beam_energy_kev, convergence_angle=1.0,
                                collection_angle=data.collection_semiangle_mrad)
    m = s.create_model(auto_background=True, auto_add_edges=False)
    pl = m[0]
    comps = []
    for name, ref in (("Ti4", r4), ("Ti3", r3)):
        rs = EELSSpectrum(ref.copy())         # binned like the data: yscale is in reference units
        rax = rs.axes_manager.signal_axes[0]
        rax.offset, rax.scale, rax.units = float(e[0]), float(e[1] - e[0]), "eV"
        c = hs.model.components1D.ScalableFixedPattern(rs, interpolate=True)
        c.name = name
        c.xscale.free = False                 # the pitfall: interpolate=True frees them
        c.shift.free = False
        comps.append(c)
    m.extend(comps)
    m.set_signal_range(*TI_FIT_EV)
    # start values (untimed): two-area power law per row, then a linear solve of the references
    pl.estimate_parameters(s, *TI_PRE_EV, only_current=False)
    A = pl.A.map["values"].copy()
    r = pl.r.map["values"].copy()
    sl = _sl(e, *TI_FIT_EV)
    scale = float(e[1] - e[0])
    bg = scale * A[:, None] * e[sl][None, :] ** (-r[:, None])
    Mref = np.column_stack([r4[sl], r3[sl]])
    y0, *_ = np.linalg.lstsq(Mref, (counts[:, sl] - bg).T, rcond=None)
    for c, v in zip(comps, y0):
        c.yscale.map["values"][:] = v
        c.yscale.map["is_set"][:] = True
    if r_mode == "fixed_const":
        rc = float(np.median(r))
        pl.r.map["values"][:] = rc
        pl.r.free = False
        pl.r.value = rc
        # A for the fixed r: match the pre-edge level (linear path finds it anyway)
    return m, pl, comps


def time_exspy_ti_mlls(sim_or_dir, repeats: int = 3, warmup: int | None = None,
                       variants=("lm_r_free", "lstsq_r_fixed"), rows: int | None = None) -> dict:
    """exspy ``EELSModel.multifit`` on the Ti-L2,3 MLLS (power law + Ti4+ + Ti3+ fixed patterns).

    variants: "lm_r_free" (A, r, 2 yscales free per row, Levenberg-Marquardt row loop) and
    "lstsq_r_fixed" (r one constant for all rows; linear, vectorised over rows).
    ``rows``: time only the first N rows (ms_per_row is what to compare)."""
    import exspy  # noqa: F401
    import hyperspy.api as hs  # noqa: F401
    bu.quiet_hyperspy()
    data = load_simulation(sim_or_dir)
    name, counts, e = data.window_covering(TI_PRE_EV[0], TI_FIT_EV[1])
    if rows:
        counts = counts[:rows]
    n = counts.shape[0]
    r4, r3 = ti_references(e, data.resolution_fwhm_ev, data.beam_energy_kev, data.collection_semiangle_mrad)
    results = {}
    for v in variants:
        msgs = []
        r_mode = {"lm_r_free": "free", "lstsq_r_fixed": "fixed_const"}[v]
        fit_kw = {} if v == "lm_r_free" else {"optimizer": "lstsq"}

        def setup():
            with bu.captured(msgs):
                return _exspy_ti_model(counts, e, r4, r3, data, r_mode)

        def run(state):
            with bu.captured(msgs):
                state[0].multifit(show_progressbar=False, **fit_kw)
            return state

        try:
            t0 = time.perf_counter()
            st = setup()
            build_ms = 1e3 * (time.perf_counter() - t0)
            nfree = sum(len([p for p in c.parameters if p.free]) for c in st[0])
            # the nonlinear row loop takes seconds: no warm-up call unless asked
            w = warmup if warmup is not None else (0 if v == "lm_r_free" else 1)
            tm = bu.time_calls(run, repeats, w, setup=setup)
            m, pl, (c4, c3) = tm["_last"]
            y4, y3 = c4.yscale.map["values"], c3.yscale.map["values"]
            f3 = y3 / (y3 + y4)
            acc = {"n_rows_compared": None, "ti3_fraction_rmse": None}
            mask = _truth_mask(data, "ti3_fraction")
            if mask is not None:
                mask = mask[:n]
                acc = {"n_rows_compared": int(mask.sum()),
                       "ti3_fraction_rmse": _rmse(f3, data.truth["ti3_fraction"][:n], mask)}
            results[v] = _result(
                "exspy", f"EELSModel.multifit({fit_kw or ''}) PowerLaw + 2 ScalableFixedPattern "
                f"(xscale/shift fixed), r {'free per row' if r_mode == 'free' else 'fixed const'}",
                tm, n, window=name, fit_range_ev=TI_FIT_EV, n_free_params=nfree,
                model_build_ms_untimed=build_ms, accuracy=acc,
                r_fixed=float(pl.r.value) if r_mode != "free" else None, warnings=msgs[:20])
        except Exception as exc:  # record, go on
            import traceback
            results[v] = {"tool": "exspy", "variant": v, "status": "failed",
                          "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:],
                          "warnings": msgs[:20]}
    return results


# ------------------------------------------------------------------ O-K peak fits
def _ok_task(data: SimData, rows=None):
    name, counts, e = data.window_covering(OK_PRE_EV[0], OK_FIT_EV[1])
    if rows:
        counts = counts[:rows]
    A, r = powerlaw_closed_form(counts, e, *OK_PRE_EV)
    s = _sl(e, *OK_FIT_EV)
    x = e[s].copy()
    Y = counts[:, s] - A[:, None] * x[None, :] ** (-r[:, None])
    return name, x, np.ascontiguousarray(Y)


def _lmfit_ok_model():
    import lmfit
    mod = (lmfit.models.StepModel(form="arctan", prefix="step_")
           + lmfit.models.GaussianModel(prefix="a_") + lmfit.models.GaussianModel(prefix="b_"))
    p = mod.make_params()
    p["step_center"].set(value=535.0, min=530.0, max=540.0)
    p["step_sigma"].set(value=OK_STEP_WIDTH_EV, vary=False)
    p["step_amplitude"].set(value=1000.0, min=0.0)
    p["a_center"].set(value=538.0, min=534.0, max=545.0)
    p["a_sigma"].set(value=1.3, min=0.3, max=6.0)
    p["a_amplitude"].set(value=5000.0, min=0.0)
    p["b_center"].set(value=563.0, min=550.0, max=575.0)
    p["b_sigma"].set(value=2.5, min=0.5, max=10.0)
    p["b_amplitude"].set(value=5000.0, min=0.0)
    return mod, p


def _ok_p0(data, rows):
    """Fit the mean background-subtracted spectrum once (untimed): common start values."""
    _, x, Y = _ok_task(data, rows)
    mod, p = _lmfit_ok_model()
    m = np.ones(Y.shape[0], bool)
    if "peak_b_ev" in data.truth:
        m = np.isfinite(data.truth["peak_b_ev"][:Y.shape[0]])
    res = mod.fit(Y[m].mean(axis=0), p, x=x)
    return res.params


def _ok_accuracy(data, centres_b, n):
    mask = _truth_mask(data, "peak_b_ev")
    if mask is None:
        return {"n_rows_compared": None, "peak_b_rmse_ev": None}
    mask = mask[:n]
    return {"n_rows_compared": int(mask.sum()),
            "peak_b_rmse_ev": _rmse(centres_b, data.truth["peak_b_ev"][:n], mask)}


def _row_loop(n, fit_row, msgs):
    """The peers' per-row loop: peak-b centre, failures and the time of every row's fit."""
    cb = np.full(n, np.nan)
    tr = np.zeros(n)
    nfail = 0
    with bu.captured(msgs):
        for k in range(n):
            t = time.perf_counter()
            try:
                cb[k], failed = fit_row(k)
                nfail += bool(failed)
            except Exception:
                nfail += 1
            tr[k] = time.perf_counter() - t
    return cb, nfail, tr


def time_lmfit_ok_loop(sim_or_dir, repeats: int = 1, warmup: int = 0, rows: int | None = None) -> dict:
    """lmfit ``Model.fit`` per row on the background-subtracted O-K: arctan step + peaks a, b."""
    data = load_simulation(sim_or_dir)
    name, x, Y = _ok_task(data, rows)
    n = Y.shape[0]
    mod, _ = _lmfit_ok_model()
    p0 = _ok_p0(data, rows)
    msgs = []

    def fit_row(k):
        res = mod.fit(Y[k], p0, x=x)
        return res.params["b_center"].value, not res.success

    def run(_):
        return _row_loop(n, fit_row, msgs)

    tm = bu.time_calls(run, repeats, warmup)
    cb, nfail, tr = tm["_last"]
    nfree = sum(p.vary for p in p0.values())
    return _result("lmfit", "Model(StepModel(arctan) + 2 GaussianModel).fit per row, leastsq, bounds",
                   tm, n, window=name, fit_range_ev=OK_FIT_EV, n_free_params=int(nfree),
                   channels=int(x.size), not_converged_rows=int(nfail),
                   accuracy=_ok_accuracy(data, cb, n), per_row=_per_row_stats(data, tr),
                   warnings=msgs[:20])


def _per_row_stats(data, tr):
    """Per-row fit times of the last repeat; rows without the edge (e.g. in the Pt collector,
    where a peak fit has nothing to find and can run to max_nfev) are reported apart."""
    n = tr.size
    edge = np.ones(n, bool)
    if "in_pt" in data.truth:
        edge = data.truth["in_pt"][:n] == 0
    if "host_fraction" in data.truth:
        edge &= data.truth["host_fraction"][:n] > 0
    return {"median_ms": 1e3 * float(np.median(tr)), "p90_ms": 1e3 * float(np.percentile(tr, 90)),
            "max_ms": 1e3 * float(tr.max()), "rows_with_edge": int(edge.sum()),
            "total_ms_rows_with_edge": 1e3 * float(tr[edge].sum()),
            "ms_per_row_rows_with_edge": 1e3 * float(tr[edge].mean()) if edge.any() else None,
            "total_ms_rows_without_edge": 1e3 * float(tr[~edge].sum())}


def _ok_numpy(x, sh, sc, aa, ac, as_, ba, bc, bs):
    """Same function as the lmfit composite (StepModel arctan + 2 area-normalised Gaussians)."""
    step = sh * (0.5 + np.arctan((x - sc) / OK_STEP_WIDTH_EV) / np.pi)
    ga = aa / (as_ * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((x - ac) / as_) ** 2)
    gb = ba / (bs * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((x - bc) / bs) ** 2)
    return step + ga + gb


def time_curve_fit_ok_loop(sim_or_dir, repeats: int = 3, warmup: int = 1, rows: int | None = None) -> dict:
    """``scipy.optimize.curve_fit`` (method 'lm', no bounds) per row, same 8-parameter O-K model."""
    from scipy.optimize import curve_fit
    data = load_simulation(sim_or_dir)
    name, x, Y = _ok_task(data, rows)
    n = Y.shape[0]
    p = _ok_p0(data, rows)
    P0 = [p[k].value for k in ("step_amplitude", "step_center", "a_amplitude", "a_center", "a_sigma",
                                "b_amplitude", "b_center", "b_sigma")]
    msgs = []

    def fit_row(k):
        popt, _ = curve_fit(_ok_numpy, x, Y[k], p0=P0, method="lm")
        return popt[6], False

    def run(_):
        return _row_loop(n, fit_row, msgs)

    tm = bu.time_calls(run, repeats, warmup)
    cb, nfail, tr = tm["_last"]
    return _result("scipy", "curve_fit(method='lm') per row, same 8-parameter model, no bounds",
                   tm, n, window=name, fit_range_ev=OK_FIT_EV, n_free_params=8, channels=int(x.size),
                   failed_rows=int(nfail), accuracy=_ok_accuracy(data, cb, n),
                   per_row=_per_row_stats(data, tr), warnings=msgs[:20])


def run_all(sim_or_dir, repeats: int = 3, rows: int | None = None, lmfit_repeats: int = 1) -> dict:
    """All peer timings on one input, as one dict."""
    data = load_simulation(sim_or_dir)
    return {
        "input": {"source": data.source, "rows": data.rows if not rows else min(rows, data.rows),
                  "windows": {k: {"shape": list(c.shape), "e_first_ev": float(e[0]), "e_last_ev": float(e[-1])}
                              for k, (c, e) in data.windows.items()}},
        "exspy_ti_mlls": time_exspy_ti_mlls(data, repeats=repeats, rows=rows),
        "lmfit_ok_loop": time_lmfit_ok_loop(data, repeats=lmfit_repeats, rows=rows),
        "curve_fit_ok_loop": time_curve_fit_ok_loop(data, repeats=repeats, rows=rows),
    }


def main(argv=None):
    import argparse
    import json
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", help="a `sreels simulate --out` folder (default: simulate in memory)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the in-memory simulation")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=None, help="time only the first N rows")
    args = ap.parse_args(argv)
    out = bu.reserve_stdout()
    t0 = time.perf_counter()
    if args.dir:
        src = args.dir
    else:
        from sreels.forward.simulate import simulate
        src = simulate(rng=args.seed)
    res = {"benchmark": "peers", "env": bu.environment(["hyperspy", "exspy", "lmfit", "pyEELSMODEL"])}
    res.update(run_all(src, repeats=args.repeats, rows=args.rows))
    res["wall_s"] = time.perf_counter() - t0
    out.write(json.dumps(bu.strip_private(res), indent=1, default=bu.json_default) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
