"""The fast path: a measured spectrum image -> Li, Ti3+ and O-O profiles with standard errors.

Every step is vectorised over rows (see :mod:`.edgefits`).  Li is the fitted Li-K
amplitude per Ti atom (Ti from the Ti-L2,3 MLLS, which is valence-independent because
the references are per atom), normalised to the parent region: thickness and AlPO4
grains (no Li, no Ti) cancel.  The raw Li-K amplitude normalised to the parent
(the study's definition) is given as ``li_areal_rel``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field

import numpy as np

from ..axes import PositionAxis
from ..config import Instrument
from ..errors import SreelsInputError
from ..forward.detector import psf_kernel
from ..forward.model import reference_spectra
from ..structures.resonance import r_from_energy_b
from ..axes import EnergyAxis
from .edgefits import FINE_STEP_EV, fit_linear_edges, fit_o_k, global_shift, variance_model
from .load import WindowData


@dataclass(frozen=True)
class FitSettings:
    """Choices of the fast path (energies in eV)."""

    li_fit_ev: tuple = (46.0, 71.0)        # below Al-L2,3 (73 eV), which AlPO4 grains carry
    li_components: tuple = ("Li-K", "Ti-M23")  # Ti-M2,3 tail under Li-K, free amplitude
    li_pre_edge_hi_ev: float = 54.5
    ti_fit_ev: tuple = (440.0, 480.0)
    ti_pre_edge_hi_ev: float = 452.0
    o_fit_ev: tuple = (495.0, 590.0)
    o_pre_edge_hi_ev: float = 526.0
    parent_nm: tuple | None = None          # y-range of the parent electrolyte; None: far third
    gain_counts_per_e: float | None = None  # None: from the file, else 1
    readout_noise_counts: float | None = None
    saturation_counts: float | None = None
    resolution_fwhm_ev: float = 0.5
    psf_decay: float | None = None          # detector PSF along energy; None: from the file, else 0
    dark_offset_counts: float = 0.0         # subtracted from every pixel before fitting
    beam_energy_kev: float = 300.0
    collection_semiangle_mrad: float = 10.0
    c_ev_nm2: float = 2.820
    c_err_ev_nm2: float = 0.0
    threshold_ev: float = 529.0
    calibrate_energy: bool = True
    shift_correction: bool = True
    bin_rows: int = 1

    def instrument(self) -> Instrument:
        return Instrument(beam_energy_kev=self.beam_energy_kev, resolution_fwhm_ev=self.resolution_fwhm_ev,
                          collection_semiangle_mrad=self.collection_semiangle_mrad)


@dataclass(frozen=True)
class FastResult:
    position: PositionAxis
    columns: dict            # per-row arrays (profiles.csv)
    status: np.ndarray       # per-row status strings
    fits: dict               # edge -> EdgeFit (for figures and residuals)
    settings: FitSettings
    timings_s: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _bin(w: WindowData, n: int) -> WindowData:
    if n == 1:
        return w
    rows = (w.counts.shape[0] // n) * n
    c = w.counts[:rows].reshape(-1, n, w.counts.shape[1]).sum(1)
    pos = PositionAxis(w.position.offset_nm + 0.5 * (n - 1) * w.position.scale_nm, w.position.scale_nm * n,
                       c.shape[0])
    return WindowData(w.name, w.energy, c, pos, w.source, w.gain_counts_per_e, w.readout_noise_counts,
                      (c.shape[0],), w.metadata)


@functools.lru_cache(maxsize=32)
def fine_references(axis: EnergyAxis, lo: float, hi: float, inst: Instrument, edges: tuple, psf_decay: float):
    """Forward-model references over [lo - 15, hi + 15] eV on a grid 10x finer than the data
    (0.01 eV at 0.1 eV/channel), so that shifting them by a fraction of a channel is exact
    to interpolation on that grid.  Cached: images with the same axes reuse them."""
    up = max(1, int(round(axis.scale_ev / FINE_STEP_EV)))
    i0 = max(axis.index(lo - 15.0) - 8, 0)
    i1 = min(axis.index(hi + 15.0) + 8, axis.size - 1)
    fine = EnergyAxis(axis.offset_ev + i0 * axis.scale_ev, axis.scale_ev / up, max((i1 - i0) * up, 64))
    refs = reference_spectra(fine, inst, edges)
    if psf_decay:  # the camera's point spread acts between channels: taps every `up` fine samples
        k = np.zeros((psf_kernel(psf_decay).size - 1) * up + 1)
        k[::up] = psf_kernel(psf_decay)
        refs = {n: np.convolve(np.pad(v, k.size // 2, mode="edge"), k, mode="valid") for n, v in refs.items()}
    return fine.energy_ev, refs


def saturation_level(w: WindowData):
    """The stored value of a saturated pixel, from sreels metadata (ADC maximum less the dark
    offset when it was subtracted); None when the file does not say."""
    det = (w.metadata.get("sreels", {}) if isinstance(w.metadata, dict) else {}).get("detector", {})
    if "adc_max_counts" not in det:
        return None
    return det["adc_max_counts"] - (det.get("dark_offset_counts", 0.0) if det.get("dark_subtracted", True) else 0.0)


def _dark(w: WindowData, dark: float) -> WindowData:
    if not dark:
        return w
    return dataclasses.replace(w, counts=w.counts - dark)


def l2_l3_ratio(fit, inst, f3, split_ev=461.8, lo_ev=455.0, hi_ev=470.0):
    """Ti L2/L3 white-line ratio per row, method stated: the data less the fitted power law and
    the fitted hydrogenic continuum steps (Ti4+ and Ti3+ in the fitted proportions), integrated
    over [lo, split - 1.7 f3) and [split - 1.7 f3, hi] eV on the row's shifted axis.  The ratio
    depends on this recipe (DESIGN.md); the references themselves hold 1.30 (Ti4+) and 1.25 (Ti3+)."""
    from ..forward import edges as ed

    e = fit.energy
    d = fit.value("delta")
    beam = ed.Beam(inst.beam_energy_kev, inst.collection_semiangle_mrad * 1e-3)
    es = e[None, :] - d[:, None]
    cont = (fit.value("Ti4+")[:, None] * ed.ti_l_continuum(es, beam)
            + fit.value("Ti3+")[:, None] * ed.ti_l_continuum(es, beam, ed.TI3_SHIFT_EV)) / fit.ref_scale
    bg = np.exp(fit.value("log_a")[:, None] - fit.value("r")[:, None] * np.log(e / fit.e_ref)[None, :])
    wl = fit.data - bg - cont
    split = (split_ev + ed.TI3_SHIFT_EV * f3)[:, None]
    l3 = np.sum(np.where((es >= lo_ev) & (es < split), wl, 0.0), 1)
    l2 = np.sum(np.where((es >= split) & (es <= hi_ev), wl, 0.0), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return l2 / l3


def _find(windows, lo, hi):
    for w in windows.values():
        if w.energy.contains(lo, hi):
            return w
    return None


def parent_rows(y, valid, parent_nm):
    if parent_nm is not None:
        sel = (y >= parent_nm[0]) & (y <= parent_nm[1]) & valid
    else:
        yy = y[valid]
        if yy.size == 0:
            return valid
        cut = yy.min() + (2.0 / 3.0) * (yy.max() - yy.min())
        sel = valid & (y >= cut)
    if sel.sum() < 3:
        raise SreelsInputError(f"the parent region {parent_nm} holds {int(sel.sum())} valid rows; expected >= 3")
    return sel


def _scale_if_gain_unknown(fit, w, s, notes):
    """Without a known gain the noise level is unknown: scale each row's covariance by its
    reduced chi^2 (as lmfit's scale_covar does) and say so."""
    if s.gain_counts_per_e or w.gain_counts_per_e:
        return fit
    notes.append("detector gain unknown (give --gain): errors scaled by sqrt(reduced chi^2) per row")
    f = np.maximum(fit.result.chi2_red, 1e-12)[:, None, None]
    return dataclasses.replace(fit, result=dataclasses.replace(fit.result, cov=fit.result.cov * f))


def _mean(v, err):
    """Plain mean and its standard error (inverse-variance weights would bias a ratio whose
    error scales with its value)."""
    return np.mean(v), np.sqrt(np.sum(err**2)) / v.size


def fit_image(windows: dict[str, WindowData], settings: FitSettings | None = None) -> FastResult:
    """Invert a measurement (windows keyed by name) with the fast path."""
    s = settings or FitSettings()
    t0 = time.perf_counter()
    wins = {k: _bin(_dark(w, s.dark_offset_counts), s.bin_rows) for k, w in windows.items()}
    for name, onset, fit_range in (("Li-K", 55.0, s.li_fit_ev), ("Ti-L2,3", 456.0, s.ti_fit_ev),
                                   ("O-K", 529.0, s.o_fit_ev)):
        for w in wins.values():
            if w.energy.offset_ev <= onset <= w.energy.end_ev and not w.energy.contains(*fit_range):
                raise SreelsInputError(
                    f"{w.source}: the {name} edge is in the window ({w.energy.offset_ev:.1f}-{w.energy.end_ev:.1f} eV)"
                    f" but its fit window {fit_range[0]:.0f}-{fit_range[1]:.0f} eV is not: record a wider window "
                    f"or set a shorter fit range")
    low = _find(wins, *s.li_fit_ev)
    ti_w = _find(wins, *s.ti_fit_ev)
    o_w = _find(wins, *s.o_fit_ev)
    if low is None and ti_w is None and o_w is None:
        ranges = {k: (round(w.energy.offset_ev, 1), round(w.energy.end_ev, 1)) for k, w in wins.items()}
        raise SreelsInputError(f"no window covers a Li-K ({s.li_fit_ev}), Ti-L2,3 ({s.ti_fit_ev}) or O-K "
                               f"({s.o_fit_ev}) fit range; windows cover {ranges} eV")
    any_w = next(iter(wins.values()))
    rows = any_w.counts.shape[0]
    pos = any_w.position
    inst = s.instrument()
    status = [set() for _ in range(rows)]
    for name, lo, hi in (("li", *s.li_fit_ev), ("ti", *s.ti_fit_ev), ("o", *s.o_fit_ev)):
        w = _find(wins, lo, hi)
        if w is not None:  # an over-subtracted dark leaves negative means: flagged, still fitted
            for i in np.flatnonzero(w.counts[:, w.energy.slice(lo, hi)].mean(1) < 0):
                status[i].add(f"{name}_negative_counts")
    cols: dict[str, np.ndarray] = {"y_nm": pos.y_nm}
    fits, timings, notes = {}, {}, []
    from tqdm.auto import tqdm
    bar = tqdm(total=3, desc="sreels fit", unit="edge", delay=2.0, leave=False)
    nan = np.full(rows, np.nan)

    def noise(w):
        g = s.gain_counts_per_e or w.gain_counts_per_e or 1.0
        rd = s.readout_noise_counts if s.readout_noise_counts is not None else (w.readout_noise_counts or 0.0)
        var = variance_model(w.counts, g, rd)
        sat = s.saturation_counts if s.saturation_counts is not None else saturation_level(w)
        return var, (w.counts >= sat if sat is not None else None)

    def flag_saturated(mask, w, fit_range, tag):
        """Saturated pixels get no weight; rows that had any inside the fit range say so."""
        if mask is not None:
            for i in np.flatnonzero(mask[:, w.energy.slice(*fit_range)].any(1)):
                status[i].add(f"{tag}_saturated")

    def references(w, edges, lo, hi):
        md = w.metadata if isinstance(w.metadata, dict) else {}
        decay = s.psf_decay if s.psf_decay is not None else md.get("sreels", {}).get("detector", {}).get(
            "psf_decay", 0.0)
        return fine_references(w.energy, lo, hi, inst, tuple(edges), float(decay or 0.0))

    def flag_rows(fit, tag):
        for i in np.flatnonzero(~fit.result.converged):
            status[i].add(f"{tag}_not_converged")

    # ---------------------------------------------------------------- Ti-L2,3
    n_ti = n_ti_err = delta = delta_err = None
    if ti_w is not None:
        ta = time.perf_counter()
        ef, refs = references(ti_w, ("Ti-L23",), *s.ti_fit_ev)
        var, mask = noise(ti_w)
        d0 = 0.0
        if s.calibrate_energy:
            d0 = global_shift(ti_w.energy, ti_w.counts.mean(0), np.interp(ti_w.energy.energy_ev, ef, refs["Ti4+"]),
                              *s.ti_fit_ev)
        fit = fit_linear_edges(ti_w.energy, ti_w.counts, var, (ef, refs), ("Ti4+", "Ti3+"), s.ti_fit_ev[0],
                               s.ti_fit_ev[1], s.ti_pre_edge_hi_ev, delta=np.full(rows, d0), mask=mask)
        fit = _scale_if_gain_unknown(fit, ti_w, s, notes)
        fits["Ti-L23"] = fit
        flag_saturated(mask, ti_w, s.ti_fit_ev, "ti")
        flag_rows(fit, "ti")
        a4, a3 = fit.value("Ti4+"), fit.value("Ti3+")
        v4, v3, c43 = fit.err("Ti4+") ** 2, fit.err("Ti3+") ** 2, fit.cov("Ti4+", "Ti3+")
        n_ti = a4 + a3
        n_ti_err = np.sqrt(v4 + v3 + 2 * c43)
        has_ti = n_ti > 5 * n_ti_err
        with np.errstate(invalid="ignore", divide="ignore"):
            f3 = a3 / n_ti
            f3_err = np.sqrt(np.clip(a4**2 * v3 + a3**2 * v4 - 2 * a3 * a4 * c43, 0, None)) / n_ti**2
        delta, delta_err = fit.value("delta"), fit.err("delta")
        for i in np.flatnonzero(~has_ti):
            status[i].add("no_ti")
        cols["ti3_fraction"] = np.where(has_ti, np.clip(f3, 0, 1), np.nan)
        cols["ti3_fraction_err"] = np.where(has_ti, f3_err, np.nan)
        cols["ti3_fraction_raw"] = np.where(has_ti, f3, np.nan)
        cols["ti_shift_ev"] = np.where(has_ti, delta, np.nan)
        cols["ti_shift_ev_err"] = np.where(has_ti, delta_err, np.nan)
        cols["ti_chi2_red"] = fit.result.chi2_red
        cols["ti_l2_l3"] = np.where(has_ti, l2_l3_ratio(fit, inst, np.clip(f3, 0, 1)), np.nan)
        timings["ti"] = time.perf_counter() - ta
    bar.update()
    # ------------------------------------------------------------------- Li-K
    if low is not None:
        ta = time.perf_counter()
        ef, refs = references(low, s.li_components, *s.li_fit_ev)
        var, mask = noise(low)
        # the row's energy distortion from the Ti fit (common to all windows) holds the references
        d_li = None if delta is None else np.where(np.isfinite(delta), delta, np.nanmedian(delta))
        if d_li is not None and abs(float(np.nanmedian(d_li))) > 2.0:  # windows calibrated apart
            d_li = d_li - np.nanmedian(d_li)
        fit = fit_linear_edges(low.energy, low.counts, var, (ef, refs), s.li_components, s.li_fit_ev[0],
                               s.li_fit_ev[1], s.li_pre_edge_hi_ev, delta=d_li, mask=mask, fit_delta=False)
        fit = _scale_if_gain_unknown(fit, low, s, notes)
        fits["Li-K"] = fit
        flag_saturated(mask, low, s.li_fit_ev, "li")
        flag_rows(fit, "li")
        a_li, a_li_err = fit.value("Li-K"), fit.err("Li-K")
        valid_li = np.isfinite(a_li)
        y = pos.y_nm
        if n_ti is not None:
            valid = valid_li & (n_ti > 5 * n_ti_err)
            with np.errstate(invalid="ignore", divide="ignore"):
                q = a_li / n_ti
                q_err = np.abs(q) * np.hypot(a_li_err / a_li, n_ti_err / n_ti)
        else:
            valid = valid_li & (a_li > 3 * a_li_err)
            q, q_err = a_li, a_li_err
        par = parent_rows(y, valid, s.parent_nm)
        qm, qm_err = _mean(q[par], q_err[par])
        am, am_err = _mean(a_li[par], a_li_err[par])
        cols["li_rel"] = np.where(valid, q / qm, np.nan)
        cols["li_rel_err"] = np.where(valid, np.hypot(q_err / qm, q * qm_err / qm**2), np.nan)
        # the normalisation's relative error is common to every row: kept apart for derived numbers
        cols["li_rel_err_row"] = np.where(valid, q_err / qm, np.nan)
        cols["li_norm_rel_err"] = np.full(rows, qm_err / qm)
        cols["li_areal_rel"] = a_li / am
        cols["li_areal_rel_err"] = np.hypot(a_li_err / am, a_li * am_err / am**2)
        cols["parent"] = par.astype(int)
        cols["li_chi2_red"] = fit.result.chi2_red
        timings["li"] = time.perf_counter() - ta
    bar.update()
    # -------------------------------------------------------------------- O-K
    if o_w is not None:
        ta = time.perf_counter()
        ef, refs = references(o_w, ("Ti-L23", "O-K") if o_w is ti_w else ("O-K",), *s.o_fit_ev)
        var, mask = noise(o_w)
        if delta is not None and s.shift_correction:
            d_row = np.where(np.isfinite(delta) & (n_ti > 5 * n_ti_err), delta, np.nanmedian(delta))
            d_err = np.where(np.isfinite(delta) & (n_ti > 5 * n_ti_err), delta_err, 0.0)
        else:
            d0 = global_shift(o_w.energy, o_w.counts.mean(0), np.interp(o_w.energy.energy_ev, ef, refs[
                "O-K continuum"] + refs["O-K prepeaks"]), *s.o_fit_ev) if s.calibrate_energy else 0.0
            d_row, d_err = np.full(rows, d0), np.zeros(rows)
        # the Ti-L2,3 continuum runs under O-K: fixed from the Ti fit when both share the window
        under = None
        if o_w is ti_w:
            tf = fits["Ti-L23"]
            under = [(refs["Ti4+"] / tf.ref_scale, tf.value("Ti4+")), (refs["Ti3+"] / tf.ref_scale, tf.value("Ti3+"))]
        fit = fit_o_k(o_w.energy, o_w.counts, var, (ef, refs), s.o_fit_ev[0], s.o_fit_ev[1], s.o_pre_edge_hi_ev,
                      d_row, s.resolution_fwhm_ev, mask=mask, fixed=under)
        fit = _scale_if_gain_unknown(fit, o_w, s, notes)
        fits["O-K"] = fit
        flag_saturated(mask, o_w, s.o_fit_ev, "o")
        flag_rows(fit, "o")
        has_o = fit.value("continuum") > 5 * fit.err("continuum")
        for i in np.flatnonzero(~has_o):
            status[i].add("no_o")
        # peak positions on the reference energy scale: the row's shift removed, its error added
        ea = fit.value("a_ev") - d_row
        eb = fit.value("b_ev") - d_row
        ea_err = np.hypot(fit.err("a_ev"), d_err)
        eb_err = np.hypot(fit.err("b_ev"), d_err)
        r, r_err = r_from_energy_b(eb, eb_err, s.threshold_ev, 0.0, s.c_ev_nm2, s.c_err_ev_nm2)
        cols["peak_a_ev"] = np.where(has_o, ea, np.nan)
        cols["peak_a_ev_err"] = np.where(has_o, ea_err, np.nan)
        cols["peak_b_ev"] = np.where(has_o, eb, np.nan)
        cols["peak_b_ev_err"] = np.where(has_o, eb_err, np.nan)
        cols["r_oo_nm"] = np.where(has_o, r, np.nan)
        cols["r_oo_nm_err"] = np.where(has_o, r_err, np.nan)
        cols["o_chi2_red"] = fit.result.chi2_red
        timings["o"] = time.perf_counter() - ta
    bar.update()
    bar.close()
    for k in ("li_rel", "li_rel_err", "ti3_fraction", "ti3_fraction_err", "peak_a_ev", "peak_a_ev_err",
              "peak_b_ev", "peak_b_ev_err", "r_oo_nm", "r_oo_nm_err"):
        cols.setdefault(k, nan)
    st = np.array(["|".join(sorted(x)) if x else "ok" for x in status])
    timings["total"] = time.perf_counter() - t0
    return FastResult(pos, cols, st, fits, s, timings, sorted(set(notes)))
