"""``plan.png``: sigma against dose (targets and the critical dose marked), the per-row sigma of
both paths, and sigma against every ``--vary`` key (matplotlib through :mod:`sreels.figstyle`).
Labels in plain text (Unicode sub/superscripts, no mathtext: its parser cost ~0.1-0.2 s of a cold
``sreels plan``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..figstyle import DISTANCE_LABEL, figure, save
from .planner import GAUSSIAN_MIN_ELECTRONS, NUMBERS

_C = dict(zip([n[0] for n in NUMBERS], ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e", "#17becf"]))


def _plain_log_ticks(ax):
    """Log axes without minor ticks and with plain tick labels ("0.01", "1e+03"), not mathtext: the
    default minor ticks and 10^x labels made ~2/3 of the figure's drawing time (profiled)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    for axis, scale, lim in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()), (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
        if scale == "log":
            axis.set_minor_locator(NullLocator())
            span = max(lim) / max(min(lim), 1e-300)
            if axis is ax.yaxis and span < 30:   # < 1.5 decades: 1-2-5 ticks; under half a decade evenly spaced
                axis.set_major_locator(LogLocator(10.0, subs=(1.0, 2.0, 5.0)) if span >= 3 else MaxNLocator(4))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))


def plan_figure(plan: dict, path: Path) -> Path:
    """Draw plan.png to ``path`` (atomically)."""
    return save(_draw(plan), path, tight=False)


def plan_png(plan: dict) -> bytes:
    """The bytes of plan.png (as :func:`plan_figure` writes it)."""
    buf = io.BytesIO()
    save(_draw(plan), buf, tight=False)
    return buf.getvalue()


def example_plan(rows: int = 330) -> dict:
    """A plan with the figure's fields and made-up numbers (:func:`warm_up`, tests)."""
    y = np.linspace(-40.0, 1800.0, rows)
    curve = np.array([0.01, 0.1, 1.0, 10.0, 100.0])
    return {"joint": {"derived_sigma": {k: 1.0 for k, *_ in NUMBERS}}, "targets": {}, "vary": {},
            "_dose_curve": {"factor": curve, **{k: curve ** -0.5 for k, *_ in NUMBERS}},
            "_profiles": {"joint": {"y_nm": y, "li_rel_err": np.exp(-y / 200.0) * 1e-2, "r_oo_nm_err": np.full(rows, 1e-5)},
                          "y_nm": y, "li_rel_err": np.full(rows, 0.08), "r_oo_nm_err": np.full(rows, 3e-4),
                          "ti3_fraction_err": np.full(rows, 4e-3)}}


def warm_up() -> None:
    """Draw :func:`example_plan` once and discard it: matplotlib's fonts, and the metrics of the texts every
    plan.png has, are then cached (sreels plan's figure process does it while the plan is computed)."""
    plan_png(example_plan())


