"""Figures of the simulation and the fast path (matplotlib through :mod:`sreels.figstyle`).

- :func:`spectrum_image_figure`: Yamamoto et al. (2014) Fig. 5 — the true profiles and the
  background-subtracted Li-K, Ti-L2,3 and O-K spectrum images, each with a colour bar.
- :func:`profiles_figure`: Fig. 6 (a, b) and the two profiles the study reads off Fig. 5 —
  c_Li, Ti3+ fraction, O-K peak "a"/"b" positions and R_OO against distance, each with its
  1-sigma errors and a strip underneath that shows the errors at a scale where they are
  visible; the derived numbers written with their errors; the Pt rows marked.
- :func:`region_spectra_figure`: Fig. 6 (c, d) — Ti-L2,3 and O-K spectra averaged by region.
- :func:`spectrum_fits_figure`: one spectrum (or a few): data, model and residual per edge.
- :func:`residuals_figure`, :func:`maps_figure`: residual images, 2-D maps.
- :func:`lowloss_figure`: the ZLP line, t/lambda and resolution across the rows (Supplementary data 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator
from scipy.ndimage import uniform_filter

from .figstyle import (COLOURS, DISTANCE_LABEL, LABELS, figure, fmt_pm, mark_rows, neighbour_scatter, runs,
                       save, styled)
from .inference.background import subtract_background


# ------------------------------------------------------------------ Fig. 5
def spectrum_image_figure(sim, path: Path) -> Path:
    """Draw :func:`draw_spectrum_images` and save it to ``path``."""
    return save(draw_spectrum_images(sim), path)


def _pt_rows(result) -> np.ndarray:
    """Rows flagged both ``no_ti`` and ``no_o``: the Pt collector of the study's interface."""
    st = np.asarray(result.status).astype(str)
    return (np.char.find(st, "no_ti") >= 0) & (np.char.find(st, "no_o") >= 0)


def _position_label(result) -> str:
    """The study's axis label where the scan starts at a Pt collector; a measured scan need not."""
    return DISTANCE_LABEL if _pt_rows(result).any() else "position along the line scan (nm)"


def _without_plural_tail(sim, win):
    """A window's counts less the multiple scattering its low loss predicts (double and triple plasmons
    under Li-K, which no power law removes; :func:`.inference.lowloss.plural_kernel`), for windows the low
    loss reaches; else the counts as simulated."""
    from .config import LOWLOSS_NAME
    from .inference.edgefits import rows_at
    from .inference.lowloss import MIN_DECONVOLVE_EV, TAIL_STEP_EV, plural_kernel, read_zlp

    w, ll = sim.windows[win], sim.windows.get(LOWLOSS_NAME)
    if ll is None or w.energy.offset_ev >= MIN_DECONVOLVE_EV:
        return w.counts
    counts = np.asarray(ll.counts, float)
    centre, _, thr, _, _ = read_zlp(counts, ll.energy)
    _, tail = plural_kernel(counts, ll.energy, centre, ll.energy.energy_ev[thr], TAIL_STEP_EV, w.energy.end_ev)
    inst = sim.config.instrument
    ratio = inst.window(win).exposure_s / inst.lowloss_exposure_s * w.energy.scale_ev / TAIL_STEP_EV
    return w.counts - ratio * rows_at(tail, TAIL_STEP_EV, w.energy.energy_ev, centre)[0]


