"""Figures (the only module that imports matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .inference.background import subtract_background  # noqa: E402


def _save(fig, path: Path):
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def spectrum_image_figure(sim, path: Path):
    """A figure like Yamamoto et al. (2014) Fig. 5: the true profiles next to the
    background-subtracted Li-K, Ti-L2,3 and O-K spectrum images (y down, energy across)."""
    p = sim.profiles
    y = p.y_nm
    fig, axes = plt.subplots(1, 4, figsize=(15, 5.2), sharey=True,
                             gridspec_kw={"width_ratios": [1.1, 1, 1, 1.3]})
    ax = axes[0]
    ax.plot(p.li_rel, y, color="C0", label="c_Li (parent = 1)")
    ax.plot(p.ti3_fraction * 10, y, color="C3", label="Ti3+ fraction x 10")
    ax.set_xlabel("c_Li rel. / Ti3+ x 10")
    ax.set_ylabel("y from Pt / electrode interface (nm)")
    ax2 = ax.twiny()
    ax2.plot(p.r_oo_nm * 1e3, y, color="C2", ls="--", label="R_OO")
    ax2.set_xlabel("R_OO (pm)", color="C2")
    ax.axhspan(y.min(), 0, color="0.8", zorder=-1)
    ax.text(0.05, 0.5 * (y.min() if y.min() < 0 else 0), "Pt", va="center", transform=ax.get_yaxis_transform())
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("(a) profiles (truth)")
    panels = [("low", "Li-K", "(b) Li-K"), ("high", "Ti-L23", "(c) Ti-L2,3"), ("high", "O-K", "(d) O-K")]
    for ax, (win, edge, title) in zip(axes[1:], panels):
        if win not in sim.windows:
            ax.set_visible(False)
            continue
        w = sim.windows[win]
        try:
            e, sig, _ = subtract_background(w.energy, w.counts, edge)
        except ValueError:
            ax.set_title(f"{title}: not in window")
            continue
        vmax = np.percentile(sig[~p.in_pt], 99.5)
        ax.imshow(sig, aspect="auto", origin="upper", cmap="inferno", vmin=0, vmax=vmax,
                  extent=[e[0], e[-1], y[-1] + 0.5 * (y[1] - y[0]), y[0] - 0.5 * (y[1] - y[0])])
        ax.set_xlabel("energy loss (eV)")
        ax.set_title(f"{title} (background removed)")
        if edge == "O-K":
            ax.plot(p.peak_b_ev, y, color="w", lw=0.8, ls="--", label='peak "b" (truth)')
            ax.plot(p.peak_a_ev, y, color="c", lw=0.8, ls="--", label='peak "a" (truth)')
            ax.legend(loc="lower left", fontsize=8)
    axes[0].set_ylim(y[-1], y[0])
    fig.suptitle("sreels simulate: SR-EELS spectrum images across the Pt / electrode / LASGTP interface"
                 f" ({'expected counts' if sim.noise_free else 'detector readout'})", y=1.04)
    _save(fig, path)


def _regions(result):
    """Rows for the spectra panels: Ti3+ electrode, Ti4+ electrode, parent (as in Fig. 6(c, d))."""
    c = result.columns
    f3, li = c["ti3_fraction"], c["li_rel"]
    ok = result.status == "ok"
    sel = {
        "Ti3+ electrode": ok & (f3 > 0.8),
        "Ti4+ electrode": ok & (f3 < 0.2) & (li > 1.5),
        "parent": ok & (c.get("parent", np.zeros_like(li)) > 0),
    }
    return {k: v for k, v in sel.items() if v.sum() > 0}


def profiles_figure(result, derived, path):
    """A figure like Yamamoto et al. (2014) Fig. 6: (a) Li with Ti3+/Ti4+ regions,
    (b) O-O distance, (c) Ti-L2,3 and (d) O-K spectra averaged over regions."""
    ok = result.status == "ok"
    c = {k: (np.where(ok, v, np.nan) if k != "y_nm" and np.asarray(v).dtype.kind == "f" else v)
         for k, v in result.columns.items()}
    y = c["y_nm"]
    fig, ax = plt.subplots(2, 2, figsize=(12, 8.5))
    a = ax[0, 0]
    a.errorbar(y, c["li_rel"], yerr=c["li_rel_err"], fmt=".", ms=3, color="C0", label="c_Li (parent = 1)")
    f3 = c["ti3_fraction"]
    top = np.nanmax(c["li_rel"]) if np.isfinite(c["li_rel"]).any() else 1
    a.fill_between(y, 0, top * 1.1, where=f3 > 0.5, color="C3", alpha=0.12, step="mid", label="Ti3+ region")
    a.fill_between(y, 0, top * 1.1, where=f3 <= 0.5, color="C2", alpha=0.06, step="mid", label="Ti4+ region")
    yb = derived.get("ti_boundary_nm")
    if yb is not None and np.isfinite(yb):
        a.axvline(yb, color="C3", ls="--", lw=1)
        a.text(yb, top, f" Ti3+/Ti4+ {yb:.0f} nm\n c_Li {derived.get('li_at_ti_boundary_rel', np.nan):.1f}x",
               color="C3", va="top", fontsize=8)
    w = derived.get("electrode_width_nm")
    if w is not None and np.isfinite(w):
        a.axvline(w, color="0.3", ls=":", lw=1)
        a.text(w, 0.6 * top, f" electrode {w:.0f} nm", fontsize=8)
    a.set_xlabel("distance from the Pt / electrode interface (nm)")
    a.set_ylabel("Li concentration (parent = 1)")
    a.set_title("(a) Li profile")
    a.legend(fontsize=8, loc="upper right")
    b = ax[0, 1]
    b.errorbar(y, c["r_oo_nm"], yerr=c["r_oo_nm_err"], fmt=".", ms=3, color="C1")
    b.set_xlabel("distance from the Pt / electrode interface (nm)")
    b.set_ylabel("mean O-O distance R (nm)")
    b.set_title('(b) O-O distance from peak "b" (dE R^2 = C)')
    regions = _regions(result)
    for panel, edge, title in ((ax[1, 0], "Ti-L23", "(c) Ti-L2,3"), (ax[1, 1], "O-K", "(d) O-K")):
        fit = result.fits.get(edge)
        if fit is None:
            panel.set_visible(False)
            continue
        bg = np.exp(fit.value("log_a")[:, None] - fit.value("r")[:, None] * np.log(fit.energy / fit.e_ref)[None, :])
        for i, (name, rows) in enumerate(regions.items()):
            sig = (fit.data[rows] - bg[rows]).mean(0)
            peak = np.nanmax(sig)
            panel.plot(fit.energy, sig / peak + 0.6 * i, label=f"{name} ({rows.sum()} rows)")
        panel.set_xlabel("energy loss (eV)")
        panel.set_ylabel("background-subtracted, normalised (offset)")
        panel.set_title(f"{title} spectra by region")
        panel.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def residuals_figure(result, path):
    """Normalised residuals (data - model) / sigma of every edge fit, rows x energy."""
    fits = result.fits
    fig, axes = plt.subplots(1, max(len(fits), 1), figsize=(5 * max(len(fits), 1), 4.5), squeeze=False)
    y = result.columns["y_nm"]
    for a, (edge, fit) in zip(axes[0], fits.items()):
        im = a.imshow(fit.pulls(), aspect="auto", cmap="RdBu_r", vmin=-4, vmax=4,
                      extent=[fit.energy[0], fit.energy[-1], y[-1], y[0]])
        a.set_title(f"{edge}: (data - model) / sigma")
        a.set_xlabel("energy loss (eV)")
        a.set_ylabel("y (nm)")
        fig.colorbar(im, ax=a)
    fig.tight_layout()
    _save(fig, path)


def maps_figure(result, nav_shape, path):
    """A 2-D spectrum-image map: Li (parent = 1), Ti3+ fraction, O-O distance and the rows'
    status, each as an image of the scan (ny x nx)."""
    ny, nx = nav_shape
    c = result.columns
    ok = (result.status == "ok").reshape(ny, nx)
    panels = (("li_rel", "c_Li (parent = 1)", "viridis"), ("ti3_fraction", "Ti3+ fraction", "magma"),
              ("r_oo_nm", "R_OO (nm)", "cividis"))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), squeeze=False)
    for a, (key, label, cmap) in zip(axes[0], panels):
        img = np.where(ok, np.asarray(c[key], float).reshape(ny, nx), np.nan)
        a.set_title(label)
        if not np.isfinite(img).any():  # that edge was not in the data
            a.text(0.5, 0.5, "not measured", ha="center", va="center", transform=a.transAxes, color="0.4")
            a.set_xticks([])
            a.set_yticks([])
            continue
        im = a.imshow(img, cmap=cmap, interpolation="nearest", vmin=np.nanpercentile(img, 2),
                      vmax=np.nanpercentile(img, 98))
        fig.colorbar(im, ax=a, shrink=0.8)
    a = axes[0, 3]
    a.imshow(ok, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    a.set_title(f"status ok ({int(ok.sum())} of {ok.size} pixels)")
    for a in axes[0]:
        a.set_xlabel("x (pixel)")
        a.set_ylabel("y (pixel)")
    fig.tight_layout()
    _save(fig, path)
