"""Figures of the Bayesian path: corner plot, profiles with credible bands, residual image.

(matplotlib is imported only here and in :mod:`sreels.plots`.)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path):
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def corner(flat, names, path, truth: dict | None = None, max_points: int = 3000,
           title: str = "posterior (red: truth where known)"):
    """Pairwise scatter and marginal histograms of ``flat`` (N, P).  Each axis shows the
    deviation from the posterior median (written under the name), so that parameters of very
    different sizes (0.28 nm and 400 nm) stay readable; the diagonal titles give median +- sd."""
    from matplotlib.ticker import MaxNLocator

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
                ax.set_title(f"{med[i]:.6g} ± {sd[i]:.2g}", fontsize=7)
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
    _save(fig, path)


def profiles(cols: dict, summary: dict, path, truth: dict | None = None):
    """Fig. 6-like: c_Li with Ti3+ fraction, R_OO, each with its 16-84 % band."""
    y = cols["y_nm"]
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    for ax, key, label, scale in ((axes[0], "li_rel", "c_Li (parent = 1)", 1),
                                  (axes[1], "ti3_fraction", "Ti3+ fraction", 1),
                                  (axes[2], "r_oo_nm", "R_OO (pm)", 1e3)):
        ax.fill_between(y, cols[f"{key}_lo"] * scale, cols[f"{key}_hi"] * scale, color="C0", alpha=0.35,
                        label="16-84 % band")
        ax.plot(y, cols[key] * scale, color="C0", lw=1, label="posterior median")
        if truth is not None and key in truth:
            ax.plot(y, np.asarray(truth[key]) * scale, color="C3", lw=0.8, ls="--", label="truth")
        ax.set_ylabel(label)
        ax.axvspan(y.min(), 0, color="0.85", zorder=-1)
    d = summary["derived"]
    tb = d["ti_boundary_nm"]
    if tb.get("median") is not None:
        for ax in axes:
            ax.axvspan(tb["p2_5"], tb["p97_5"], color="C3", alpha=0.15)
            ax.axvline(tb["median"], color="C3", lw=0.8)
    axes[0].legend(fontsize=7)
    axes[0].set_title("Ti3+/Ti4+ boundary {:.1f} nm, c_Li there {:.2f}, max c_Li {:.2f}, electrode {:.0f} nm"
                      .format(summary["ti_boundary_nm"], summary["li_at_ti_boundary_rel"], summary["li_max_rel"],
                              summary["electrode_width_nm"]), fontsize=8)
    axes[-1].set_xlabel("y from the Pt / electrode interface (nm)")
    _save(fig, path)


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
    _save(fig, path)