@styled
def draw_spectrum_images(sim):
    """Yamamoto et al. (2014) Fig. 5 from a simulation: (a) the true profiles, (b-d) the
    background-subtracted Li-K, Ti-L2,3 and O-K spectrum images (y down, energy across), each
    on a linear colour scale up to its largest (5x5-smoothed) value, so that no panel saturates,
    with a colour bar in detector counts per channel.  Pt rows hatched, AlPO4 grains marked."""
    p = sim.profiles
    y = p.y_nm
    half = 0.5 * (y[1] - y[0]) if y.size > 1 else 0.5
    grains = (p.host_fraction < 0.95) & ~p.in_pt
    fig, axes = figure(1, 4, figsize=(15, 5.6), sharey=True, gridspec_kw={"width_ratios": [1.15, 1, 1, 1.3]})
    ax = axes[0]
    ax.plot(p.li_rel, y, color=COLOURS["li_rel"], label=LABELS["li_rel"])
    ax.plot(p.ti3_fraction * 10, y, color=COLOURS["ti3_fraction"], label=LABELS["ti3_fraction"] + " × 10")
    ax.set_xlabel("c$_{\\rm Li}$ (parent = 1) ;  Ti$^{3+}$ fraction × 10")
    ax.set_ylabel(DISTANCE_LABEL)
    top = ax.twiny()
    top.plot(p.r_oo_nm, y, color=COLOURS["r_oo_nm"], ls="--")
    top.set_xlabel("$R_{\\rm OO}$ (nm), dashed", color=COLOURS["r_oo_nm"])
    top.tick_params(axis="x", colors=COLOURS["r_oo_nm"])
    top.xaxis.set_major_locator(MaxNLocator(4))
    ax.plot([], [], color=COLOURS["r_oo_nm"], ls="--", label="$R_{\\rm OO}$ (top axis, nm)")
    ax.set_title("(a) profiles (truth)", pad=44)
    panels = [("low", "Li-K", "(b) Li-K"), ("high", "Ti-L23", "(c) Ti-L$_{2,3}$"), ("high", "O-K", "(d) O-K")]
    for ax, (win, edge, title) in zip(axes[1:], panels):
        ax.set_title(f"{title}, background removed", pad=44)
        if win not in sim.windows:
            _empty(ax, f"no {win} window simulated")
            continue
        w = sim.windows[win]
        try:
            e, sig, _ = subtract_background(w.energy, _without_plural_tail(sim, win), edge)
        except ValueError:
            _empty(ax, f"{edge} not in the {win} window")
            continue
        rows = ~p.in_pt if (~p.in_pt).any() else np.ones(y.size, bool)
        # the largest 5x5-smoothed value, or the 99.9th percentile where noise spikes reach higher
        # (the plasmon tail under Li-K is no power law with plural scattering: larger residuals)
        vmax = float(max(np.max(uniform_filter(sig[rows], 5)), np.percentile(sig[rows], 99.9))) \
            if sig[rows].size else 1.0
        im = ax.imshow(sig, aspect="auto", origin="upper", cmap="inferno", norm=Normalize(0, vmax),
                       extent=[e[0], e[-1], y[-1] + half, y[0] - half], interpolation="nearest")
        cax = ax.inset_axes([0.0, 1.015, 1.0, 0.025])  # above the image: the rows stay aligned with (a)
        cb = fig.colorbar(im, cax=cax, orientation="horizontal")
        cax.xaxis.set_ticks_position("top")
        cax.xaxis.set_label_position("top")
        cb.set_label(f"counts per {w.energy.scale_ev:g} eV channel", fontsize=7, labelpad=2)
        cax.tick_params(labelsize=6, top=True, bottom=False)
        ax.set_xlabel("energy loss (eV)")
        if edge == "O-K":
            ax.plot(p.peak_b_ev, y, color="w", lw=0.9, ls="--", label='peak "b" (truth)')
            ax.plot(p.peak_a_ev, y, color="c", lw=0.9, ls="--", label='peak "a" (truth)')
            ax.legend(loc="lower left", fontsize=7, frameon=True)
    for k, ax in enumerate(axes):
        if p.in_pt.any():
            i = np.flatnonzero(p.in_pt)
            ax.axhspan(y[i[0]] - half, y[i[-1]] + half, facecolor="0.75", hatch="///", edgecolor="0.5", lw=0,
                       zorder=3 if k else 0, label="Pt collector" if k == 0 else None)
        for a, b in runs(grains):  # AlPO4 grains: no Li, no Ti; a band in (a), a tick at each image's edge
            if k == 0:
                ax.axhspan(y[a] - half, y[b] + half, color="#2ca02c", alpha=0.2, lw=0, zorder=0)
                ax.text(0.98, y[b] + half, "AlPO$_4$", transform=ax.get_yaxis_transform(), ha="right", va="top",
                        fontsize=7, color="#2ca02c")
            else:
                ax.plot([0, 0.05], [0.5 * (y[a] + y[b])] * 2, color="#2ca02c", lw=2,
                        transform=ax.get_yaxis_transform(), zorder=5)
    axes[0].legend(loc="lower right", fontsize=7)
    axes[0].set_ylim(y[-1] + half, y[0] - half)
    kind = "expected counts, noise-free" if sim.noise_free else "detector readout"
    fig.suptitle(f"SR-EELS spectrum images across the Pt / electrode / LASGTP interface ({kind}; "
                 f"{y.size} rows of {2 * half:.1f} nm; AlPO$_4$ grains green)", y=1.06)
    return fig


