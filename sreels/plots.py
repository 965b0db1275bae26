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
