"""One figure style for every sreels figure: fonts, sizes, colours, saving, common marks.

Every module that draws (:mod:`sreels.plots`, :mod:`sreels.inference.bayes.figures`,
:mod:`sreels.structures.figures`) takes its matplotlib from here, so that the backend is
the non-interactive Agg backend, the style is the same in all figures, and every file is
written atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: rcParams of every sreels figure (journal-like: small serif-free fonts, inward ticks)
STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 7.5,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "xtick.direction": "in", "ytick.direction": "in",
    "xtick.top": True, "ytick.right": True, "axes.linewidth": 0.8, "lines.linewidth": 1.2,
    "savefig.dpi": 150, "figure.dpi": 100, "legend.frameon": False, "image.cmap": "inferno",
}

#: one colour per profile, the same in every figure
COLOURS = {"li_rel": "#1f77b4", "ti3_fraction": "#d62728", "peak_a_ev": "#17becf", "peak_b_ev": "#9467bd",
           "r_oo_nm": "#ff7f0e", "pt": "0.82", "truth": "0.15"}

#: axis label of each profile column (nm everywhere, as in profiles.csv)
LABELS = {"li_rel": "c$_{\\rm Li}$ (parent = 1)", "ti3_fraction": "Ti$^{3+}$ fraction",
          "peak_a_ev": 'peak "a" (eV)', "peak_b_ev": 'peak "b" (eV)', "r_oo_nm": "$R_{\\rm OO}$ (nm)"}

DISTANCE_LABEL = "distance from the Pt / electrode interface (nm)"


def styled(fn):
    """Decorator: draw inside the sreels style (``STYLE`` applies to every artist the function
    creates, and the user's global rcParams are left as they were)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def figure(*args, **kwargs):
    """``plt.subplots`` inside the sreels style."""
    with plt.rc_context(STYLE):
        return plt.subplots(*args, **kwargs)


def save(fig, path, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary name in the same folder, then rename)
    and close it.  ``tight``: trim the margins to the drawn content (costs a second draw; a
    figure with its own fixed layout can skip it).  ``path`` may be a binary file object (a PNG is written
    to it; nothing renamed)."""
    if hasattr(path, "write"):
        with plt.rc_context(STYLE):
            fig.savefig(path, format="png", bbox_inches="tight" if tight else None)
        plt.close(fig)
        return path
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with plt.rc_context(STYLE):
        fig.savefig(tmp, bbox_inches="tight" if tight else None)
    plt.close(fig)
    tmp.replace(path)
    return path


def fmt_pm(value, err, unit: str = "") -> str:
    """``value ± err unit`` with the error rounded to two significant digits and the value
    to the same decimal place; a missing error gives the value alone with "(no error)".

    >>> fmt_pm(400.1234, 0.6123, "nm")
    '400.12 ± 0.61 nm'
    >>> fmt_pm(0.280034, 2.5e-05, "nm")
    '0.280034 ± 0.000025 nm'
    """
    unit = f" {unit}" if unit else ""
    if value is None or not np.isfinite(value):
        return "n/a"
    if err is None or not np.isfinite(err) or err <= 0:
        return f"{value:.4g}{unit} (no error)"
    digits = max(0, 1 - int(math.floor(math.log10(err))))
    return f"{value:.{digits}f} ± {err:.{digits}f}{unit}"


def runs(mask) -> list[tuple[int, int]]:
    """Contiguous runs of True in a 1-D boolean array as (first, last) index pairs."""
    m = np.asarray(mask, bool).astype(np.int8)
    d = np.diff(np.concatenate([[0], m, [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1))


def mark_rows(ax, y, mask, label: str, colour: str = COLOURS["pt"], text: bool = True):
    """Grey bands over the rows of ``mask`` (e.g. the Pt collector: no Ti, no O), each spanning
    its rows' full width, with ``label`` written once inside the widest band."""
    y = np.asarray(y, float)
    half = 0.5 * float(np.median(np.diff(y))) if y.size > 1 else 0.5
    spans = runs(mask)
    for k, (i, j) in enumerate(spans):
        ax.axvspan(y[i] - half, y[j] + half, color=colour, zorder=0, lw=0, label=label if k == 0 else None)
    if text and spans:
        i, j = max(spans, key=lambda s: s[1] - s[0])
        ax.text(0.5 * (y[i] + y[j]), 0.97, label, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=7, color="0.3", rotation=90)


def neighbour_scatter(v):
    """Row-to-row scatter of a profile: (v_i - (v_{i-1} + v_{i+1}) / 2) * sqrt(2/3).

    A smooth trend (constant or linear over three rows) cancels; independent noise of
    standard deviation sigma gives values of standard deviation sigma, so the scatter can be
    compared directly with the per-row 1-sigma errors.  NaN at the ends and next to NaN."""
    v = np.asarray(v, float)
    out = np.full(v.shape, np.nan)
    if v.size >= 3:
        out[1:-1] = (v[1:-1] - 0.5 * (v[:-2] + v[2:])) * math.sqrt(2.0 / 3.0)
    return out