def _empty(ax, text, keep_x=False):
    """A panel with nothing to show says why (``keep_x``: the x axis is shared, keep its ticks)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", fontsize=8)
    ax.set_yticks([])
    if not keep_x:
        ax.set_xticks([])


# ------------------------------------------------------------------ Fig. 6
def _edge_of(column: str):
    """The edge whose status flags withhold a column (None: every edge's)."""
    if column.startswith("li"):
        return "li"
    if column.startswith("ti"):
        return "ti"
    if column.startswith(("peak_", "r_oo", "o_", "delta_e")):
        return "o"
    return None


def _masked(result):
    """Float columns with NaN where the row's status withholds them (Pt, saturated, unconverged;
    rows flagged only *_poor_fit keep their widened errors): :func:`~sreels.inference.fast.usable`."""
    from .inference.fast import usable

    ok = {e: usable(result.status, e) for e in ("li", "ti", "o", None)}
    return {k: (np.where(ok[_edge_of(k)], np.asarray(v, float), np.nan)
                if k != "y_nm" and np.asarray(v).dtype.kind == "f" else v) for k, v in result.columns.items()}


def _parent(c, y):
    """The parent rows: the Li normalisation's, else the far third of the rows (the default)."""
    if "parent" in c and np.nansum(np.asarray(c["parent"], float)) > 0:
        return np.asarray(c["parent"], float) > 0
    return y >= np.nanmin(y) + (2.0 / 3.0) * (np.nanmax(y) - np.nanmin(y))


def _profile_panel(ax, strip, y, v, e, colour, name=None):
    """Values with 1-sigma bars on ``ax``; on ``strip`` the row-to-row scatter with the +-1
    sigma band, at a scale where the errors are visible."""
    if np.isfinite(v).sum() >= 30:  # a band between a few scattered rows would draw boxes
        ax.fill_between(y, v - e, v + e, color=colour, alpha=0.3, lw=0, step="mid")
    ax.errorbar(y, v, yerr=e, fmt="o", ms=1.8, mew=0, elinewidth=0.6, color=colour, label=name)
    s = neighbour_scatter(v)
    strip.fill_between(y, -e, e, color=colour, alpha=0.3, lw=0, step="mid")
    strip.axhline(0, color="0.5", lw=0.5)
    me = np.nanmedian(e) if np.isfinite(e).any() else np.nan
    if not np.isfinite(me) or me <= 0:
        strip.plot(y, s, ".", ms=1.5, color=colour)
        return
    # the band fills a quarter to a half of the strip; points beyond (steps in the profile) sit
    # on the edge as triangles
    lim = float(np.clip(1.2 * np.nanpercentile(np.abs(s), 90), 2 * me, 4 * me)) if np.isfinite(s).any() else 2 * me
    inside = np.abs(s) <= lim
    strip.plot(y[inside], s[inside], ".", ms=1.5, color=colour)
    for sign, marker in ((1, "^"), (-1, "v")):
        out = sign * s > lim
        strip.plot(y[out], np.full(out.sum(), sign * lim * 0.92), marker, ms=2.5, color=colour, mew=0)
    strip.set_ylim(-lim, lim)


#: The profile each edge's usable rows give (:func:`usable_rows_text`): Li-K's c_Li (it needs Ti-L2,3 too),
#: Ti-L2,3's Ti3+ fraction, O-K's R_OO (and peaks "a", "b").
USABLE_LABELS = {"li": "c_Li", "ti": "Ti³⁺", "o": "R_OO"}


def _not_measured(what: str, edge: str, status, otherwise: str) -> str:
    """An empty profile panel's text: why its edge's rows were all withheld (their flags,
    :func:`~sreels.inference.fast.withheld_reasons`), else ``otherwise``, wrapped to the panel."""
    import textwrap

    from .inference.fast import withheld_reasons

    why = withheld_reasons(status).get(edge)
    return textwrap.fill(f"{what} {why}" if why else f"{what} not measured ({otherwise})", 70)


def usable_rows_text(status) -> str:
    """The profiles' headline count, per edge: "usable rows: c_Li 322, Ti³⁺ 322, R_OO 0 of 330".  A row is
    usable for one edge and withheld for another (:func:`~sreels.inference.fast.usable_by_edge`); the count
    of rows usable for every edge at once read 0 whenever one edge was withheld everywhere (an O-K edge
    outside the window, no Li-K window, the LSMO/STO scan's Li-K under Mn-M2,3) though the panels showed
    the other edges' rows."""
    from .inference.fast import gives_r_oo, usable_by_edge

    by = {**usable_by_edge(status), "o": gives_r_oo(status)}
    parts = ", ".join(f"{USABLE_LABELS[k]} {int(np.sum(v))}" for k, v in by.items())
    return f"usable rows: {parts} of {len(np.asarray(status))}"


def profiles_figure(result, derived, path) -> Path:
    """Draw :func:`draw_profiles` and save it to ``path``."""
    return save(draw_profiles(result, derived), path)


@styled
def draw_profiles(result, derived):
    """The four profiles of Yamamoto et al. (2014) Figs. 5-6 against distance: (a) c_Li,
    (b) Ti3+ fraction, (c) O-K peak "a" and "b" positions (shift from the parent mean),
    (d) R_OO from peak "b".  Each panel: per-row values with 1-sigma bars and band; under it a
    strip of the row-to-row scatter (see :func:`sreels.figstyle.neighbour_scatter`) with the
    +-1 sigma band, so that errors far smaller than the profile stay visible and can be
    compared with the scatter.  Derived numbers are written with their errors; rows flagged
    ``no_ti``/``no_o`` (the Pt collector) are greyed; an edge not in the input says so."""
    c = _masked(result)
    y = np.asarray(c["y_nm"], float)
    pt = _pt_rows(result)
    d = derived or {}
    fig, axs = figure(4, 2, figsize=(13, 9.5), sharex=True, gridspec_kw={"height_ratios": [3, 1, 3, 1]})
    panels = [(axs[0, 0], axs[1, 0], "li_rel", "(a) Li concentration"),
              (axs[0, 1], axs[1, 1], "ti3_fraction", "(b) Ti$^{3+}$ fraction (Ti-L$_{2,3}$ MLLS)"),
              (axs[2, 0], axs[3, 0], "peaks", '(c) O-K peaks "a" and "b": shift from the parent'),
              (axs[2, 1], axs[3, 1], "r_oo_nm", '(d) O-O distance from peak "b" ($\\Delta E\\,R^2 = C$)')]
    parent = _parent(c, y)
    for ax, strip, key, title in panels:
        ax.set_title(title, loc="left")
        strip.set_ylabel("scatter\n±1σ band", fontsize=7)
        if key == "peaks":
            measured = [k for k in ("peak_a_ev", "peak_b_ev") if np.isfinite(c[k]).any()]
            if not measured:
                _empty(ax, _not_measured("O-K", "o", result.status, "no O-K in the input, or no O in any row"),
                       keep_x=True)
                strip.set_yticks([])
            for k in measured:
                v, e = c[k], c[f"{k}_err"]
                vp = v[parent & np.isfinite(v)]
                ref = vp.mean() if vp.size else np.nanmedian(v)
                ref_e = vp.std(ddof=1) / np.sqrt(vp.size) if vp.size > 1 else np.nan
                nm = k.split("_")[1]
                _profile_panel(ax, strip, y, v - ref, e, COLOURS[k],
                               f'peak "{nm}": parent {fmt_pm(ref, ref_e, "eV")}')
            ax.set_ylabel("peak position − parent mean (eV)")
            if measured:
                ax.legend(loc="lower right")
        else:
            v, e = c[key], c[f"{key}_err"]
            if not np.isfinite(v).any():
                from .inference.fast import EDGE_LABEL, EDGE_OF_NUMBER
                edge = EDGE_OF_NUMBER[key]
                what = "R_OO (O-K)" if key == "r_oo_nm" else EDGE_LABEL[edge]   # (O-K's peaks may be measured)
                _empty(ax, _not_measured(what, edge, result.status, "not in the input, or no usable row"), keep_x=True)
                strip.set_yticks([])
            else:
                _profile_panel(ax, strip, y, v, e, COLOURS[key], "per row, ±1σ")
            ax.set_ylabel(LABELS[key])
        if pt.any():
            for a in (ax, strip):
                mark_rows(a, y, pt, "Pt (no Ti, no O)", text=a is ax)
    _annotate_derived(axs, d)
    for a in axs[3]:
        a.set_xlabel(_position_label(result))
    fig.suptitle(f"sreels fit (fast path): {usable_rows_text(result.status)}; bars and bands: ±1σ per row. "
                 "Strips: row-to-row scatter (v$_i$ − mean of neighbours)·√(2/3) against ±1σ", fontsize=9)
    fig.tight_layout()
    return fig


def _vline(ax, x, err, colour, label):
    if x is None or not np.isfinite(x):
        return
    ax.axvline(x, color=colour, ls="--", lw=0.9, label=label)
    if err is not None and np.isfinite(err):
        ax.axvspan(x - err, x + err, color=colour, alpha=0.2, lw=0)


def _annotate_derived(axs, d):
    """The study's numbers with their errors, where each is read off."""
    g = d.get
    yb, yb_e, w, w_e = g("ti_boundary_nm"), g("ti_boundary_nm_err"), g("electrode_width_nm"), g("electrode_width_nm_err")
    for ax in (axs[0, 0], axs[0, 1], axs[2, 0], axs[2, 1]):
        _vline(ax, yb, yb_e, COLOURS["ti3_fraction"], None)
        _vline(ax, w, w_e, "0.3", None)
    lines = [f"electrode width {fmt_pm(w, w_e, 'nm')}",
             f"max c$_{{\\rm Li}}$ {fmt_pm(g('li_max_rel'), g('li_max_rel_err'))}",
             f"c$_{{\\rm Li}}$ at the Ti$^{{3+}}$/Ti$^{{4+}}$ boundary "
             f"{fmt_pm(g('li_at_ti_boundary_rel'), g('li_at_ti_boundary_rel_err'))}"]
    if any(v is not None and np.isfinite(v) for v in (yb, w)):
        lines.append("dashed: " + ", ".join(t for v, t in ((yb, "Ti boundary (red)"), (w, "electrode edge (grey)"))
                                            if v is not None and np.isfinite(v)))
    _box(axs[0, 0], lines)
    _box(axs[0, 1], [f"Ti$^{{3+}}$/Ti$^{{4+}}$ boundary {fmt_pm(yb, yb_e, 'nm')}"])
    rp, rm = g("r_oo_parent_nm"), g("r_oo_max_nm")
    _box(axs[2, 1], [f"$R_{{\\rm OO}}$ parent {fmt_pm(rp, g('r_oo_parent_nm_err'), 'nm')}",
                     f"$R_{{\\rm OO}}$ at max c$_{{\\rm Li}}$ {fmt_pm(rm, g('r_oo_max_nm_err'), 'nm')}"])
    for v in (rp, rm):
        if v is not None and np.isfinite(v):
            axs[2, 1].axhline(v, color="0.4", ls=":", lw=0.8)


def _box(ax, lines, y=0.95):
    """Lines of text in a box at the top right of ``ax`` (lines whose number is n/a left out)."""
    lines = [s for s in lines if not s.endswith("n/a")]
    if lines:
        ax.text(0.98, y, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})


