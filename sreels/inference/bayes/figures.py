"""Figures of the Bayesian path: corner plot, profiles with credible bands, residual image.

(matplotlib through :mod:`sreels.figstyle`, the one style of every sreels figure.)
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from ...figstyle import COLOURS, DISTANCE_LABEL, LABELS, figure, fmt_pm, mark_rows, plt, save, styled


@styled
def corner(flat, names, path, truth: dict | None = None, max_points: int = 3000,
           title: str = "posterior (red: truth where known)"):
    """Pairwise scatter and marginal histograms of ``flat`` (N, P).  Each axis shows the
    deviation from the posterior median (written under the name), so that parameters of very
    different sizes (0.28 nm and 400 nm) stay readable; the diagonal titles give median +- sd."""
    from .idata import units_of

    flat = np.asarray(flat, float)
    P = len(names)
    med, sd = np.median(flat, axis=0), flat.std(axis=0)
    dev = flat - med
    idx = np.linspace(0, flat.shape[0] - 1, min(max_points, flat.shape[0])).astype(int)
    x = dev[idx]
    t = {n: truth[n] - m for n, m in zip(names, med) if truth and n in truth}
    size = max(1.7 * P, 6.0)
    fig, axes = plt.subplots(P, P, figsize=(size, size), squeeze=False)
    for i in range(P):
        for j in range(P):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(dev[:, i], bins=40, histtype="step", color="k")
                if names[i] in t:
                    ax.axvline(t[names[i]], color="C3")
                u = units_of(names[i])
                ax.set_title(fmt_pm(med[i], sd[i], "" if u.startswith("1") else u), fontsize=7)
                ax.set_yticks([])
            else:
                ax.plot(x[:, j], x[:, i], ".", color="k", alpha=0.25, ms=1.5, mew=0)
                if names[i] in t and names[j] in t:
                    ax.plot(t[names[j]], t[names[i]], "s", color="C3", ms=4)
            ax.xaxis.set_major_locator(MaxNLocator(3))
            ax.yaxis.set_major_locator(MaxNLocator(3))
            ax.ticklabel_format(useOffset=False, style="sci", scilimits=(-3, 4))
            ax.tick_params(labelsize=6)
            ax.xaxis.get_offset_text().set_fontsize(6)
            ax.yaxis.get_offset_text().set_fontsize(6)
            if i < P - 1:
                ax.set_xticklabels([])
                ax.xaxis.offsetText.set_visible(False)
            else:
                ax.set_xlabel(f"{names[j]}\n− {med[j]:.6g}", fontsize=7)
            if j > 0 or i == 0:
                ax.set_yticklabels([])
                ax.yaxis.offsetText.set_visible(False)
            else:
                ax.set_ylabel(f"{names[i]}\n− {med[i]:.6g}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, path)


PANELS = (("li_rel", "(a) Li concentration"), ("ti3_fraction", "(b) Ti$^{3+}$ fraction"),
          ("peaks", '(c) O-K peaks "a" and "b": shift from the parent'),
          ("r_oo_nm", '(d) O-O distance from peak "b"'))


@styled
def profiles(cols: dict, summary: dict, path, truth: dict | None = None, points: dict | None = None):
    """The four profiles of Yamamoto et al. (2014) Figs. 5-6 from the posterior: median and
    16-84 % band per row, the truth (simulations) and the fast path's per-row values with their
    1-sigma errors (``points``, if given) over them.  Under each panel a strip shows everything
    relative to the posterior median, where the band is visible; derived numbers are written
    with their 68 % half-widths.  nm throughout, as in profiles.csv."""
    y = np.asarray(cols["y_nm"], float)
    fig, axs = figure(4, 2, figsize=(13, 9.5), sharex=True, gridspec_kw={"height_ratios": [3, 1, 3, 1]})
    slots = ((axs[0, 0], axs[1, 0]), (axs[0, 1], axs[1, 1]), (axs[2, 0], axs[3, 0]), (axs[2, 1], axs[3, 1]))
    par = y >= np.nanmin(y) + (2.0 / 3.0) * (np.nanmax(y) - np.nanmin(y))  # the far third, as the fast path
    for (ax, strip), (key, title) in zip(slots, PANELS):
        ax.set_title(title, loc="left")
        strip.set_ylabel("− median", fontsize=7)
        strip.axhline(0, color="0.5", lw=0.5)
        keys = ("peak_a_ev", "peak_b_ev") if key == "peaks" else (key,)
        for k in keys:
            med, lo, hi = (np.asarray(cols[f"{k}{s}"], float) for s in ("", "_lo", "_hi"))
            ref = float(np.nanmedian(med[par])) if key == "peaks" else 0.0
            c = COLOURS[k]
            lab = f'peak "{k.split("_")[1]}" (parent {ref:.2f} eV)' if key == "peaks" else "posterior median"
            ax.fill_between(y, lo - ref, hi - ref, color=c, alpha=0.35, lw=0,
                            label="16-84 % band" if k == keys[0] else None)
            ax.plot(y, med - ref, color=c, lw=1.0, label=lab)
            strip.fill_between(y, lo - med, hi - med, color=c, alpha=0.35, lw=0)
            if points is not None and k in points:
                v, e = np.asarray(points[k], float), np.asarray(points[f"{k}_err"], float)
                py = np.asarray(points["y_nm"], float)
                note = ""
                if k == "li_rel":  # the fast path's parent is the far third of *this* image: put both on one scale
                    fp = np.asarray(points.get("parent", np.zeros(py.size)), float) > 0
                    scale = np.nanmean(np.interp(py[fp], y, med)) / np.nanmean(v[fp]) if fp.any() else 1.0
                    v, e = v * scale, e * scale
                    note = f" (× {scale:.3g}: its parent rows at the posterior level)" if abs(scale - 1) > 1e-3 else ""
                ax.errorbar(py, v - ref, yerr=e, fmt="o", ms=1.5, mew=0, elinewidth=0.5, color="0.35",
                            label=f"fast path, per row ±1σ{note}" if k == keys[0] else None, zorder=1)
            if truth is not None and k in truth:
                t = np.asarray(truth[k], float)
                ax.plot(truth["y_nm"], t - ref, color=COLOURS["truth"], lw=0.8, ls="--",
                        label="truth" if k == keys[0] else None)
                strip.plot(truth["y_nm"], t - np.interp(truth["y_nm"], y, med), color=COLOURS["truth"], lw=0.8, ls="--")
            width = np.nanpercentile(hi - lo, 95) if np.isfinite(hi - lo).any() else np.nan
            if np.isfinite(width) and width > 0:  # the band fills the strip; the truth may leave it
                strip.set_ylim(-width, width)
        ax.set_ylabel("position − parent (eV)" if key == "peaks" else LABELS[key])
        for a in (ax, strip):
            mark_rows(a, y, y < 0, "Pt", text=a is ax)
    axs[0, 0].legend(loc="upper right")
    axs[2, 0].legend(loc="lower right")
    d = summary["derived"]

    def pm(k, unit=""):
        v = d.get(k, {})
        if v.get("median") is None:
            return "n/a"
        return fmt_pm(v["median"], 0.5 * (v["p84"] - v["p16"]), unit)

    tb = d.get("ti_boundary_nm", {})
    if tb.get("median") is not None:
        for ax, _ in slots:
            ax.axvspan(tb["p2_5"], tb["p97_5"], color=COLOURS["ti3_fraction"], alpha=0.15, lw=0)
            ax.axvline(tb["median"], color=COLOURS["ti3_fraction"], lw=0.8, ls="--")
    box = dict(transform=None, ha="right", va="top", fontsize=7.5,
               bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})
    for ax, lines in ((axs[0, 0], [f"electrode width {pm('electrode_width_nm', 'nm')}",
                                    f"max c$_{{\\rm Li}}$ {pm('li_max_rel')}",
                                    f"c$_{{\\rm Li}}$ at the Ti boundary {pm('li_at_ti_boundary_rel')}"]),
                      (axs[0, 1], [f"Ti$^{{3+}}$/Ti$^{{4+}}$ boundary {pm('ti_boundary_nm', 'nm')}"]),
                      (axs[2, 1], [f"$R_{{\\rm OO}}$ parent {pm('r_oo_parent_nm', 'nm')}",
                                   f"$R_{{\\rm OO}}$ max {pm('r_oo_max_nm', 'nm')}",
                                   f"expansion {pm('r_oo_change_nm', 'nm')}"])):
        ax.text(0.98, 0.95 if ax is axs[2, 1] else 0.6, "\n".join(lines), **{**box, "transform": ax.transAxes})
    for a in axs[3]:
        a.set_xlabel(DISTANCE_LABEL)
    fig.suptitle("sreels fit --method bayes: posterior median and 16-84 % band (numbers: median ± half the "
                 "16-84 % width); strips: everything minus the posterior median; red band: boundary 95 %",
                 fontsize=9)
    fig.tight_layout()
    save(fig, path)


@styled
def marginals(flat, names, path, truth: dict | None = None):
    """Every sampled parameter at a glance: a grid of 1-D marginal histograms (each titled
    with median ± sd and its units, truth in red where known) and the posterior correlation
    matrix, instead of an unreadable P x P corner plot."""
    from .idata import units_of
    flat = np.asarray(flat, float)
    P = len(names)
    ncol = 4
    nrow = int(np.ceil(P / ncol))
    fig = plt.figure(figsize=(16, 2.0 * nrow + 0.5))
    gs = fig.add_gridspec(nrow, ncol + 4, wspace=0.45, hspace=0.9)
    for i, n in enumerate(names):
        ax = fig.add_subplot(gs[i // ncol, i % ncol])
        x = flat[:, i]
        ax.hist(x, bins=40, histtype="stepfilled", color="0.75", edgecolor="k", lw=0.6)
        if truth and n in truth:
            ax.axvline(truth[n], color="C3", lw=1.2)
        u = units_of(n)
        u = "" if u.startswith("1") else u
        ax.set_title(f"{n}\n{fmt_pm(np.median(x), x.std(ddof=1), u)}", fontsize=7)
        ax.set_yticks([])
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.ticklabel_format(useOffset=False, style="sci", scilimits=(-3, 4), axis="x")
        ax.tick_params(labelsize=6)
        ax.xaxis.get_offset_text().set_fontsize(6)
    ax = fig.add_subplot(gs[:, ncol + 1:])  # a spacer column leaves room for the names
    corr = np.corrcoef(flat, rowvar=False) if P > 1 else np.ones((1, 1))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(range(P), names, rotation=90, fontsize=6)
    ax.set_yticks(range(P), names, fontsize=6)
    for i in range(P):
        for j in range(P):
            if i != j and abs(corr[i, j]) >= 0.5:
                ax.text(j, i, f"{corr[i, j]:.1f}", ha="center", va="center", fontsize=5)
    fig.colorbar(im, ax=ax, shrink=0.6, label="posterior correlation")
    fig.suptitle("every sampled parameter: marginal posteriors (red: truth where known) and correlations "
                 "(|r| ≥ 0.5 written)", fontsize=10)
    save(fig, path)


@styled
def residual_image(data, pred, path, pred_var=None, what: str = "MAP"):
    """Whitened residuals (d - mu) / sqrt(V + var_mu), one panel per window: ``pred`` the
    prediction (MAP, or the posterior-predictive mean with its variance ``pred_var``)."""
    fig, axes = plt.subplots(1, len(data.windows), figsize=(6 * len(data.windows), 4.5))
    axes = np.atleast_1d(axes)
    pred_var = pred_var if pred_var is not None else [0.0] * len(pred)
    fig.suptitle(f"{what}: whitened residuals (data - prediction) / sigma", fontsize=10)
    for ax, wd, p, v, pv in zip(axes, data.windows, pred, data.variance, pred_var):
        r = np.where(wd.mask, (wd.data - p) / np.sqrt(v + pv), np.nan)
        e = wd.energy_ev.mean(1)
        y = data.y_nm
        im = ax.imshow(r, aspect="auto", cmap="RdBu_r", vmin=-4, vmax=4, origin="upper",
                       extent=[e[0], e[-1], y[-1], y[0]])
        ax.set_title(f"{wd.window.name}: whitened residual, chi2/N = {np.nanmean(r ** 2):.3f}", fontsize=9)
        ax.set_xlabel("energy loss (eV)")
        ax.set_ylabel("y (nm)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    save(fig, path)
