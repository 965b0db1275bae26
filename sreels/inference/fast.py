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
from .load import WindowData, check_fit_input


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
    ti_references: tuple = ()               # measured standards: (("Ti4+", path), ("Ti3+", path)), see references
    ti_norm_ev: tuple = (470.0, 480.0)      # per-atom normalisation window of measured standards

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


def _binned_position(pos: PositionAxis, n: int) -> PositionAxis:
    """The position axis after summing groups of ``n`` rows (an incomplete last group dropped)."""
    if n == 1:
        return pos
    return PositionAxis(pos.offset_nm + 0.5 * (n - 1) * pos.scale_nm, pos.scale_nm * n, pos.size // n)


def _bin(w: WindowData, n: int) -> WindowData:
    if n == 1:
        return w
    rows = (w.counts.shape[0] // n) * n
    c = w.counts[:rows].reshape(-1, n, w.counts.shape[1]).sum(1)
    return WindowData(w.name, w.energy, c, _binned_position(w.position, n), w.source, w.gain_counts_per_e,
                      w.readout_noise_counts, (c.shape[0],), w.metadata)


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
    absurd = ~np.isfinite(d) | (np.abs(d) > 50.0)  # a shift beyond the fit window: no ratio (and no 1e14 eV grid)
    d = np.where(absurd, 0.0, d)
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
        return np.where(absurd, np.nan, l2 / l3)


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


@dataclass
class _Run:
    """What the edge fits of one image share: settings, per-row status flags, notes."""

    s: FitSettings
    rows: int
    status: list
    notes: list = field(default_factory=list)
    means: dict | None = None   # window name -> mean spectrum of the whole image (chunked fits)
    ti_d0: float = 0.0          # the Ti fit's global energy offset (eV)

    def mean(self, w: WindowData) -> np.ndarray:
        """The whole image's mean spectrum of ``w`` (global shifts must not depend on a chunk)."""
        if self.means is not None and w.name in self.means:
            return self.means[w.name]
        return w.counts.mean(0)

    def prepare(self, w: WindowData, edges, lo, hi):
        """References, per-pixel variances and the saturation mask of a window's fit range."""
        s = self.s
        md = w.metadata if isinstance(w.metadata, dict) else {}
        decay = s.psf_decay if s.psf_decay is not None else md.get("sreels", {}).get("detector", {}).get(
            "psf_decay", 0.0)
        refs = fine_references(w.energy, lo, hi, s.instrument(), tuple(edges), float(decay or 0.0))
        g = s.gain_counts_per_e or w.gain_counts_per_e or 1.0
        rd = s.readout_noise_counts if s.readout_noise_counts is not None else (w.readout_noise_counts or 0.0)
        sat = s.saturation_counts if s.saturation_counts is not None else saturation_level(w)
        return refs, variance_model(w.counts, g, rd), (w.counts >= sat if sat is not None else None)

    def finish(self, fit, w: WindowData, mask, fit_range, tag):
        """Errors scaled when the gain is unknown; saturated and unconverged rows flagged."""
        fit = _scale_if_gain_unknown(fit, w, self.s, self.notes)
        if mask is not None:  # saturated pixels had no weight; rows that had any say so
            for i in np.flatnonzero(mask[:, w.energy.slice(*fit_range)].any(1)):
                self.status[i].add(f"{tag}_saturated")
        for i in np.flatnonzero(~fit.result.converged):
            self.status[i].add(f"{tag}_not_converged")
        return fit

    def flag(self, rows_mask, tag):
        for i in np.flatnonzero(rows_mask):
            self.status[i].add(tag)


def _fit_ti(run: _Run, w: WindowData):
    s = run.s
    (ef, refs), var, mask = run.prepare(w, ("Ti-L23",), *s.ti_fit_ev)
    if s.ti_references:
        from .references import REFERENCE_NAMES, with_measured
        refs, off = with_measured(ef, refs, s.ti_references, (s.ti_fit_ev[0], s.ti_pre_edge_hi_ev), s.ti_norm_ev)
        given = {n for n, _ in s.ti_references}
        run.notes.append("Ti-L2,3 MLLS with measured standards for " + ", ".join(sorted(given)) +
                         "".join(f"; {n} from the forward model" for n in REFERENCE_NAMES if n not in given) +
                         f"; standards moved by {-off:+.2f} eV onto the model's energy scale")
    d0 = 0.0
    if s.calibrate_energy:
        d0 = global_shift(w.energy, run.mean(w), np.interp(w.energy.energy_ev, ef, refs["Ti4+"]), *s.ti_fit_ev)
    run.ti_d0 = d0
    fit = fit_linear_edges(w.energy, w.counts, var, (ef, refs), ("Ti4+", "Ti3+"), s.ti_fit_ev[0], s.ti_fit_ev[1],
                           s.ti_pre_edge_hi_ev, delta=np.full(run.rows, d0), mask=mask)
    fit = run.finish(fit, w, mask, s.ti_fit_ev, "ti")
    a4, a3 = fit.value("Ti4+"), fit.value("Ti3+")
    v4, v3, c43 = fit.err("Ti4+") ** 2, fit.err("Ti3+") ** 2, fit.cov("Ti4+", "Ti3+")
    n_ti, n_ti_err = a4 + a3, np.sqrt(v4 + v3 + 2 * c43)
    has = n_ti > 5 * n_ti_err
    run.flag(~has, "no_ti")
    with np.errstate(invalid="ignore", divide="ignore"):
        f3 = a3 / n_ti
        f3_err = np.sqrt(np.clip(a4**2 * v3 + a3**2 * v4 - 2 * a3 * a4 * c43, 0, None)) / n_ti**2
    delta, delta_err = fit.value("delta"), fit.err("delta")
    cols = {
        "ti3_fraction": np.where(has, np.clip(f3, 0, 1), np.nan), "ti3_fraction_err": np.where(has, f3_err, np.nan),
        "ti3_fraction_raw": np.where(has, f3, np.nan),
        "ti_shift_ev": np.where(has, delta, np.nan), "ti_shift_ev_err": np.where(has, delta_err, np.nan),
        "ti_chi2_red": fit.result.chi2_red,
        "ti_l2_l3": np.where(has, l2_l3_ratio(fit, s.instrument(), np.clip(f3, 0, 1)), np.nan),
    }
    # Ti atoms per row (valence-independent: per-atom references) and the row's energy shift
    ti = {"n": n_ti, "n_err": n_ti_err, "has": has,
          "delta": np.where(has, delta, run.ti_d0),  # rows without Ti: the image's global offset
          "delta_err": np.where(has, delta_err, 0.0)}
    return fit, cols, ti


def _fit_li(run: _Run, w: WindowData, ti):
    """Li-K per row: the raw amount and (with Ti) the amount per Ti atom; the parent
    normalisation needs the whole image and is :func:`_normalise_li`'s."""
    s = run.s
    (ef, refs), var, mask = run.prepare(w, s.li_components, *s.li_fit_ev)
    d_li = None
    if ti is not None:  # the row's energy distortion from the Ti fit holds the references; a real
        # axis's global offset (> 2 eV) is the Ti window's, not the Li window's: removed
        d_li = ti["delta"] - (run.ti_d0 if abs(run.ti_d0) > 2.0 else 0.0)
    fit = fit_linear_edges(w.energy, w.counts, var, (ef, refs), s.li_components, s.li_fit_ev[0], s.li_fit_ev[1],
                           s.li_pre_edge_hi_ev, delta=d_li, mask=mask, fit_delta=False)
    fit = run.finish(fit, w, mask, s.li_fit_ev, "li")
    a, a_err = fit.value("Li-K"), fit.err("Li-K")
    if ti is not None:  # Li per Ti atom: thickness and AlPO4 grains (no Li, no Ti) cancel
        valid = np.isfinite(a) & ti["has"]
        with np.errstate(invalid="ignore", divide="ignore"):
            q = a / ti["n"]
            q_err = np.abs(q) * np.hypot(a_err / a, ti["n_err"] / ti["n"])
    else:
        valid = np.isfinite(a) & (a > 3 * a_err)
        q, q_err = a, a_err
    return fit, {"_li_a": a, "_li_a_err": a_err, "_li_q": q, "_li_q_err": q_err, "_li_valid": valid,
                 "li_chi2_red": fit.result.chi2_red}


def _normalise_li(cols: dict, y_nm, parent_nm, notes: list) -> None:
    """Li relative to the parent region (default: the far third of the whole image), in place;
    the raw columns ``_li_*`` of :func:`_fit_li` are consumed."""
    if "_li_a" not in cols:
        return
    a, a_err, q, q_err = (cols.pop(k) for k in ("_li_a", "_li_a_err", "_li_q", "_li_q_err"))
    valid = cols.pop("_li_valid").astype(bool)
    par = parent_rows(y_nm, valid, parent_nm)
    if par.any():
        qm, qm_err = _mean(q[par], q_err[par])
        am, am_err = _mean(a[par], a_err[par])
    else:
        qm = qm_err = am = am_err = np.nan
        notes.append("no row has a valid Li-K fit: li_rel and li_areal_rel are not normalised (NaN)")
    cols.update({
        "li_rel": np.where(valid, q / qm, np.nan),
        "li_rel_err": np.where(valid, np.hypot(q_err / qm, q * qm_err / qm**2), np.nan),
        # the normalisation's relative error is common to every row: kept apart for derived numbers
        "li_rel_err_row": np.where(valid, q_err / qm, np.nan),
        "li_norm_rel_err": np.full(a.size, qm_err / qm),
        "li_areal_rel": a / am, "li_areal_rel_err": np.hypot(a_err / am, a * am_err / am**2),
        "parent": par.astype(int),
    })


def _fit_o(run: _Run, w: WindowData, ti, ti_fit):
    s = run.s
    same = ti_fit is not None  # the Ti fit was made in this window
    (ef, refs), var, mask = run.prepare(w, ("Ti-L23", "O-K") if same else ("O-K",), *s.o_fit_ev)
    if ti is not None and s.shift_correction:
        d_row, d_err = ti["delta"], ti["delta_err"]
    else:
        d0 = global_shift(w.energy, run.mean(w), np.interp(w.energy.energy_ev, ef, refs["O-K continuum"]
                                                           + refs["O-K prepeaks"]), *s.o_fit_ev) \
            if s.calibrate_energy else 0.0
        d_row, d_err = np.full(run.rows, d0), np.zeros(run.rows)
    # the Ti-L2,3 continuum runs under O-K: fixed from the Ti fit when both share the window
    under = [(refs[n] / ti_fit.ref_scale, ti_fit.value(n)) for n in ("Ti4+", "Ti3+")] if same else None
    fit = fit_o_k(w.energy, w.counts, var, (ef, refs), s.o_fit_ev[0], s.o_fit_ev[1], s.o_pre_edge_hi_ev,
                  d_row, s.resolution_fwhm_ev, mask=mask, fixed=under)
    fit = run.finish(fit, w, mask, s.o_fit_ev, "o")
    has = fit.value("continuum") > 5 * fit.err("continuum")
    run.flag(~has, "no_o")
    # peak positions on the reference energy scale: the row's shift removed, its error added
    ea, eb = fit.value("a_ev") - d_row, fit.value("b_ev") - d_row
    ea_err, eb_err = np.hypot(fit.err("a_ev"), d_err), np.hypot(fit.err("b_ev"), d_err)
    r, r_err = r_from_energy_b(eb, eb_err, s.threshold_ev, 0.0, s.c_ev_nm2, s.c_err_ev_nm2)
    cols = {k: np.where(has, v, np.nan) for k, v in (
        ("peak_a_ev", ea), ("peak_a_ev_err", ea_err), ("peak_b_ev", eb), ("peak_b_ev_err", eb_err),
        ("r_oo_nm", r), ("r_oo_nm_err", r_err))}
    cols["o_chi2_red"] = fit.result.chi2_red
    return fit, cols


def _check_windows(wins, s: FitSettings):
    for name, onset, fit_range in (("Li-K", 55.0, s.li_fit_ev), ("Ti-L2,3", 456.0, s.ti_fit_ev),
                                   ("O-K", 529.0, s.o_fit_ev)):
        for w in wins.values():
            if w.energy.offset_ev <= onset <= w.energy.end_ev and not w.energy.contains(*fit_range):
                raise SreelsInputError(
                    f"{w.source}: the {name} edge is in the window ({w.energy.offset_ev:.1f}-{w.energy.end_ev:.1f} eV)"
                    f" but its fit window {fit_range[0]:.0f}-{fit_range[1]:.0f} eV is not: record a wider window "
                    f"or set a shorter fit range")
    found = {k: _find(wins, *r) for k, r in (("li", s.li_fit_ev), ("ti", s.ti_fit_ev), ("o", s.o_fit_ev))}
    if all(v is None for v in found.values()):
        ranges = {k: (round(w.energy.offset_ev, 1), round(w.energy.end_ev, 1)) for k, w in wins.items()}
        raise SreelsInputError(f"no window covers a Li-K ({s.li_fit_ev}), Ti-L2,3 ({s.ti_fit_ev}) or O-K "
                               f"({s.o_fit_ev}) fit range; windows cover {ranges} eV")
    return found


def _prepared(windows: dict, s: FitSettings) -> dict:
    return {k: _bin(_dark(w, s.dark_offset_counts), s.bin_rows) for k, w in windows.items()}


def _fit_rows(wins: dict, s: FitSettings, means: dict | None = None, progress: bool = True):
    """The per-row fits of (a chunk of) an image: columns (Li not yet normalised), status sets,
    the edge fits, timings and notes."""
    from tqdm.auto import tqdm

    found = _check_windows(wins, s)
    rows = next(iter(wins.values())).counts.shape[0]
    run = _Run(s, rows, [set() for _ in range(rows)], means=means)
    for tag, w in found.items():  # an over-subtracted dark leaves negative means: flagged, still fitted
        if w is not None:
            fr = {"li": s.li_fit_ev, "ti": s.ti_fit_ev, "o": s.o_fit_ev}[tag]
            run.flag(w.counts[:, w.energy.slice(*fr)].mean(1) < 0, f"{tag}_negative_counts")
    cols: dict[str, np.ndarray] = {}
    fits, timings, ti = {}, {}, None
    with tqdm(total=3, desc="sreels fit", unit="edge", delay=2.0, leave=False, disable=not progress) as bar:
        for tag, key in (("ti", "Ti-L23"), ("li", "Li-K"), ("o", "O-K")):
            ta = time.perf_counter()
            if found[tag] is not None:
                if tag == "ti":
                    fits[key], c, ti = _fit_ti(run, found[tag])
                elif tag == "li":
                    fits[key], c = _fit_li(run, found[tag], ti)
                else:
                    fits[key], c = _fit_o(run, found[tag], ti, fits.get("Ti-L23") if found["o"] is found["ti"] else None)
                cols.update(c)
                timings[tag] = time.perf_counter() - ta
            bar.update()
    return cols, run.status, fits, timings, run.notes


def _result(pos: PositionAxis, cols: dict, status: list, fits: dict, s: FitSettings, timings: dict,
            notes: list) -> FastResult:
    """The whole image's columns: Li normalised to the parent, missing profiles NaN, status strings."""
    rows = pos.size
    cols = {"y_nm": pos.y_nm, **cols}
    _normalise_li(cols, pos.y_nm, s.parent_nm, notes)
    for k in ("li_rel", "li_rel_err", "ti3_fraction", "ti3_fraction_err", "peak_a_ev", "peak_a_ev_err",
              "peak_b_ev", "peak_b_ev_err", "r_oo_nm", "r_oo_nm_err"):
        cols.setdefault(k, np.full(rows, np.nan))
    st = np.array(["|".join(sorted(x)) if x else "ok" for x in status])
    return FastResult(pos, cols, st, fits, s, timings, sorted(set(notes)))


def fit_image(windows: dict[str, WindowData], settings: FitSettings | None = None) -> FastResult:
    """Invert a measurement (windows keyed by name) with the fast path: Ti-L2,3 first (Ti atoms
    per row and the row's energy shift), then Li-K (per Ti atom) and O-K (on the Ti-calibrated
    axis).  Inputs are not modified.  For images that do not fit in memory see
    :func:`fit_image_chunked`."""
    s = settings or FitSettings()
    check_fit_input(windows, s)
    t0 = time.perf_counter()
    wins = _prepared(windows, s)
    cols, status, fits, timings, notes = _fit_rows(wins, s)
    timings["total"] = time.perf_counter() - t0
    return _result(next(iter(wins.values())).position, cols, status, fits, s, timings, notes)


def fit_image_chunked(windows: dict[str, WindowData], settings: FitSettings | None = None,
                      chunk_rows: int = 4096) -> FastResult:
    """:func:`fit_image` over blocks of ``chunk_rows`` rows, for images that do not fit in
    memory: ``counts`` may be Dask arrays (``load_measurement(..., lazy=True)``), read one
    block at a time.  What depends on the whole image is computed on the whole image first
    (the mean spectra behind the global energy offsets) or last (the parent normalisation of
    Li, the derived numbers), so the result equals :func:`fit_image`'s.  The per-row edge
    fits are not kept (``fits`` is empty: no spectra panels or residual images)."""
    from tqdm.auto import tqdm

    s = settings or FitSettings()
    check_fit_input(windows, s)
    if int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise SreelsInputError(f"chunk_rows = {chunk_rows!r}: expected an integer >= 1")
    t0 = time.perf_counter()
    n = s.bin_rows
    step = max(n, (int(chunk_rows) // n) * n)
    any_w = next(iter(windows.values()))
    total = (any_w.counts.shape[0] // n) * n
    if total == 0:
        raise SreelsInputError(f"{any_w.source}: {any_w.counts.shape[0]} rows, fewer than --bin {n}")
    means = {}
    windows = {k: dataclasses.replace(w, name=k) for k, w in windows.items()}  # unique names: the keys
    for k, w in windows.items():  # the binned, dark-subtracted image's mean spectrum
        m = w.counts[:total].mean(0)
        m = np.asarray(m.compute() if hasattr(m, "compute") else m, dtype=float)
        means[k] = n * (m - s.dark_offset_counts)
    parts, status, notes, timings = [], [], [], {}
    starts = range(0, total, step)
    for i0 in tqdm(starts, desc="sreels fit (chunks)", unit="chunk", delay=2.0, leave=False):
        i1 = min(i0 + step, total)
        chunk = {}
        for k, w in windows.items():
            c = w.counts[i0:i1]
            c = np.asarray(c.compute() if hasattr(c, "compute") else c, dtype=float)
            pos = PositionAxis(w.position.offset_nm + i0 * w.position.scale_nm, w.position.scale_nm, i1 - i0)
            bad = ~np.isfinite(c)
            if bad.any():  # a lazily read file is checked block by block
                r, ch = np.argwhere(bad)[0]
                raise SreelsInputError(f"{w.source}: NaN/inf values (first at row {i0 + r}, "
                                       f"{w.energy.energy_ev[ch]:.2f} eV); expected finite counts")
            chunk[k] = dataclasses.replace(w, counts=c, position=pos, nav_shape=(i1 - i0,))
        c, st, _, tm, nt = _fit_rows(_prepared(chunk, s), s, means, progress=False)
        parts.append(c)
        status += st
        notes += nt
        for key, v in tm.items():
            timings[key] = timings.get(key, 0.0) + v
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    full = _binned_position(any_w.position, n)
    notes.append(f"fitted in {len(starts)} chunks of <= {step} rows: per-row edge fits not kept "
                 "(no spectra panels or residual images)")
    timings["total"] = time.perf_counter() - t0
    return _result(full, cols, status, {}, s, timings, notes)