def _regions(result):
    """Rows for the spectra panels: Ti3+ electrode, Ti4+ electrode, parent (as in Fig. 6(c, d))."""
    c = result.columns
    f3, li = c["ti3_fraction"], c["li_rel"]
    from .inference.fast import usable
    ok = usable(result.status)
    with np.errstate(invalid="ignore"):
        sel = {
            "Ti3+ electrode": ok & (f3 > 0.8),
            "Ti4+ electrode": ok & (f3 < 0.2) & (li > 1.5),
            "parent": ok & (np.asarray(c.get("parent", np.zeros(len(ok))), float) > 0),
        }
    return {k: v for k, v in sel.items() if v.sum() > 0}


@styled
def region_spectra_figure(result, path) -> bool:
    """Yamamoto et al. (2014) Fig. 6 (c, d): background-subtracted Ti-L2,3 and O-K spectra
    averaged over the Ti3+ electrode, the Ti4+ electrode and the parent, normalised and offset.
    Returns False (and writes nothing) when neither edge was fitted."""
    fits = {k: result.fits[k] for k in ("Ti-L23", "O-K") if k in result.fits}
    regions = _regions(result)
    if not fits or not regions:
        return False
    fig, axes = figure(1, len(fits), figsize=(6.2 * len(fits), 4.6), squeeze=False)
    for panel, (edge, fit) in zip(axes[0], fits.items()):
        bg = np.exp(fit.value("log_a")[:, None] - fit.value("r")[:, None] * np.log(fit.energy / fit.e_ref)[None, :])
        for i, (name, rows) in enumerate(regions.items()):
            sig = (fit.data[rows] - bg[rows]).mean(0)
            panel.plot(fit.energy, sig / np.nanmax(sig) + 0.6 * i, label=f"{name} ({rows.sum()} rows)")
        panel.set_xlabel("energy loss (eV)")
        panel.set_ylabel("background-subtracted, normalised (offset)")
        panel.set_title(f"{'(c) Ti-L$_{2,3}$' if edge == 'Ti-L23' else '(d) O-K'} spectra by region", loc="left")
        panel.legend()
    fig.tight_layout()
    save(fig, path)
    return True


