"""Figures of the calibration (matplotlib through :mod:`sreels.figstyle`: one style, Agg
backend, atomic writes)."""

from __future__ import annotations

import numpy as np

from ..figstyle import plt, save, styled
from .resonance import C_EV_NM2


@styled
def calibration_figure(result, path, extra=None, title="dE R^2 = C calibration"):
    """dE vs R with the fitted C/R^2 curve, the study's 2.820 and residuals; ``extra``
    is a list of (name, dE, dE_err) for measured spectra without a structure."""
    pts = result.points
    r = np.array([p.r_nm for p in pts])
    de = np.array([p.delta_e_ev for p in pts])
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(6.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    out = np.array([p.name in result.outliers for p in pts])
    for sel, fmt, lab in ((~out, "o", "measured spectra"), (out, "s", "outliers (|pull| > 3)")):
        if sel.any():
            ax.errorbar(r[sel], de[sel], xerr=np.array([p.r_err_nm for p in pts])[sel],
                        yerr=np.array([p.delta_e_err_ev for p in pts])[sel], fmt=fmt, capsize=3, label=lab,
                        color="C0" if fmt == "o" else "C3")
    groups = {}  # spectra of one structure (same R, e.g. SrTiO3 from three instruments) get one label
    for p in pts:
        groups.setdefault(round(p.r_nm, 4), []).append(p)
    for g in groups.values():
        top = max(g, key=lambda p: p.delta_e_ev)
        if len(g) == 1:
            ax.annotate(top.name, (top.r_nm, top.delta_e_ev), fontsize=7, xytext=(4, 4), textcoords="offset points")
        else:
            ax.annotate(f"{top.name.split(' (')[0]} ({len(g)} spectra)", (top.r_nm, top.delta_e_ev), fontsize=7,
                        xytext=(-4, 4), textcoords="offset points", ha="right")
    rr = np.linspace(min(r.min(), 0.26) - 0.005, max(r.max(), 0.31) + 0.005, 200)
    k = result.k_ev or 0.0
    ax.plot(rr, result.c_ev_nm2 / rr**2 + k, "-",
            label=f"fit ({result.model}): C = {result.c_ev_nm2:.3f} ± {result.c_err_ev_nm2:.3f} eV nm²")
    ax.plot(rr, C_EV_NM2 / rr**2, "--", label="study: C = 2.820 eV nm²")
    clean = None
    if out.any() and (~out).sum() >= 2:
        from ..errors import SreelsInputError
        from .calibration import fit_c
        try:
            clean = fit_c([p for p, o in zip(pts, out) if not o], result.model, leave_one_out=False)
        except SreelsInputError:  # e.g. the offset model left with a single R: no second curve
            clean = None
    if clean is not None:
        ax.plot(rr, clean.c_ev_nm2 / rr**2 + (clean.k_ev or 0.0), ":", color="C1",
                label=f"without outliers: C = {clean.c_ev_nm2:.3f} ± {clean.c_err_ev_nm2:.3f} eV nm²")
    for name, d, s in extra or []:
        ax.axhline(d, color="0.6", lw=0.8, ls=":")
        ax.annotate(f"{name} (no structure)", (rr[0], d), fontsize=7, color="0.4")
    ax.set_ylabel("ΔE = E_b − E_th (eV)")
    ax.set_title(f"{title}  (χ²/dof = {result.chi2_dof:.2f})")
    ax.legend(fontsize=8)
    axr.errorbar(r, result.residuals_ev, yerr=[p.delta_e_err_ev for p in pts], fmt="o", capsize=3)
    axr.axhline(0, color="k", lw=0.8)
    axr.set_xlabel("R_OO (nm)")
    axr.set_ylabel("residual (eV)")
    fig.tight_layout()
    save(fig, path)


@styled
def spectra_figure(spectra_and_measurements, path):
    """Each measured O-K spectrum as stored (background not removed) with its threshold and
    peak b marked, on an energy axis relative to the spectrum's own threshold."""
    n = len(spectra_and_measurements)
    fig, axs = plt.subplots(n, 1, figsize=(7, 2.0 * n + 0.5), squeeze=False)
    for ax, (spec, m) in zip(axs[:, 0], spectra_and_measurements):
        e, y = spec.energy_ev, spec.counts
        sel = (e > m.threshold_ev - 20) & (e < m.threshold_ev + 55)
        ax.plot(e[sel] - m.threshold_ev, y[sel], lw=0.8)
        ax.axvline(0, color="g", ls="--", lw=0.8, label=f"E_th = {m.threshold_ev:.2f} eV")
        ax.axvline(m.delta_e_ev, color="r", ls="--", lw=0.8,
                   label=f"b: ΔE = {m.delta_e_ev:.2f} ± {m.delta_e_err_ev:.2f} eV")
        ax.set_title(spec.name, fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axs[-1, 0].set_xlabel("energy above the file's own threshold (eV)")
    fig.supylabel("intensity as stored in the file (counts; background not removed)", fontsize=9)
    fig.tight_layout()
    save(fig, path)