def _draw(plan: dict):
    vary = plan.get("vary", {})
    n = 2 + len(vary)
    ncol = 2 if n > 1 else 1
    nrow = -(-n // ncol)
    fig, axs = figure(nrow, ncol, figsize=(4.2 * ncol, 3.1 * nrow), squeeze=False)
    axs = axs.ravel()
    for ax in axs[n:]:
        ax.set_visible(False)
    targets = plan.get("targets", {})
    base = plan["joint"]["derived_sigma"]

    def ref(k):  # each number relative to its target if given, else to the design's own sigma
        return targets[k]["sigma_target"] if k in targets else base[k]

    ax = axs[0]
    c = plan["_dose_curve"]
    for k, lab, _, _ in NUMBERS:
        ax.loglog(c["factor"], np.asarray(c[k]) / ref(k), color=_C[k], label=lab + (" (/target)" if k in targets else ""))
        if k in targets and np.isfinite(targets[k]["dose_factor"]):
            ax.plot(targets[k]["dose_factor"], 1.0, "o", color=_C[k], ms=4)
    if targets:
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--", label="target")
    nmin = plan["joint"].get("min_electrons_per_bin")
    if nmin and np.isfinite(nmin) and nmin > 0:   # the expected electrons scale with the dose
        low = GAUSSIAN_MIN_ELECTRONS / nmin
        if low > np.min(c["factor"]):
            ax.axvspan(np.min(c["factor"]), min(low, np.max(c["factor"])), color="0.9", lw=0, zorder=0,
                       label=f"< {GAUSSIAN_MIN_ELECTRONS:g} e per bin: Gaussian approx.")
    cd = plan.get("critical_dose")
    if cd and cd["dose_factor"] > 0:
        ax.axvline(cd["dose_factor"], color="k", lw=1.0, ls=":", label=f"critical dose {cd['e_per_nm2']:.3g} e/nm²")
    ax.set_xlabel("dose (× the design's core-loss exposures)")
    ax.set_ylabel("predicted σ / target (or / design)")
    ax.set_title("joint fit: σ against dose", y=1.0)  # y given: no search for a free place (~0.3 s)
    ax.legend(fontsize=6, ncol=2)
    ax = axs[1]
    pj = plan["_profiles"]["joint"]
    ax.semilogy(pj["y_nm"], pj["li_rel_err"], color="#1f77b4", label="c_Li, joint fit")
    ax.semilogy(pj["y_nm"], np.asarray(pj["r_oo_nm_err"]) * 1e3, color="#ff7f0e", label="R_OO (pm), joint fit")
    if "li_rel_err" in plan["_profiles"]:
        pf = plan["_profiles"]
        ax.semilogy(pf["y_nm"], pf["li_rel_err"], color="#1f77b4", ls="--", label="c_Li, fast path (per row)")
        ax.semilogy(pf["y_nm"], np.asarray(pf["r_oo_nm_err"]) * 1e3, color="#ff7f0e", ls="--",
                    label="R_OO (pm), fast path")
        ax.semilogy(pf["y_nm"], pf["ti3_fraction_err"], color="#d62728", ls="--", label="Ti³⁺ fraction, fast path")
    ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-5))  # the joint fit's parent c_Li is fixed by its model form
    ax.set_xlabel(DISTANCE_LABEL)
    ax.set_ylabel("predicted σ per row")
    ax.set_title("per-row σ at the design's dose", y=1.0)
    ax.legend(fontsize=6)
    for ax, (key, v) in zip(axs[2:], vary.items()):
        x = [r["value"] for r in v["rows"]]
        for k, lab, _, _ in NUMBERS:
            ax.plot(x, [r[f"sigma:{k}"] / ref(k) for r in v["rows"]], "o-", ms=3, color=_C[k], label=lab)
        ax.set_yscale("log")
        if max(x) / max(min(x), 1e-300) >= 4 and min(x) > 0:
            ax.set_xscale("log")
            if len(x) <= 6:   # a log axis over less than a decade or two has too few labelled ticks
                ax.set_xticks(x)
        if targets:
            ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        if np.isfinite(v["base_value"]):
            ax.axvline(v["base_value"], color="0.6", lw=0.8, ls=":")
        ax.set_xlabel(f"{key} ({v['unit']})" if v["unit"] else key)
        ax.set_ylabel("σ / target (or / design)")
        ax.set_title(v["what"], fontsize=7.5, y=1.0)
    if vary:
        axs[2].legend(fontsize=6, ncol=2)
    for ax in axs[:n]:
        _plain_log_ticks(ax)
    # a fixed layout (in inches, whatever the number of panels) instead of tight_layout and a tight bounding
    # box, each of which draws every text once more (~1-2 s of the plan's time)
    w, h = fig.get_size_inches()
    left, right, bottom, top, wgap, hgap = 0.75, 0.15, 0.55, 0.35, 0.8, 0.95   # inches
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wgap / ((w - left - right - (ncol - 1) * wgap) / ncol),
                        hspace=hgap / ((h - bottom - top - (nrow - 1) * hgap) / nrow))
    return fig