@styled
def spectrum_fits_figure(result, path) -> bool:
    """For one spectrum (or a few rows): per edge, the data and the fitted model (top) and
    the normalised residual (bottom), one colour per row.  False if nothing was fitted."""
    fits = result.fits
    if not fits:
        return False
    fig, axes = figure(2, len(fits), figsize=(5.5 * len(fits), 5), squeeze=False, sharex="col",
                       gridspec_kw={"height_ratios": [3, 1]})
    for j, (edge, fit) in enumerate(fits.items()):
        top, bot = axes[0, j], axes[1, j]
        fitted = fit.weights > 0   # the model and residuals where the fit used the data (peak b: its range)
        for i in range(fit.data.shape[0]):
            top.plot(fit.energy, fit.data[i], ".", ms=2, color=f"C{i}", label=f"row {i} data")
            top.plot(fit.energy, np.where(fitted[i], fit.model[i], np.nan), "-", lw=1, color=f"C{i}",
                     label=f"row {i} model")
            bot.plot(fit.energy, np.where(fitted[i], fit.pulls()[i], np.nan), ".", ms=2, color=f"C{i}")
        bot.axhline(0, color="0.5", lw=0.5)
        top.set_title(f"{edge}: χ²$_{{\\rm red}}$ = {np.nanmean(fit.result.chi2_red):.3g}", loc="left")
        top.set_ylabel("counts / channel")
        bot.set_ylabel("(data − model) / σ")
        bot.set_xlabel("energy loss (eV)")
        top.legend(fontsize=6, loc="lower left")
    if fits and result.position.size == 1:  # one spectrum: its numbers, with errors
        c = result.columns
        vals = [f"{name} {fmt_pm(float(c[k][0]), float(c[f'{k}_err'][0]), u)}"
                for k, name, u in (("ti3_fraction", "Ti$^{3+}$ fraction", ""), ("peak_a_ev", 'peak "a"', "eV"),
                                   ("peak_b_ev", 'peak "b"', "eV"), ("r_oo_nm", "$R_{\\rm OO}$", "nm"))
                if np.isfinite(c[k][0])]
        _box(axes[0, -1], vals)
    fig.tight_layout()
    save(fig, path)
    return True


@styled
def lowloss_figure(result, path) -> bool:
    """The low-loss window across the rows (Yamamoto et al. 2014, Supplementary data 1): (a) the ZLP
    line, its maximum per row against position (the SR energy distortion, which every core-loss row
    is referenced to), (b) t/lambda with its error, (c) the ZLP FWHM.  False without a low-loss window."""
    c = result.columns
    if "zlp_shift_ev" not in c or result.position.size < 3:
        return False
    y = c["y_nm"]
    fig, axes = figure(1, 3, figsize=(13, 4.2), sharey=True)
    shift = c["zlp_shift_ev"] - np.nanmedian(c["zlp_shift_ev"])
    axes[0].plot(shift * 1e3, y, ".", ms=3, color="k")
    axes[0].set_xlabel("ZLP maximum − median (meV)")
    pp = np.nanmax(c["zlp_shift_ev"]) - np.nanmin(c["zlp_shift_ev"])
    axes[0].set_title(f"(a) ZLP line: {pp * 1e3:.0f} meV peak-to-peak", loc="left")
    axes[0].set_ylabel(_position_label(result))
    axes[0].invert_yaxis()
    axes[1].errorbar(c["t_over_lambda"], y, xerr=c["t_over_lambda_err"], fmt=".", ms=3, color=COLOURS["li_rel"],
                     elinewidth=0.6)
    axes[1].set_xlabel("t/λ (log ratio)")
    axes[1].set_title(f"(b) t/λ: median {np.nanmedian(c['t_over_lambda']):.2f}", loc="left")
    axes[2].plot(c["resolution_ev"], y, ".", ms=3, color=COLOURS["r_oo_nm"])
    axes[2].set_xlabel("ZLP FWHM (eV)")
    axes[2].set_title(f"(c) resolution: median {np.nanmedian(c['resolution_ev']):.2f} eV", loc="left")
    fig.tight_layout()
    save(fig, path)
    return True


#: A row whose mean squared pull exceeds this is not described by its model (residuals ~10x the noise: a
#: fit that did not converge, a shape the references lack); the residuals' titles count such rows apart.
CHI2_ROW_ABSURD = 100.0


def chi2_rows(fit) -> np.ndarray:
    """Per row, the mean squared pull over the pixels the fit used (zero weight outside a row's fit window,
    and a pixel of zero variance, e.g. vacuum, has no pull); NaN for a row without any."""
    pulls = fit.pulls()
    used = np.isfinite(pulls) & (np.broadcast_to(getattr(fit, "weights", 1.0), pulls.shape) > 0)
    n = used.sum(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.where(used, pulls, 0.0) ** 2
        return np.where(n > 0, s.sum(-1) / np.maximum(n, 1), np.nan)


def chi2_per_pixel(fit) -> float:
    """The residuals' headline chi^2/N: the median over rows of each row's mean squared pull
    (:func:`chi2_rows`).  A mean over every pixel is swamped by one row: a measured Fe/Cr line scan's
    Li-K fit, one non-converged row at chi^2_red 1.8e30 among 99 near 0.4, read 1.76e28; the median reads
    what a typical row's residuals are, and :func:`chi2_summary` counts the rows far above it apart."""
    r = chi2_rows(fit)
    return float(np.nanmedian(r)) if np.isfinite(r).any() else np.nan


def chi2_summary(fit) -> str:
    """The residuals panel's chi^2 text: the median over rows (:func:`chi2_per_pixel`) and, when any, the
    number of rows whose own chi^2/N exceeds :data:`CHI2_ROW_ABSURD`: "χ²/N = 0.358 (median of 100 rows);
    1 row > 100"."""
    r = chi2_rows(fit)
    text = f"χ²/N = {chi2_per_pixel(fit):.3g} (median of {int(np.isfinite(r).sum())} rows)"
    bad = int(np.sum(r > CHI2_ROW_ABSURD))
    if bad:
        text += f"; {bad} row{'s' if bad > 1 else ''} > {CHI2_ROW_ABSURD:g}"
    return text


@styled
def residuals_figure(result, path, nav_shape=()):
    """Normalised residuals (data - model) / sigma of every edge fit, rows x energy (a 2-D map's pixels in
    row-major order, ``nav_shape`` (ny, nx))."""
    fits = result.fits
    fig, axes = figure(1, max(len(fits), 1), figsize=(5 * max(len(fits), 1), 4.5), squeeze=False)
    pixels = len(nav_shape) == 2 and min(nav_shape) > 1
    y = np.arange(result.position.size, dtype=float) if pixels else result.columns["y_nm"]
    ylabel = f"pixel, row-major (iy x {nav_shape[1]} + ix)" if pixels else _position_label(result)
    for a, (edge, fit) in zip(axes[0], fits.items()):
        pulls = fit.pulls()
        im = a.imshow(pulls, aspect="auto", cmap="RdBu_r", vmin=-4, vmax=4, interpolation="nearest",
                      extent=[fit.energy[0], fit.energy[-1], y[-1], y[0]])
        a.set_title(f"{edge}: {chi2_summary(fit)}", loc="left")
        a.set_xlabel("energy loss (eV)")
        a.set_ylabel(ylabel if a is axes[0, 0] else "")
        fig.colorbar(im, ax=a, label="(data − model) / σ")
    fig.tight_layout()
    save(fig, path)


@styled
def maps_figure(result, nav_shape, path):
    """A 2-D spectrum-image map: Li (parent = 1), Ti3+ fraction, O-O distance and the rows'
    status, each as an image of the scan (ny x nx)."""
    ny, nx = nav_shape
    c = result.columns
    from .inference.fast import usable
    ok = usable(result.status).reshape(ny, nx)
    panels = (("li_rel", "c_Li (map mean, or --parent, = 1)", "viridis"), ("ti3_fraction", "Ti3+ fraction", "magma"),
              ("r_oo_nm", "R_OO (nm)", "cividis"))
    fig, axes = figure(1, 4, figsize=(16, 3.8), squeeze=False)
    for a, (key, label, cmap) in zip(axes[0], panels):
        img = np.where(ok, np.asarray(c[key], float).reshape(ny, nx), np.nan)
        a.set_title(label)
        if not np.isfinite(img).any():  # that edge was not in the data
            _empty(a, "not measured")
            a.set_yticks([])
            continue
        im = a.imshow(img, cmap=cmap, interpolation="nearest", vmin=np.nanpercentile(img, 2),
                      vmax=np.nanpercentile(img, 98))
        err = np.nanmedian(np.asarray(c[f"{key}_err"], float))
        fig.colorbar(im, ax=a, shrink=0.8, label=f"{label}; median 1σ {err:.2g}")
    a = axes[0, 3]
    a.imshow(ok, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    a.set_title(f"usable: white ({int(ok.sum())} of {ok.size} pixels; black: flagged)")
    for a in axes[0]:
        a.set_xlabel("x (pixel)")
        a.set_ylabel("y (pixel)")
    fig.tight_layout()
    save(fig, path)
