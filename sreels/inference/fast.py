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
from ..config import LOWLOSS_NAME, Instrument
from ..errors import SreelsInputError
from ..resources import run_concurrently, single_threaded_blas
from ..forward.detector import psf_kernel, psf_variance_factor
from ..forward.model import reference_spectra
from ..structures.resonance import r_from_energy_b
from ..axes import EnergyAxis
from .edgefits import PLURAL_TAIL, FINE_STEP_EV, Shifted, fit_linear_edges, rows_at, global_shift, variance_model
from .rowsums import row_mean
from .okpeaks import (O_K_ONSET_EV, OKRows, effective_fwhm, measure_o_k, noise_scale, noise_scale_of,
                      resolution_systematic_ev)
from .load import WindowData, check_fit_input
from .lipfu import li_per_fu, li_per_fu_o
from .oamount import fit_o_amount
from .lowloss import _exposure, apply_low_loss, readout_noise, saturated_pixels


@dataclass(frozen=True)
class FitSettings:
    """Choices of the fast path (energies in eV)."""

    li_fit_ev: tuple = (46.0, 71.0)        # below Al-L2,3 (73 eV), which AlPO4 grains carry
    li_components: tuple = ("Li-K", "Ti-M23")  # Ti-M2,3 tail under Li-K, free amplitude
    li_pre_edge_hi_ev: float = 54.5
    ti_fit_ev: tuple = (440.0, 480.0)
    ti_pre_edge_hi_ev: float = 452.0
    o_max_ev: float | None = None           # upper limit of the peak-"b" search (keeps a known edge out)
    parent_nm: tuple | None = None          # y-range of the parent electrolyte; None: far third
    gain_counts_per_e: float | None = None  # None: from the file, else 1
    readout_noise_counts: float | None = None
    saturation_counts: float | None = None
    resolution_fwhm_ev: float | None = None  # None: from the files' metadata, else 0.5 (said in a note)
    psf_decay: float | None = None          # detector PSF along energy; None: from the file, else 0
    dark_offset_counts: float = 0.0         # subtracted from every pixel before fitting
    beam_energy_kev: float | None = None          # None: from the files' metadata, else 300 kV
    collection_semiangle_mrad: float | None = None  # None: from the files' metadata, else 10 mrad
    c_ev_nm2: float = 2.820
    c_err_ev_nm2: float = 0.0
    r_oo_rule_nm: tuple | None = None       # (lo, hi): R_OO beyond it withheld (o_r_beyond_rule); None: no check
    threshold_ev: float | None = None       # None: O-K threshold measured per row; 529.0: the study's
                                            # convention on a calibrated axis (okpeaks module docstring)
    calibrate_energy: bool = True
    shift_correction: bool = True
    bin_rows: int = 1
    ti_references: tuple = ()               # measured standards: (("Ti4+", path), ("Ti3+", path)), see references
    ti_norm_ev: tuple = (470.0, 480.0)      # per-atom normalisation window of measured standards
    zlp_referenced: bool = False            # set by the fit when a low-loss window referenced the rows

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


def _bin(w: WindowData, n: int, s: FitSettings) -> WindowData:
    """Sum groups of ``n`` rows (an incomplete last group dropped).  The sum keeps the gain (counts per
    electron) and the per-row dark offset (subtracted before, :func:`_dark`); what one read carries does not
    carry over: the sum was read ``n`` times (``rows_summed``: readout variance n r^2,
    :func:`.lowloss.readout_noise`), and its saturation is the mask of the rows before the sum (``saturated``,
    :func:`.lowloss.saturated_pixels`).  Exposures stay one row's: only
    their ratios between windows binned alike enter the fit."""
    if n == 1:
        return w
    rows = (w.counts.shape[0] // n) * n
    c = w.counts[:rows].reshape(-1, n, w.counts.shape[1]).sum(1)
    sat = saturated_pixels(w, s)
    if sat is not None:
        sat = sat[:rows].reshape(-1, n, w.counts.shape[1]).any(1)
    return dataclasses.replace(w, counts=c, position=_binned_position(w.position, n), nav_shape=(c.shape[0],),
                               rows_summed=w.rows_summed * n, saturated=sat)


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


def _dark(w: WindowData, dark: float) -> WindowData:
    if not dark:
        return w
    return dataclasses.replace(w, counts=w.counts - dark)


@functools.lru_cache(maxsize=8)
def _ti_continua(e_lo: float, e_hi: float, beam):
    """Ti4+ and Ti3+ L2,3 continua on a 0.01 eV grid over [e_lo - 51, e_hi + 51] eV (cached)."""
    from ..forward import edges as ed

    g = np.arange(e_lo - 51.0, e_hi + 51.0, 0.01)
    return g, ed.ti_l_continuum(g, beam), ed.ti_l_continuum(g, beam, ed.TI3_SHIFT_EV)


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
    # the continua on a 0.01 eV grid fixed by the window's axis (not by the rows' shifts), so that a
    # row's ratio does not depend on which other rows are fitted with it (blocks of a Dask fit)
    g, c4, c3 = _ti_continua(float(e.min()), float(e.max()), beam)
    cont = (fit.value("Ti4+")[:, None] * np.interp(es, g, c4)
            + fit.value("Ti3+")[:, None] * np.interp(es, g, c3)) / fit.ref_scale
    bg = np.exp(fit.value("log_a")[:, None] - fit.value("r")[:, None] * np.log(e / fit.e_ref)[None, :])
    wl = fit.data - bg - cont
    split = (split_ev + ed.TI3_SHIFT_EV * f3)[:, None]
    l3 = np.sum(np.where((es >= lo_ev) & (es < split), wl, 0.0), 1)
    l2 = np.sum(np.where((es >= split) & (es <= hi_ev), wl, 0.0), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(absurd, np.nan, l2 / l3)


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


#: Smallest edge contrast (the fitted edge's largest contribution over the background beneath
#: it) taken as an edge present: Ti-L2,3 white lines of Ti oxides stand 0.9-2.9x above their
#: background (SrTiO3, TiO2, LASGTP simulations); shape mismatch in oxides without Ti gives
#: <= 0.04 (CoO, LSMO, Fe/Cr oxide, measured in validation/02_real_data.py).
MIN_CONTRAST = {"ti": 0.10}


def edge_contrast(fit) -> np.ndarray:
    """Per row, the largest (model - background) over the background at the same energy."""
    bg = np.exp(fit.value("log_a")[:, None] - fit.value("r")[:, None] * np.log(fit.energy / fit.e_ref)[None, :])
    part = fit.model - bg
    i = np.argmax(part, 1)
    r = np.arange(part.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return part[r, i] / bg[r, i]


#: M2,3 edges of transition metals under the Li-K edge (onsets in eV, exspy's element
#: database): their shapes are not modelled, so Li-K is not measured where they are found.
LI_OVERLAPS = {"Cr-L3": "Cr-M23", "Mn-L3": "Mn-M23", "Fe-L3": "Fe-M23", "Co-L3": "Co-M23", "Ni-L3": "Ni-M23"}


def poor_fit(chi2_red, dof):
    """Rows whose reduced chi^2 exceeds 1 by more than 5 standard deviations of its
    distribution (sqrt(2 / dof)): the model does not describe them."""
    return np.asarray(chi2_red) > 1.0 + 5.0 * np.sqrt(2.0 / np.maximum(dof, 1))


def widen_poor_fits(fit):
    """Scale each row's covariance by max(1, chi2_red): where the model does not describe the
    data the scatter of the residuals, not the noise model, sets the errors.  Returns the
    widened fit and the rows where the excess is significant (:func:`poor_fit`)."""
    res = fit.result
    f = np.maximum(np.nan_to_num(res.chi2_red, nan=1.0), 1.0)[:, None, None]
    dof = fit.data.shape[1] - res.params.shape[1]
    return dataclasses.replace(fit, result=dataclasses.replace(res, cov=res.cov * f)), poor_fit(res.chi2_red, dof)


#: Status flags that warn without withholding a row's numbers (their errors are widened).
WARNING_FLAGS = ("_poor_fit", "_background_poor")
#: R_OO of a row is beyond the O-O distances the rule dE R^2 = C is known on (FitSettings.r_oo_rule_nm): R_OO is
#: not given (NaN), the edge's other numbers (peaks, dE_b) are kept
R_BEYOND_RULE = "o_r_beyond_rule"
BEYOND_RULE_HINT = ("`sreels calibrate --spectra` on standards like this sample and `--calibration` replace the "
                    "rule's constant and this check")
#: Which edges' flags withhold a quantity: Li per Ti atom needs both edges.
EDGES_OF = {"li": ("li", "ti"), "ti": ("ti",), "o": ("o",), None: ("li", "ti", "o")}


def usable(status, edge: str | None = None) -> np.ndarray:
    """Rows whose numbers of ``edge`` ("li", "ti", "o"; None: all) may be used: no flag of
    those edges other than warnings (:data:`WARNING_FLAGS`)."""
    tags = EDGES_OF[edge]
    return np.array([not any(_withholds(f, tags) for f in str(s).split("|")) for s in np.asarray(status)], bool)


def _withholds(flag: str, tags) -> bool:
    """Whether a status flag withholds the numbers of the edges ``tags``: one of theirs (``no_`` prefix
    included), not "ok" and not a warning (:data:`WARNING_FLAGS`)."""
    return (flag != "ok" and flag.removeprefix("no_").split("_")[0] in tags and not flag.endswith(WARNING_FLAGS)
            and flag != R_BEYOND_RULE)


def gives_r_oo(status) -> np.ndarray:
    """Rows that give R_OO: usable for O-K and not beyond the rule's range (:data:`R_BEYOND_RULE`: their peaks
    and dE_b are kept, R_OO is not)."""
    return usable(status, "o") & np.array([R_BEYOND_RULE not in str(s).split("|") for s in np.asarray(status)], bool)


def usable_by_edge(status) -> dict:
    return {k: usable(status, k) for k in ("li", "ti", "o")}


#: The edge ("li", "ti", "o" of :func:`usable_by_edge`) whose rows give each per-row number
EDGE_OF_NUMBER = {"li_rel": "li", "ti3_fraction": "ti", "r_oo_nm": "o"}


#: What a withholding flag asks of the user, where a setting or the recording can help (the reference lists every
#: flag: docs/reference.rst)
WITHHELD_HINTS = {"low_snr": "sum rows (sreels fit --bin N) or record more electrons per row",
                  "beyond_rule": BEYOND_RULE_HINT,
                  "saturated": "a shorter exposure or a lower-gain read-out",
                  "not_converged": "see residuals.png"}


def withheld_reasons(status) -> dict:
    """Per edge ("li", "ti", "o") whose numbers no row may use: why, as one sentence (the withholding flags of that
    edge with the rows that carry them, most frequent first, and a hint where one helps); edges with a usable row
    are left out.  So a summary says "withheld on every row: o_threshold_low_snr on 330 of 330 rows" where it would
    otherwise read as if the edge were not in the data."""
    st = [str(x).split("|") for x in np.asarray(status)]
    out = {}
    for edge in ("li", "ti", "o"):
        # the "o" edge's number, R_OO, is not given on a row beyond the rule's range, whose peaks are kept
        if (gives_r_oo(status) if edge == "o" else usable(status, edge)).any() or not st:
            continue
        counts = {}
        for flags in st:
            for f in flags:
                if _withholds(f, EDGES_OF[edge]) or (edge == "o" and f == R_BEYOND_RULE):
                    counts[f] = counts.get(f, 0) + 1
        if not counts:
            continue
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        why = ", ".join(f"{f} on {n} of {len(st)} rows" for f, n in top[:3])
        hints = sorted({h for f, _ in top[:3] for k, h in WITHHELD_HINTS.items() if f.endswith(k)})
        out[edge] = f"withheld on every row ({why})" + (f": {'; '.join(hints)}" if hints else "")
    return out


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
    mean_vars: dict | None = None  # window name -> its unscaled_variance's mean over the whole image (chunked fits)
    ti_d0: float = 0.0          # the Ti fit's global energy offset (eV)
    ranges: dict = field(default_factory=dict)  # edge tag -> (lo, hi, pre-edge hi) shrunk to its window
    li_overlaps: tuple = ()     # edges found in the core-loss windows that overlap Li-K
    figures: bool = True        # the edge fits' views for figures (the fits' first return; False: O-K's None)
    _var: dict = field(default_factory=dict, repr=False)  # id(window) -> per-pixel variances (and mean_noise's means)

    def mean(self, w: WindowData) -> np.ndarray:
        """The whole image's mean spectrum of ``w`` (global shifts must not depend on a chunk)."""
        if self.means is not None and w.name in self.means:
            return self.means[w.name]
        return row_mean(w.counts)  # (the same bits as a Dask fit's sums over its blocks)

    def mean_noise(self, w: WindowData) -> np.ndarray:
        """The variance of the whole image's mean spectrum of ``w`` (per channel): its pixels' mean variance over
        the image's rows (:func:`unscaled_variance`'s mean times the window's noise scale), the same for a block of
        rows as for the whole image (:mod:`.rowsums`): the edges other than the fitted ones are found in the mean
        spectrum against it, and a block must find the image's."""
        if self.mean_vars is not None and self.mean_vars.get(w.name) is not None:
            mv, n = self.mean_vars[w.name]
        else:
            if ("mean_noise", id(w)) not in self._var:
                self._var[("mean_noise", id(w))] = row_mean(unscaled_variance(w, self.s))
            mv, n = self._var[("mean_noise", id(w))], self.rows
        k = 1.0 if self.gain_known(w) or w.noise_scale is None else w.noise_scale
        return mv * k / max(n, 1)

    def psf_decay(self, w: WindowData) -> float:
        """The detector PSF's decay along energy: the option, else the file's sreels metadata, else 0."""
        if self.s.psf_decay is not None:
            return float(self.s.psf_decay)
        md = w.metadata if isinstance(w.metadata, dict) else {}
        sre = md.get("sreels", {}) if isinstance(md.get("sreels", {}), dict) else {}
        return float(sre.get("detector", {}).get("psf_decay", 0.0) or 0.0)

    def prepare(self, w: WindowData, edges, lo, hi):
        """References, per-pixel variances and the saturation mask of a window's fit range."""
        s = self.s
        refs = fine_references(w.energy, lo, hi, s.instrument(), tuple(edges), self.psf_decay(w))
        return refs, self.variance(w), saturated_pixels(w, s)

    def chi2_scale(self, w: WindowData) -> float:
        """The reduced chi^2 of a right model when the detector is known: the PSF lowers the shot
        noise per pixel by sum(k^2) but not the readout noise, while the fits weight with their
        uncorrelated sum; the median over the window of (c g N + r^2) / (g N + r^2), N the whole image's
        mean spectrum (:meth:`mean`: a block of rows gets the image's scale, as its poor-fit flags must be
        the whole image's).  1 when the noise level is measured from the data (which already sees the PSF)."""
        if not self.gain_known(w):
            return 1.0
        s = self.s
        c = psf_variance_factor(self.psf_decay(w))
        g = s.gain_counts_per_e or w.gain_counts_per_e
        rd = readout_noise(w, s)
        shot = g * np.maximum(self.mean(w), 1.0)
        return float(np.median((c * shot + rd**2) / (shot + rd**2)))

    def gain_known(self, w: WindowData) -> bool:
        return bool(self.s.gain_counts_per_e or w.gain_counts_per_e)

    def variance(self, w: WindowData) -> np.ndarray:
        """Per-pixel variances (computed once per window); without a known gain the noise level
        is measured from the data (:func:`.okpeaks.noise_scale`) and the run says so."""
        if id(w) not in self._var:
            self._var[id(w)] = self._variance(w)
        return self._var[id(w)]

    def _variance(self, w: WindowData) -> np.ndarray:
        s = self.s
        rd = readout_noise(w, s)  # sqrt(N) x one read's for rows summed from N (--bin)
        # deconvolved rows (a low-loss window, :mod:`.lowloss`) are noisier by the deconvolution's gain
        f = 1.0 if w.variance_factor is None else w.variance_factor[:, None]
        if self.gain_known(w):
            return unscaled_variance(w, s)
        var = variance_model(w.counts, 1.0, rd)
        raw = w.noise_scale is not None  # measured on the counts as recorded (:func:`with_noise_scales`)
        k = w.noise_scale if raw else noise_scale(np.asarray(w.counts, float), var)
        self.notes.append(f"{GAIN_UNKNOWN_NOTE}: the noise level of {w.source} was measured "
                          f"from channel-to-channel differences{' of the recorded counts' if raw else ''} "
                          f"({k:.3g} x counts)")
        return var * k * f

    def finish(self, fit, w: WindowData, mask, fit_range, tag):
        """Errors scaled by sqrt(chi2_red) where the model does not describe a row (flagged
        ``<tag>_poor_fit`` where the excess is significant); saturated and unconverged rows flagged."""
        fit, poor = widen_poor_fits(fit)
        self.flag(poor, f"{tag}_poor_fit")
        if mask is not None:  # saturated pixels had no weight; rows that had any say so
            for i in np.flatnonzero(mask[:, w.energy.slice(*fit_range)].any(1)):
                self.status[i].add(f"{tag}_saturated")
        for i in np.flatnonzero(~fit.result.converged):
            self.status[i].add(f"{tag}_not_converged")
        return fit

    def flag(self, rows_mask, tag):
        for i in np.flatnonzero(rows_mask):
            self.status[i].add(tag)


def _ti_global_offset(run: _Run, w: WindowData, ef, refs, lo, hi, pre) -> float:
    """:func:`_mean_ti_offset`; with the whole image's mean given (a Dask block), once per worker: its blocks share
    the mean (each block ran the mean's 3 MLLS, ~20 ms, for the same number)."""
    if run.means is not None and w.name in run.means:
        from .deconvolve import per_image
        return per_image(_GLOBAL_OFFSETS, (run.means[w.name], ef, refs), (w.energy, lo, hi, pre),
                         lambda: _mean_ti_offset(run, w, ef, refs, lo, hi, pre))
    return _mean_ti_offset(run, w, ef, refs, lo, hi, pre)


_GLOBAL_OFFSETS: dict = {}


def _mean_ti_offset(run: _Run, w: WindowData, ef, refs, lo, hi, pre) -> float:
    """The Ti window's energy offset from its mean spectrum: the cross-correlation with the Ti4+
    reference, then the MLLS of the mean (Ti4+ and Ti3+, free shift) started there and one Ti3+
    shift either side, the best chi^2 kept (an image of mostly Ti3+ correlates best with Ti4+
    moved by the Ti3+ shift, which the MLLS then cannot undo)."""
    from ..forward.edges import TI3_SHIFT_EV

    mean = run.mean(w)[None, :]
    d_cc = global_shift(w.energy, mean[0], np.interp(w.energy.energy_ev, ef, refs["Ti4+"]), lo, hi)
    best = (np.inf, d_cc)
    for start in (d_cc, d_cc - TI3_SHIFT_EV, d_cc + TI3_SHIFT_EV):
        f = fit_linear_edges(w.energy, mean, variance_model(mean, 1.0, 0.0), (ef, refs), ("Ti4+", "Ti3+"), lo, hi,
                             pre, delta=np.array([start]))
        chi, d = float(f.result.chi2_red[0]), float(f.value("delta")[0])
        if np.isfinite(chi) and np.isfinite(d) and abs(d - d_cc) < 6.0 and chi < best[0]:
            best = (chi, d)
    return best[1]


#: The Ti-L2,3 shift (eV, absolute) on a ZLP-referenced scale above which the run says the core-loss and low-loss
#: axes disagree.  The Ti4+/Ti3+ references carry the chemical shift, so on a simultaneous DualEELS
#: pair the fitted shift is the references' own placement error: -0.3 eV on the LSMO/STO pair of
#: exspy-demos (JEOL ARM200cF, GIF Quantum ER); the TiO2 pair of Zanetta et al. reads 3.5 eV and a
#: separately recorded SrTiO3 pair (pyEELSMODEL's hl/ll.msa) 6.2 eV (measured with this code).
ZLP_TI_AGREE_EV = 2.0


def _check_zlp_against_ti(run: _Run, w: WindowData, shift_ev: float) -> None:
    """A note when the ZLP-referenced axis puts the Ti-L2,3 edge ``shift_ev`` from the references."""
    if abs(shift_ev) > ZLP_TI_AGREE_EV:
        run.notes.append(
            f"{w.source}: on the ZLP-referenced energy scale the Ti-L2,3 edge lies {shift_ev:+.1f} eV from its "
            f"reference energies (a simultaneous DualEELS pair agrees within ~{ZLP_TI_AGREE_EV:.0f} eV): the "
            "core-loss and low-loss axes do not share one energy offset (pair not recorded together, or the "
            "spectrometer's offset calibration). Ti3+ fractions and dE_b do not depend on it (the Ti-L2,3 "
            "shift is fitted, dE_b is measured on the window's own axis); absolute energies (peak_a_ev, "
            "peak_b_ev, o_threshold_ev) carry it: check them against the Ti-L2,3 edge")


def _fit_ti(run: _Run, w: WindowData):
    s = run.s
    lo, hi, pre = run.ranges["ti"]
    (ef, refs), var, mask = run.prepare(w, ("Ti-L23",), lo, hi)
    if s.ti_references:
        from .references import REFERENCE_NAMES, with_measured
        refs, off = with_measured(ef, refs, s.ti_references, (lo, pre), s.ti_norm_ev)
        given = {n for n, _ in s.ti_references}
        run.notes.append("Ti-L2,3 MLLS with measured standards for " + ", ".join(sorted(given)) +
                         "".join(f"; {n} from the forward model" for n in REFERENCE_NAMES if n not in given) +
                         f"; standards moved by {-off:+.2f} eV onto the model's energy scale")
    d0 = 0.0
    if s.calibrate_energy:
        d0 = _ti_global_offset(run, w, ef, refs, lo, hi, pre)
    run.ti_d0 = d0
    fit = fit_linear_edges(w.energy, w.counts, var, (ef, refs), ("Ti4+", "Ti3+"), lo, hi, pre,
                           delta=np.full(run.rows, d0), mask=mask)
    fit = run.finish(fit, w, mask, (lo, hi), "ti")
    a4, a3 = fit.value("Ti4+"), fit.value("Ti3+")
    v4, v3, c43 = fit.err("Ti4+") ** 2, fit.err("Ti3+") ** 2, fit.cov("Ti4+", "Ti3+")
    # Ti4+ and Ti3+ are anti-correlated: rounding can leave the sum's variance a hair below 0 (on maps: sqrt warned)
    n_ti, n_ti_err = a4 + a3, np.sqrt(np.clip(v4 + v3 + 2 * c43, 0, None))
    delta, delta_err = fit.value("delta"), fit.err("delta")
    # an edge placed outside the fit range is a failed fit, not Ti (a garbage row of a measured Fe/Cr pair: +3e18 eV)
    placed = np.isfinite(delta) & (np.abs(delta - d0) < 0.5 * (hi - lo))
    has = (n_ti > 5 * n_ti_err) & (edge_contrast(fit) > MIN_CONTRAST["ti"]) & placed
    run.flag(~has, "no_ti")
    with np.errstate(invalid="ignore", divide="ignore"):
        f3 = a3 / n_ti
        f3_err = np.sqrt(np.clip(a4**2 * v3 + a3**2 * v4 - 2 * a3 * a4 * c43, 0, None)) / n_ti**2
    mismatch = fit.result.chi2_red > TI_SHAPE_CHI2_MAX
    run.flag(has & mismatch, "ti_shape_mismatch")
    keep = has & ~mismatch
    syst = np.hypot(_ti_shape_systematic(run, w), _ti_plural_systematic(run, w)) if keep.any() else 0.0
    if s.zlp_referenced and has.any():
        _check_zlp_against_ti(run, w, float(np.nanmedian(delta[has])))
    cols = {
        "ti3_fraction": np.where(keep, np.clip(f3, 0, 1), np.nan),
        "ti3_fraction_err": np.where(keep, np.hypot(f3_err, syst), np.nan),
        "ti3_fraction_err_stat": np.where(keep, f3_err, np.nan),
        "ti3_fraction_raw": np.where(keep, f3, np.nan),
        "ti_shift_ev": np.where(has, delta, np.nan), "ti_shift_ev_err": np.where(has, delta_err, np.nan),
        "ti_chi2_red": fit.result.chi2_red,
        "ti_l2_l3": np.where(has, l2_l3_ratio(fit, s.instrument(), np.clip(f3, 0, 1)), np.nan),
        # Ti atoms per second (reference units) for the O-K route's check of a second O phase (_li_per_fu_o)
        "_ti_rate": np.where(has, n_ti / fit.ref_scale / (_exposure(w) or np.nan), np.nan),
        "_ti_rate_err": np.where(has, n_ti_err / fit.ref_scale / (_exposure(w) or np.nan), np.nan),
    }
    # Ti atoms per row (valence-independent: per-atom references) and the row's energy shift
    ti = {"n": n_ti, "n_err": n_ti_err, "has": has,
          "delta": np.where(has, delta, run.ti_d0),  # rows without Ti: the image's global offset
          "delta_err": np.where(has, delta_err, 0.0), "exposure_s": _exposure(w),
          "ref_scale": fit.ref_scale}  # amplitudes are per atom x ref_scale
    return fit, cols, ti


#: Reduced chi^2 of the Ti-L2,3 MLLS above which its residuals are > 10x the noise: the
#: reference shapes do not describe the edge and the Ti3+ fraction is withheld
#: (``ti_shape_mismatch``); SrTiO3 reads chi2_red 290-3500 with the parametric shapes.
TI_SHAPE_CHI2_MAX = 100.0
#: Systematic error of the Ti3+ fraction from reference shapes that are not the specimen's
#: (added in quadrature on measured data; none on sreels simulations, which the model
#: shapes describe exactly), measured on pure-Ti4+ standards in ../shared/data.  Parametric
#: (forward-model) shapes: f3 = 0.13 on rutile TiO2 (Zanetta et al. image, median of 58
#: pixels), 0.07 and -0.04 on SrTiO3 (pyTEMlib; exspy LSMO/STO rows 0-3), rms 0.09, rounded
#: up to 0.10.  A measured standard from the same image: f3 rms 0.053 over the 58 TiO2
#: pixels with the image's own sum as the standard (the shape changes with thickness:
#: plural scattering), 0.05.
TI_SHAPE_SYST = {"model": 0.10, "measured": 0.05}


def _ti_shape_systematic(run: _Run, w: WindowData) -> float:
    md = w.metadata if isinstance(w.metadata, dict) else {}
    if "sreels" in md:  # a sreels simulation: the model's shapes are the truth
        return 0.0
    kind = "measured" if run.s.ti_references else "model"
    run.notes.append(f"Ti3+ fraction errors include a reference-shape systematic of {TI_SHAPE_SYST[kind]} "
                     f"({kind} Ti references on measured data; measured on pure-Ti4+ standards)")
    return TI_SHAPE_SYST[kind]


#: Systematic error of the Ti3+ fraction where plural scattering was not removed (no low-loss window, or
#: one too short): the low-energy part of the loss function broadens the white lines.  Measured
#: noise-free on the default interface without a low-loss window: f3 -0.010 (Ti4+ rows) / +0.013 (Ti3+
#: rows) at t/lambda 0.30, -0.017 / +0.024 at 0.54, i.e. ~0.045 t/lambda; with t/lambda unknown, taken
#: at 1 (lamellae are t/lambda 0.3-1).  Added in quadrature.
TI_PLURAL_SYST = 0.045


def plural_left_in(w: WindowData) -> bool:
    """Whether a window keeps its plural scattering: neither deconvolved by the rows' low loss nor given its
    multiple scattering from it (:mod:`.lowloss`), and not a sreels simulation made without plural scattering."""
    if w.variance_factor is not None or w.plural_tail is not None:
        return False
    md = w.metadata if isinstance(w.metadata, dict) else {}
    inst = (md.get("sreels") or {}).get("instrument") or {}
    return inst.get("plural_scattering") not in (False, 0, "false", "False")


#: Relative systematic error of R_OO where plural scattering was not removed from the O-K window (no
#: low-loss window): the double scattering (edge x plasmon) tilts the near-edge structure and moves peak b.
#: Measured noise-free on the default interface without a low-loss window (rows off Pt, median per region):
#: R_OO -0.23 / -0.43 / -0.79 / -1.30 pm in the electrode and +0.17 / +0.33 / +0.60 / +0.98 pm in the parent at
#: t/lambda 0.16 / 0.30 / 0.54 / 0.89, i.e. up to 0.47 % of R per unit t/lambda; with t/lambda unknown, taken at
#: 1 and rounded up (as TI_PLURAL_SYST).  Opposite signs in the two regions: common to the rows of each, not one
#: shift of the whole profile.
R_OO_PLURAL_SYST = 0.005


def _ti_plural_systematic(run: _Run, w: WindowData) -> float:
    if not plural_left_in(w):
        return 0.0
    run.notes.append(f"Ti3+ fraction errors include a plural-scattering systematic of {TI_PLURAL_SYST} (no low loss "
                     "deconvolved the Ti-L2,3 window; measured on simulations at t/lambda up to ~1: give the "
                     "low-loss window of a DualEELS pair to remove it)")
    return TI_PLURAL_SYST


def _tail_level(run: _Run, w: WindowData, mean, refs, lo, hi, pre, kern, tail):
    """The multiple plasmons' level in a window (:func:`.lowloss.plural_kernel`'s tail is in low-loss
    counts): the exposure ratio of the two recordings where their metadata give it, else a free
    amplitude of the image's mean spectrum (on the ZLP-referenced axis)."""
    if tail is None:
        return None
    if w.exposure_ratio is not None:
        return float(w.exposure_ratio)
    f = fit_linear_edges(w.energy, mean, variance_model(mean, 1.0, 0.0), refs, run.s.li_components, lo, hi, pre,
                         delta=np.zeros(1), fit_delta=False, weight=kern, tail=tail,
                         tail_step=w.tail_step_ev, curvature=LI_CURVED_BACKGROUND)
    c = float(f.value(PLURAL_TAIL)[0]) / float(np.max(np.abs(tail)))
    run.notes.append(f"{w.source}: exposure ratio to the low-loss window not in the metadata; the multiple "
                     f"plasmons' level fitted to the image's mean spectrum ({c:.4g})")
    return c


#: systematic of c_Li, relative, per unit of c_Li above the parent, when the fit models plural scattering
#: from a low-loss window: the slope of noise-free c_Li / truth - 1 against c_Li - 1 (rows off Pt), with
#: the log-quadratic background (LI_CURVED_BACKGROUND): +0.07 % per unit at t/lambda 0.30, +0.02 % at 0.54
#: (the study's image), -0.02 % at 0.89, -0.002 % for the "wide" test scenario (0.53, c_Li 10); the
#: largest, rounded up.  (With a plain power law it was 0.26-0.39 % per unit: the plasmon tail's curvature.)
LI_PLURAL_SYST = 0.001
#: With plural scattering modelled (a low-loss window), the Li-K window's background is the single plasmon's
#: tail at 2-3 E_p, which is not a power law: a Drude loss's local exponent runs from -4.3 to -3.6 over
#: 46-71 eV (E_p 24.7 eV, width 10 eV; :mod:`sreels.forward.lowloss`), and a power law fitted under Li-K
#: took 1.1 % of the edge (noise-free, t/lambda 0.54, rows off Pt; 0.1 % in the electrode, whose Li-K
#: dwarfs the tail).  The fit then takes a log-quadratic background, ln B = ln A - r ln(E/E_r) - s ln^2(E/E_r)
#: (a power law whose exponent varies linearly with ln E), one more free parameter per row: the
#: Li-K amplitude's error in the parent grows by 9 % (0.0279 -> 0.0304 relative, same image).
LI_CURVED_BACKGROUND = True


def _tail_variance(fit, w: WindowData, c_tail, delta):
    """Variance of every parameter (rows, parameters) from the low loss's noise in the multiple-scattering
    tail the fit held fixed: the fit's linear response to each noise replica of the tail (0 without)."""
    if w.plural_tail_dev is None or c_tail is None:
        return np.zeros_like(fit.result.params)
    # (float32 replicas gathered as stored: promoted to float64 exactly in the interpolation)
    dy = -c_tail * rows_at(w.plural_tail_dev, w.tail_step_ev, fit.energy, delta, slopes=False)
    return np.mean(fit.response(dy) ** 2, axis=0)


def _li_plural_unmodelled(run: _Run, w: WindowData, fit) -> np.ndarray:
    """Rows (bool) whose Li-K fit has no model of plural scattering where it needs one and does not describe
    the data: flagged ``li_plural_unmodelled``, their Li numbers withheld (the raw ``li_k_amount`` kept, flagged).

    A window starting below :data:`~.lowloss.MIN_DECONVOLVE_EV` lies in the plasmon region: its plural
    scattering (double and triple plasmons at ~50-75 eV, the Li-K edge's own plasmon replica) comes from a
    low-loss window (:func:`.lowloss.apply_low_loss`).  Without one, the single-scattering model misreads
    the rows it fails on: noise-free on the default interface without a low-loss window, c_Li in the
    electrode read +106 % at t/lambda 0.16 (its fit's chi^2 excess 0.8 per channel), -116 % (negative
    amounts) at 0.54, while the errors widened by sqrt(chi^2) were 20-40x smaller than the bias; the parent
    rows, whose fits the model still describes at 0.16, read -0.7 %.  Rows the model describes keep their
    numbers."""
    from .lowloss import MIN_DECONVOLVE_EV
    if w.energy.offset_ev >= MIN_DECONVOLVE_EV or not plural_left_in(w):
        return np.zeros(run.rows, bool)
    dof = fit.data.shape[1] - fit.result.params.shape[1]
    bad = poor_fit(fit.result.chi2_red, dof) & np.isfinite(fit.result.chi2_red)
    if bad.any():
        run.flag(bad, "li_plural_unmodelled")
        run.notes.append(f"{int(bad.sum())} row(s) flagged li_plural_unmodelled: the Li-K window lies in the plasmon "
                         "region and no low-loss window gives its plural scattering (multiple plasmons, the edge's "
                         "plasmon replica), which the single-scattering fit does not describe there; their c_Li and "
                         "Li per formula unit are withheld (NaN; biased by up to 100 % on simulations), li_k_amount "
                         "kept as the raw fit: " + (
                             "this window holds the zero-loss peak itself (a low-loss spectrum with the Li-K edge in "
                             "it), too short for the fast path to take its plural scattering from it (see the "
                             "low-loss note): record it to 3 plasmon energies or more, or the Li-K edge in a "
                             "core-loss window with its DualEELS low loss" if w.energy.offset_ev < 0.0 <
                             w.energy.end_ev else "give the low-loss window of a DualEELS pair"))
    return bad


def _fit_li(run: _Run, w: WindowData, ti):
    """Li-K per row: the raw amount and (with Ti) the amount per Ti atom; the parent
    normalisation needs the whole image and is :func:`_normalise_li`'s."""
    s = run.s
    lo, hi, pre = run.ranges["li"]
    (ef, refs), var, mask = run.prepare(w, s.li_components, lo, hi)
    # the window's own offset from its mean spectrum (windows are separate recordings, each with
    # its own offset); the rows' distortion about it from the Ti fit when there is one
    mean = run.mean(w)[None, :]
    kern = w.unscattered  # plural scattering from the low loss (.lowloss.plural_kernel)
    mk, mt = w.unscattered_mean, w.plural_tail_mean  # the whole image's (a block's mean would differ)
    c_tail = _tail_level(run, w, mean, (ef, refs), lo, hi, pre, mk, mt)
    curved = LI_CURVED_BACKGROUND and w.plural_tail is not None  # the single plasmon's tail under Li-K
    # started at the low loss's mean ZLP where there is one (a drift of a few eV moves the Li-K window
    # with it; from 0 the fit of a 2.5 eV drift stopped at -1.7 or +9.7 eV, every row li_poor_fit)
    start = np.array([w.zlp_mean_ev if w.zlp_mean_ev is not None else 0.0])
    m_fit = fit_linear_edges(w.energy, mean, variance_model(mean, 1.0, 0.0), (ef, refs),  # relative weights
                             s.li_components, lo, hi, pre, delta=start, weight=mk, tail=mt, tail_amp=c_tail,
                             tail_step=w.tail_step_ev, curvature=curved)
    d0 = float(m_fit.value("delta")[0])
    if not (np.isfinite(d0) and abs(d0) < 10.0):
        run.notes.append(f"{w.source}: no energy offset could be read from the Li-K window's mean spectrum "
                         f"({d0:.3g} eV): taken as 0")
        d0 = 0.0
    if w.row_shift_ev is not None:  # the rows' shifts about the image's mean, known from their ZLP
        d_li = d0 + w.row_shift_ev
    else:
        d_li = np.full(run.rows, d0) if ti is None else d0 + ti["delta"] - run.ti_d0
    # the amplitudes solved exactly, the background's exponents iterated from the mean spectrum's (the same
    # window and E_ref) (:func:`.edgefits._projected_fit`; from the pre-edge power law's r and s = 0 a
    # 1024-row block of a simulated map took 10.0 model evaluations a row instead of 9.1, 90 % 18 vs 16)
    th = [m_fit.value(n)[0] for n in ("r", "s")[:2 if curved else 1]]
    fit = fit_linear_edges(w.energy, w.counts, var, (ef, refs), s.li_components, lo, hi, pre,
                           delta=d_li, mask=mask, fit_delta=False, weight=kern, tail=w.plural_tail, tail_amp=c_tail,
                           tail_step=w.tail_step_ev, curvature=curved,
                           exponents=th if np.isfinite(th).all() else None, projected=True)
    tail_var = _tail_variance(fit, w, c_tail, d_li)
    fit = run.finish(fit, w, mask, (lo, hi), "li")
    unmodelled = _li_plural_unmodelled(run, w, fit)
    a, a_err = fit.value("Li-K"), np.sqrt(fit.err("Li-K") ** 2 + tail_var[:, fit.names.index("Li-K")])
    # whether the image holds Li-K at all is the whole image's question (:func:`_li_presence`, in _result)
    for name in run.li_overlaps:
        run.flag(np.ones(run.rows, bool), f"li_overlap_{name}")
    if run.li_overlaps:  # another edge under Li-K: no row measures Li
        valid = np.zeros(run.rows, bool)
        q, q_err = a, a_err
    elif ti is not None:  # Li per Ti atom: thickness and AlPO4 grains (no Li, no Ti) cancel
        valid = np.isfinite(a) & ti["has"] & ~unmodelled
        with np.errstate(invalid="ignore", divide="ignore"):
            q = a / ti["n"]
            q_err = np.abs(q) * np.hypot(a_err / a, ti["n_err"] / ti["n"])
    else:
        valid = np.isfinite(a) & ~unmodelled   # and Li-K in the image (_li_presence)
        q, q_err = a, a_err
    cols = {"_li_plural": np.full(run.rows, w.plural_tail is not None), "_li_a": a, "_li_a_err": a_err, "_li_q": q, "_li_q_err": q_err, "_li_valid": valid,
            "_li_per_ti": np.full(run.rows, ti is not None and not run.li_overlaps),
            "li_chi2_red": fit.result.chi2_red,
            # Li atoms (reference units) for the Li-K / O-K route (_li_per_fu_o); NaN where Li-K is not measured
            "_li_atoms": np.where(np.isfinite(a) & ~unmodelled & (not run.li_overlaps), a / fit.ref_scale, np.nan),
            "_li_atoms_err": a_err / fit.ref_scale, "_li_exposure_s": np.full(run.rows, _exposure(w) or np.nan)}
    if ti is not None:  # absolute Li per formula unit from the Li-K / Ti-L2,3 ratio (:mod:`.lipfu`)
        t_li, t_ti = _exposure(w), ti["exposure_s"]
        if not (t_li and t_ti):
            run.notes.append("li_per_fu not computed (NaN): the exposure of the Li-K or the Ti-L2,3 window is not "
                             "in the files' metadata")
        k_li, k_ti = fit.ref_scale, ti["ref_scale"]  # amplitudes per atom: divided by their reference scales
        cols.update(li_per_fu(a / k_li, a_err / k_li, ti["n"] / k_ti, ti["n_err"] / k_ti, t_li, t_ti, valid))
    return fit, cols


#: Per-row (value, statistical error) columns whose errors the row-to-row scatter checks
#: (:func:`_scatter_check`), with the columns that scale with each (errors of the same estimate).
SCATTER_CHECKED = {
    "ti3_fraction_raw": ("ti3_fraction_err_stat", ()),
    "ti_shift_ev": ("ti_shift_ev_err", ()),
    "_li_q": ("_li_q_err", ("_li_a_err", "li_per_fu_err")),
    "li_per_fu_o": ("li_per_fu_o_err", ()),
    "delta_e_b_ev": ("delta_e_b_ev_err", ("r_oo_nm_err_stat",)),
    "peak_a_ev": ("peak_a_ev_err", ()),
    "peak_b_ev": ("peak_b_ev_err", ()),
    "o_threshold_ev": ("o_threshold_ev_err", ()),
}  # (not t/lambda: the thickness of a lamella varies from row to row far beyond its counting error)
#: ... and the totals rebuilt from a scaled statistical part and their systematic part (stat -> total).
SCATTER_TOTALS = {"ti3_fraction_err_stat": "ti3_fraction_err", "r_oo_nm_err_stat": "r_oo_nm_err"}
#: Fewest neighbour triples for the check.
SCATTER_MIN_PAIRS = 8
#: How a run says the detector gain was not known (the noise level then measured from the data).
GAIN_UNKNOWN_NOTE = "detector gain unknown (give --gain)"


def scatter_ratio(v, err):
    """Robust scatter of neighbouring rows in units of their quoted errors: 1.4826 x the median
    absolute deviation of the second differences (v[i-1] - 2 v[i] + v[i+1]) / sqrt(err[i-1]^2 +
    4 err[i]^2 + err[i+1]^2) over triples of finite rows (a profile that changes linearly over a few
    rows drops out; steps and kinks are outliers).  Returns (ratio, triples); (nan, triples) for fewer
    than :data:`SCATTER_MIN_PAIRS` triples."""
    v, err = np.asarray(v, float), np.asarray(err, float)
    ok = np.isfinite(v) & np.isfinite(err) & (err > 0)
    three = ok[:-2] & ok[1:-1] & ok[2:]
    n = int(three.sum())
    if n < SCATTER_MIN_PAIRS:
        return np.nan, n
    z = (v[:-2] - 2 * v[1:-1] + v[2:])[three] / np.sqrt(err[:-2] ** 2 + 4 * err[1:-1] ** 2 + err[2:] ** 2)[three]
    return float(1.4826 * np.median(np.abs(z - np.median(z)))), n


def _scatter_check(cols: dict, notes: list) -> dict:
    """Errors the rows' own scatter says are too small, scaled up (in place), for a run whose noise
    level was measured from the data (the gain unknown): where neighbouring rows scatter more than
    their errors allow (:func:`scatter_ratio` > 1), the statistical errors of that quantity (and of
    what follows from it) are multiplied by the ratio, and a note says so.  The noise level measured
    from neighbouring channels misses a detector PSF that correlates them (errors 1.4-1.9x too small
    on simulations with the gain hidden); rows that vary on their own widen the errors too; errors
    never shrink.  With the gain known the noise model is the detector's and is not second-guessed."""
    scales = {}
    for v, (e, follow) in SCATTER_CHECKED.items():
        if v not in cols or e not in cols:
            continue
        r, n = scatter_ratio(cols[v], cols[e])
        if not (np.isfinite(r) and r > 1.0):
            continue
        scales[v] = r
        for k in (e, *follow):
            if k not in cols:
                continue
            stat = np.asarray(cols[k], float)
            tot = SCATTER_TOTALS.get(k)
            if tot in cols:  # total^2 = stat^2 + systematic^2: the systematic part kept
                sys2 = np.clip(np.asarray(cols[tot], float) ** 2 - stat**2, 0, None)
                cols[tot] = np.sqrt((r * stat) ** 2 + sys2)
            cols[k] = r * stat
        notes.append(f"{v.lstrip('_').replace('li_q', 'Li per Ti atom')}: neighbouring rows differ by {r:.2f}x what "
                     f"their errors allow ({n} triples): its errors are scaled by {r:.2f} (the noise model "
                     "underestimates the data's noise, e.g. a detector point spread that correlates channels "
                     "with the gain unknown, or the rows vary on their own)")
    return scales


def _normalise_li(cols: dict, y_nm, parent_nm, notes: list) -> None:
    """Li relative to the parent region (default: the far third of the whole image), in place;
    the raw columns ``_li_*`` of :func:`_fit_li` are consumed."""
    if "_li_a" not in cols:
        return
    a, a_err, q, q_err = (cols.pop(k) for k in ("_li_a", "_li_a_err", "_li_q", "_li_q_err"))
    valid = cols.pop("_li_valid").astype(bool)
    cols.update({"li_k_amount": a, "li_k_amount_err": a_err})  # Li-K amplitude (model units), unnormalised
    try:
        par = parent_rows(y_nm, valid, parent_nm)
    except SreelsInputError as exc:
        if parent_nm is not None and valid.sum() >= 3:  # the user's range holds too few of them: a clear error
            raise
        par = np.zeros(valid.size, bool)
        notes.append(f"{int(valid.sum())} row(s) with a valid Li-K fit, fewer than the 3 a parent region needs "
                     f"({exc}): li_rel is not normalised (NaN); li_k_amount is the raw Li-K amount")
    if par.any():
        qm, qm_err = _mean(q[par], q_err[par])
        am, am_err = _mean(a[par], a_err[par])
    else:
        qm = qm_err = am = am_err = np.nan
        if valid.sum() == 0:
            notes.append("no row has a valid Li-K fit: li_rel and li_areal_rel are not normalised (NaN)")
    li = q / qm
    # the plural tail's model systematic (measured on simulations, see LI_PLURAL_SYST)
    syst = LI_PLURAL_SYST * np.abs(li - 1.0) * li if np.any(cols.pop("_li_plural", False)) else np.zeros(a.size)
    if np.any(syst > 0):
        notes.append(f"c_Li errors include the plural-tail model's systematic, {LI_PLURAL_SYST:.3f} x |c_Li - 1| x c_Li "
                     "(measured on noise-free simulations at t/lambda 0.3-0.9; the Li-K background is log-quadratic "
                     "under the plasmon tail)")
    cols.update({
        "li_rel": np.where(valid, li, np.nan),
        "li_rel_err": np.where(valid, np.sqrt((q_err / qm) ** 2 + (q * qm_err / qm**2) ** 2 + syst**2), np.nan),
        # the normalisation's relative error is common to every row: kept apart for derived numbers
        "li_rel_err_row": np.where(valid, np.hypot(q_err / qm, syst), np.nan),
        "li_norm_rel_err": np.full(a.size, qm_err / qm),
        "li_plural_syst": np.full(a.size, LI_PLURAL_SYST if np.any(syst > 0) else 0.0),
        "li_areal_rel": a / am, "li_areal_rel_err": np.hypot(a_err / am, a * am_err / am**2),
        "parent": par.astype(int),
    })


def _energy_reference(run: _Run, ti, ok: OKRows):
    """Per-row offset (eV) of the window's axis from the reference scale, its error, and the
    source: the ZLP where a low-loss window referenced every row to it (offset 0), else the
    Ti-L2,3 fit where the image holds Ti (the row's own shift where the row has Ti), else the
    O-K threshold (the image's median threshold placed at the study's 529.0 eV)."""
    if run.s.zlp_referenced:
        return np.zeros(run.rows), np.zeros(run.rows), "ZLP of the low-loss window (every row)"
    if ti is not None and ti["has"].any():
        return ti["delta"], ti["delta_err"], "Ti-L2,3"
    th = np.nanmedian(ok.threshold_ev) if np.isfinite(ok.threshold_ev).any() else ok.onset_coarse_ev
    return np.full(run.rows, th - O_K_ONSET_EV), np.zeros(run.rows), "O-K threshold"


TI_NAMES = ("Ti4+", "Ti3+")


#: rows per pass of :func:`_less_ti` (its temporaries, ~10 of rows x channels, then stay in the cache)
TI_PART_ROWS = 32


def _less_ti(y, ef, refs, ti_fit, e, delta, amps):
    """``y`` less the Ti-L2,3 fit's contribution (a new array) at energies ``e``: its Ti4+ and Ti3+ references
    shifted by each row's ``delta`` times ``amps`` (one (rows,) array per reference), computed on
    :data:`TI_PART_ROWS` rows at a time with the products in place: on 1024 x 1700 channels the whole-array
    form streamed ~20 temporaries of 14 MB through memory (tests/inference/test_fast_unit.py holds it equal to
    that form, bit for bit)."""
    sh = [Shifted.build(ef, refs[n] / ti_fit.ref_scale) for n in TI_NAMES]
    delta = np.asarray(delta, float)
    out = np.empty(np.shape(y))
    for r0 in range(0, out.shape[0], TI_PART_ROWS):
        sl = slice(r0, r0 + TI_PART_ROWS)
        where = sh[0].index(e, delta[sl])  # one grid: the positions once for both references
        part = None
        for r, a in zip(sh, amps):  # Ti4+ part, + Ti3+ part
            v = r.interpolate(where, slopes=False)
            v *= a[sl, None]
            part = v if part is None else np.add(part, v, out=part)
        np.subtract(y[sl], part, out=out[sl])
    return out


def _fit_o(run: _Run, w: WindowData, ti, ti_fit):
    """O-K by the measurement shared with ``calibrate`` (:func:`.okpeaks.measure_o_k`): the
    threshold and peak "b" per row on the window's own axis, so dE_b and R_OO do not depend
    on the axis' calibration; the Ti-L2,3 fit's contribution (its L1 and continuum under
    the O-K edge) is subtracted first when both edges share the window."""
    s = run.s
    w_full = w
    var = run.variance(w)
    y = np.asarray(w.counts, float)
    # what the measurement needs: edges below O-K (Ti-L at 456 eV) to ~60 eV above its onset
    sl = w.energy.slice(max(w.energy.offset_ev, 440.0), min(w.energy.end_ev, 610.0))
    image_mean, image_noise = run.mean(w)[sl], run.mean_noise(w)[sl]
    sat = saturated_pixels(w, s)
    if sl.stop - sl.start < w.energy.size:
        sub = EnergyAxis(float(w.energy.energy_ev[sl][0]), w.energy.scale_ev, sl.stop - sl.start)
        sat = None if sat is None else sat[:, sl]
        w = dataclasses.replace(w, energy=sub, counts=y[:, sl], saturated=sat)
        y, var = y[:, sl], var[:, sl]
    if sat is not None:  # saturated pixels: no weight
        var = np.where(sat, 1e30, var)
    ef, refs = fine_references(w.energy, max(w.energy.offset_ev, 400.0) + 15.0, min(w.energy.end_ev, 700.0) - 15.0,
                               s.instrument(), ("Ti-L23", "O-K") if ti_fit is not None else ("O-K",),
                               run.psf_decay(w))
    if ti_fit is not None:
        y = _less_ti(y, ef, refs, ti_fit, w.energy.energy_ev, ti["delta"], [ti_fit.value(n) for n in TI_NAMES])
    fixed = None
    if s.threshold_ev is not None:  # the study's convention: a fixed threshold on the reference scale
        if ti is None or not ti["has"].any():
            raise SreelsInputError(f"threshold {s.threshold_ev} eV on the reference scale needs an energy "
                                   "reference (a Ti-L2,3 edge in the image); without one, measure the threshold")
        fixed = s.threshold_ev + ti["delta"]
    try:
        ok = measure_o_k(w.energy, y, var, s.resolution_fwhm_ev, gain_known=True, max_ev=s.o_max_ev,
                         threshold_ev=fixed, continuum=(ef, refs["O-K continuum"]), image_mean=image_mean,
                         image_noise=image_noise, chi2_scale=run.chi2_scale(w), where=w.source, figures=run.figures)
    except SreelsInputError as exc:  # the window covers O-K but the data hold no measurable edge
        run.flag(np.ones(run.rows, bool), "no_o")
        run.notes.append(f"O-K not measured: {exc}")
        return None, {}
    if ok.flags["o_background_poor"].any():
        run.notes.append(f"{int(ok.flags['o_background_poor'].sum())} row(s) flagged o_background_poor: the O-K "
                         "pre-edge is not a power law within its noise ("
                         + ("plural scattering of the edges below it, or another edge); peak b may be biased there: "
                            "give the low-loss window to deconvolve plural scattering" if plural_left_in(w) else
                            "another edge below O-K, or what the plural-scattering removal left; the low-loss window "
                            "was used): peak b may be biased there, check residuals.png")
                         + "; a warning: these rows are kept")
    for tag, rows in ok.flags.items():
        run.flag(rows, tag)
    if sat is not None:
        run.flag(sat[:, w.energy.slice(ok.onset_coarse_ev - 10, ok.cut_ev)].any(1), "o_saturated")
    if ok.other_edges:
        run.notes.append(f"{w.source}: other edges found near O-K: {', '.join(ok.other_edges)} "
                         f"(peak-b search cut at {ok.cut_ev:.1f} eV on the file's axis, pre-edge above them)")
    d_row, d_err, source = _energy_reference(run, ti, ok)
    run.notes.append(f"energy reference: {source}")
    de, de_err = ok.delta_e_b_ev, ok.delta_e_b_err_ev
    if s.threshold_ev is not None:
        de_err = np.hypot(ok.peak_b_err_ev, d_err)
    r, r_err_stat = r_from_energy_b(de, de_err, 0.0, 0.0, s.c_ev_nm2, 0.0)
    if s.r_oo_rule_nm is not None:
        beyond = beyond_rule(r, r_err_stat, s.r_oo_rule_nm)
        if beyond.any():
            run.flag(beyond, R_BEYOND_RULE)
            lo, hi = s.r_oo_rule_nm
            run.notes.append(f"R_OO not given on the rows flagged {R_BEYOND_RULE} (their dE_b and peaks are kept): "
                             f"dE_b gives R beyond the O-O distances ({lo:.4f}-{hi:.4f} nm) of the oxides the rule "
                             "dE R^2 = C is known on by more than twice the row's statistical error: there peak b "
                             "need not be the resonance the rule describes (measured Y3Al5O12 gives 0.334 nm for its "
                             f"0.274 nm). {BEYOND_RULE_HINT}")
            r, r_err_stat = np.where(beyond, np.nan, r), np.where(beyond, np.nan, r_err_stat)
    plural = R_OO_PLURAL_SYST if plural_left_in(w_full) else 0.0
    eb_res = resolution_systematic_ev(s.resolution_fwhm_ev, w_full.energy.scale_ev)
    if eb_res > 0:
        run.notes.append(f"dE_b errors include a systematic of {1e3 * eb_res:.0f} meV for the O-K threshold read at an "
                         f"effective resolution of {effective_fwhm(s.resolution_fwhm_ev):.2f} eV "
                         f"on {w_full.energy.scale_ev:g} eV channels (it is defined at 1.5 eV on channels of 0.1 eV or finer; "
                         "common to the rows, in r_oo_nm_err and the R_OO numbers)")
    if plural:
        run.notes.append(f"R_OO errors include a plural-scattering systematic of {100 * plural:.1f} % of R (no low loss "
                         "deconvolved the O-K window; peak b moves with t/lambda, measured on simulations; common to "
                         "the rows, added once to the R_OO numbers): give the low-loss window of a DualEELS pair")
    # + C's error and the plural systematic, common to every row
    r_err = np.sqrt(r_err_stat**2 + (r * 0.5 * s.c_err_ev_nm2 / s.c_ev_nm2) ** 2 + (r * plural) ** 2
                    + (r**3 / (2 * s.c_ev_nm2) * eb_res) ** 2)  # dR = R^3 / (2 C) dE_b
    cols = {
        "o_threshold_ev": ok.threshold_ev - d_row, "o_threshold_ev_err": ok.threshold_err_ev,
        "peak_a_ev": ok.peak_a_ev - d_row, "peak_a_ev_err": np.hypot(ok.peak_a_err_ev, d_err),
        "peak_b_ev": ok.peak_b_ev - d_row, "peak_b_ev_err": np.hypot(ok.peak_b_err_ev, d_err),
        "delta_e_b_ev": de, "delta_e_b_ev_err": de_err, "r_oo_nm": r, "r_oo_nm_err": r_err,
        "r_oo_nm_err_stat": r_err_stat, "r_oo_plural_syst": np.full(run.rows, plural),
        "delta_e_b_syst_ev": np.full(run.rows, eb_res),
        "o_chi2_red": ok.b_chi2_red, "o_jump_snr": ok.jump_snr, "peak_b_fwhm_ev": ok.peak_b_fwhm_ev,
        "o_background_r": ok.background_r,
        # the window's axis less this = the reference scale (source in the notes)
        "energy_offset_ev": d_row, "energy_offset_ev_err": d_err,
    }
    cols.update(_o_amount(run, w_full, ti, ti_fit, d_row, ok))
    return ok.fit, cols


def beyond_rule(r, r_err, valid_nm) -> np.ndarray:
    """Rows whose R (nm) lies beyond ``valid_nm`` = (lo, hi) by more than twice its error ``r_err``."""
    lo, hi = valid_nm
    with np.errstate(invalid="ignore"):
        return (np.asarray(r) - 2 * np.asarray(r_err) > hi) | (np.asarray(r) + 2 * np.asarray(r_err) < lo)


def _o_amount(run: _Run, w: WindowData, ti, ti_fit, d_row, ok: OKRows) -> dict:
    """O atoms per row for the Li-K / O-K route (:mod:`.oamount`) on the whole window, the Ti-L2,3
    fit's contribution taken off first as in :func:`_fit_o`; private columns (NaN and a note where
    the window has no post-edge or another edge lies under it)."""
    from .oamount import POST_EDGE_EV, PRE_EDGE_EV
    from .okpeaks import other_edges_in

    s, rows = run.s, run.rows
    nan = {"_o_atoms": np.full(rows, np.nan), "_o_atoms_err": np.full(rows, np.nan),
           "_o_exposure_s": np.full(rows, np.nan)}
    # the windows' placement from whole-image numbers (a block of rows must place them as the whole image)
    d0 = 0.0 if s.zlp_referenced else run.ti_d0 if ti is not None and ti["has"].any() else \
        ok.onset_coarse_ev - O_K_ONSET_EV
    top = min(w.energy.end_ev, 529.0 + POST_EDGE_EV[1] + d0)
    lo = max(w.energy.offset_ev, PRE_EDGE_EV[0] + d0)
    found = [n for n, _ in other_edges_in(w.energy.energy_ev, run.mean(w), run.mean_noise(w),
                                          ok.onset_coarse_ev, ok.onset_coarse_ev + 5.0, top - 8.0)] + list(ok.other_edges)
    if found:
        run.notes.append(f"li_per_fu_o not computed (NaN): {', '.join(sorted(set(found)))} under the O-K post-edge")
        return nan
    y = np.asarray(w.counts, float)
    ef, refs = fine_references(w.energy, lo, top, s.instrument(),
                               ("Ti-L23", "O-K") if ti_fit is not None else ("O-K",), run.psf_decay(w))
    if ti_fit is not None:  # rows with a Ti-L2,3 edge (elsewhere its amplitudes are noise)
        y = _less_ti(y, ef, refs, ti_fit, w.energy.energy_ev, ti["delta"],
                         [np.where(ti["has"], ti_fit.value(n), 0.0) for n in TI_NAMES])
    am = fit_o_amount(w.energy, y, run.variance(w), (ef, {"O-K continuum": refs["O-K continuum"]}), d_row,
                      mask=saturated_pixels(w, s), window_offset_ev=d0)
    if am is None:
        run.notes.append(f"li_per_fu_o not computed (NaN): the O-K window ({w.energy.offset_ev:.0f}-"
                         f"{w.energy.end_ev:.0f} eV) has no post-edge {POST_EDGE_EV[0]:.0f} eV above the threshold "
                         "long enough for the O amount, or no pre-edge")
        return nan
    run.flag(am.poor, "o_amount_poor_fit")
    has = np.isfinite(am.n) & (am.n > 5 * am.n_err)
    return {"_o_atoms": np.where(has, am.n / am.ref_scale, np.nan), "_o_atoms_err": am.n_err / am.ref_scale,
            "_o_exposure_s": np.full(rows, _exposure(w) or np.nan), "o_amount_chi2_red": am.chi2_red,
            "_o_deconvolved": np.full(rows, w.variance_factor is not None)}


#: Systematic of li_per_fu_o, relative, per (t/lambda)^2, where the O-K window was Fourier-ratio deconvolved:
#: the O-K post-edge lies 50-100 eV above the threshold, 160-200 eV into the window, where the deconvolution
#: needs the low loss beyond a ~200 eV low-loss window, which it extends by a power law (:mod:`.deconvolve`);
#: the Al/Si/P-L continua there are not one, and the deconvolved post-edge reads low.  Measured noise-free
#: on the study's interface with the default low-loss window (-10 to 195 eV): li_per_fu_o / li_per_fu - 1 =
#: +0.2 / +0.5 / +1.6 % in the parent and up to +0.35 / +1.1 / +2.8 % in the electrode at t/lambda 0.30 /
#: 0.54 / 0.89, i.e. <= 0.039 (t/lambda)^2; with a low-loss window to 400 eV the deconvolved post-edge is
#: right to 0.05 % (the extension is the cause).  Added in quadrature to li_per_fu_o_err.
#: Since the extension reaches 400 eV and the window's lower pad 210 eV (:data:`.deconvolve.EXTEND_EV`,
#: :data:`.deconvolve.PAD_LO_EV`) li_per_fu_o / li_per_fu - 1 is +0.00 to +0.10 / +0.06 to +0.15 / +0.15 to
#: +0.25 % over the same rows (330 rows, measured), i.e. this value is now an upper bound by ~10x; not
#: lowered here (li_per_fu_o itself reads 0.57 % low at t/lambda 0.89, median, with li_per_fu: the Li-K
#: side's, tests/inference/test_lipfu.py).
LI_O_PLURAL_SYST = 0.04
#: A row's O per Ti atom above the parent's by more than this fraction (and 3 sigma) holds O of a
#: second phase (AlPO4 grains: O and no Ti, no Li): its li_per_fu_o would read low and is withheld.
#: Noise-free, O per Ti varied off the grains by 0.2 / 0.6 / 1.4 % (parent to electrode) at t/lambda 0.30 /
#: 0.54 / 0.89 (the deconvolved post-edge's systematic, LI_O_PLURAL_SYST; measured before the longer
#: low-loss extension, which brought li_per_fu_o / li_per_fu within 0.25 %), below this.
SECOND_O_PHASE_REL = 0.02


def _li_presence(cols: dict, status: list) -> None:
    """Li-K is present in the image when a tenth of its rows (at least 3) show it at 3 sigma: then every row's
    amount is a measurement (a row's low value is not censored, which would bias the profile up); else no row
    holds Li-K (``no_li``; with Ti-L2,3 Li per Ti atom is still measured).  Decided on the whole image, after a
    Dask fit's blocks are put together: a block's rows are not the image (a block of the parent's weak Li rows read
    ``no_li`` where the image has Li)."""
    if "_li_a" not in cols:
        return
    a, a_err = cols["_li_a"], cols["_li_a_err"]
    with np.errstate(invalid="ignore"):
        sig = np.isfinite(a) & (a > 3 * a_err)
    has = np.isfinite(a) & (sig.sum() >= max(3, 0.1 * a.size) if a.size >= 3 else sig)
    for i in np.flatnonzero(~has):
        status[i].add("no_li")
    cols["_li_valid"] = cols["_li_valid"].astype(bool) & (has | cols.pop("_li_per_ti").astype(bool))
    cols["_li_atoms"] = np.where(has, cols["_li_atoms"], np.nan)


def _li_per_fu_o(cols: dict, status: list, notes: list) -> None:
    """Li per formula unit from Li-K / O-K (:func:`.lipfu.li_per_fu_o`), in place, for the whole image
    (the second-phase check compares each row's O per Ti with the parent region's median)."""
    a, ae, tl = (cols.pop(k, None) for k in ("_li_atoms", "_li_atoms_err", "_li_exposure_s"))
    n, ne, to = (cols.pop(k, None) for k in ("_o_atoms", "_o_atoms_err", "_o_exposure_s"))
    rti, rti_e = cols.pop("_ti_rate", None), cols.pop("_ti_rate_err", None)
    dec = cols.pop("_o_deconvolved", None)
    if a is None or n is None:
        if a is not None or n is not None:
            rows = (a if a is not None else n).size
            notes.append("li_per_fu_o not computed (NaN): " + ("no O-K window, or no O-K edge measured in it"
                                                                if n is None else "no Li-K window"))
            cols.update({k: np.full(rows, np.nan) for k in ("li_per_fu_o", "li_per_fu_o_err", "li_per_fu_o_xs_err")})
        return
    t_li = float(np.nanmedian(tl)) if np.isfinite(tl).any() else None
    t_o = float(np.nanmedian(to)) if np.isfinite(to).any() else None
    valid = np.isfinite(a) & np.isfinite(n)
    if rti is not None and np.isfinite(rti).any() and t_o:
        with np.errstate(invalid="ignore", divide="ignore"):
            q = (n / t_o) / rti
            q_err = np.abs(q) * np.hypot(ne / n, rti_e / rti)
        par = cols.get("parent", np.zeros(q.size)).astype(bool) & np.isfinite(q)
        if par.sum() >= 3:
            qp = float(np.median(q[par]))
            second = np.isfinite(q) & (q > qp * (1 + SECOND_O_PHASE_REL) + 3 * q_err)
            for i in np.flatnonzero(second & valid):
                status[i].add("second_o_phase")
            valid &= ~second
            if (second & np.isfinite(a)).any():
                notes.append(f"{int((second & np.isfinite(a)).sum())} row(s) flagged second_o_phase: their O per Ti "
                             f"atom exceeds the parent's by more than {SECOND_O_PHASE_REL:.0%} and 3 sigma (O of "
                             "another phase, e.g. AlPO4 grains): li_per_fu_o withheld there (NaN)")
        else:
            notes.append("li_per_fu_o: fewer than 3 parent rows with Ti: a second O-bearing phase is not checked")
    elif np.isfinite(n).any():
        notes.append("li_per_fu_o takes every O of a row as the host's (12 per formula unit): without Ti a second "
                     "O-bearing phase (AlPO4 grains) cannot be recognised and would make it read low")
    if np.isfinite(n).any() and not np.isfinite(a).any():
        notes.append("li_per_fu_o not computed (NaN): no Li-K edge measured")
    if not (t_li and t_o) and valid.any():
        notes.append("li_per_fu_o not computed (NaN): the exposure of the Li-K or the O-K window is not in the "
                     "files' metadata")
    out = li_per_fu_o(np.nan_to_num(a, nan=0.0), ae, np.nan_to_num(n, nan=1.0), ne, t_li, t_o, valid)
    if dec is not None and np.any(dec) and "t_over_lambda" in cols:
        syst = LI_O_PLURAL_SYST * np.nan_to_num(cols["t_over_lambda"], nan=1.0) ** 2 * np.abs(out["li_per_fu_o"])
        out["li_per_fu_o_err"] = np.hypot(out["li_per_fu_o_err"], np.where(dec, syst, 0.0))
        notes.append(f"li_per_fu_o errors include the deconvolved O-K post-edge's systematic, {LI_O_PLURAL_SYST} x "
                     "(t/lambda)^2 x li_per_fu_o (the low loss beyond its window is a power-law extension; measured on "
                     "noise-free simulations with a -10 to 195 eV low-loss window)")
    cols.update(out)


#: Energy range (eV) a window must cover for an edge to be measured in it: the edge itself and a
#: little pre-edge, with room for the few-eV offsets of uncalibrated axes.
EDGE_CORE_EV = {"li": (50.0, 66.0), "ti": (450.0, 472.0), "o": (520.0, 560.0)}
EDGE_LABEL = {"li": "Li-K", "ti": "Ti-L2,3", "o": "O-K"}


def fit_ranges(s: FitSettings) -> dict:
    """Nominal (lo, hi, pre-edge hi) per edge (eV)."""
    return {"li": (*s.li_fit_ev, s.li_pre_edge_hi_ev), "ti": (*s.ti_fit_ev, s.ti_pre_edge_hi_ev),
            "o": (495.0, 600.0, 526.0)}


def select_windows(wins, s: FitSettings, notes: list):
    """The window that measures each edge (the one covering the most of its nominal fit range,
    among those covering its core range :data:`EDGE_CORE_EV`), or None; the fit range shrunk to
    that window.  An edge cut by a window's end is named in a note, not refused."""
    found, ranges = {}, {}
    for tag, (lo, hi, pre) in fit_ranges(s).items():
        core = EDGE_CORE_EV[tag]
        cands = [w for w in wins.values() if w.energy.contains(*core)]
        if not cands:
            found[tag] = None
            for w in wins.values():
                if w.energy.offset_ev < core[0] + 6 < w.energy.end_ev or w.energy.offset_ev < core[1] < w.energy.end_ev:
                    notes.append(f"{w.source}: the {EDGE_LABEL[tag]} edge is cut by the window "
                                 f"({w.energy.offset_ev:.1f}-{w.energy.end_ev:.1f} eV; {core[0]:.0f}-{core[1]:.0f} eV "
                                 "needed): not measured")
            continue
        w = max(cands, key=lambda w: min(hi, w.energy.end_ev) - max(lo, w.energy.offset_ev))
        found[tag] = w
        ranges[tag] = (max(lo, w.energy.offset_ev + w.energy.scale_ev),
                       min(hi, w.energy.end_ev - w.energy.scale_ev), pre)
    if all(v is None for v in found.values()):
        cover = {k: (round(w.energy.offset_ev, 1), round(w.energy.end_ev, 1)) for k, w in wins.items()}
        raise SreelsInputError(f"no window covers a Li-K {EDGE_CORE_EV['li']}, Ti-L2,3 {EDGE_CORE_EV['ti']} or O-K "
                               f"{EDGE_CORE_EV['o']} eV range; the windows cover {cover} eV")
    used = [id(w) for w in found.values() if w is not None]
    for w in wins.values():
        if id(w) not in used:
            rivals = [(t, o) for t, o in found.items() if o is not None and w.energy.contains(*EDGE_CORE_EV[t])]
            if rivals:  # another window measures the same edge: one window per edge, the one covering more of it
                notes.append(f"{w.source}: its window ({w.energy.offset_ev:.1f}-{w.energy.end_ev:.1f} eV) covers "
                             + ", ".join(f"{EDGE_LABEL[t]} as {o.source} does" for t, o in rivals)
                             + "; sreels fits each edge in one window, the one covering more of its fit range: not "
                             "used (two measurements: fit them separately)")
                continue
            why = ""
            if w.energy.offset_ev < 0.0 < w.energy.end_ev:
                why = (" and no zero-loss peak was recognised in it (a low loss peaks within 10 eV of 0 eV at > 20x "
                       "its median channel: a dark level left in the counts, or a processed spectrum?)")
            notes.append(f"{w.source}: its window ({w.energy.offset_ev:.1f}-{w.energy.end_ev:.1f} eV) covers none of "
                         f"the edges fitted{why}: not used")
    return found, ranges


def _li_overlaps(run: _Run, wins: dict) -> tuple:
    """Transition-metal M2,3 edges under Li-K (:data:`LI_OVERLAPS`), recognised by their L3
    white lines in the image's core-loss windows (:func:`.okpeaks.other_edges_in`)."""
    from .okpeaks import other_edges_in

    found = []
    for w in wins.values():
        if w.energy.end_ev < MEAN_NOISE_EV:
            continue
        mean = run.mean(w)
        noise = run.mean_noise(w)
        for name, _ in other_edges_in(w.energy.energy_ev, mean, noise, O_K_ONSET_EV, w.energy.offset_ev + 10.0,
                                      w.energy.end_ev - 8.0):
            if name in LI_OVERLAPS and LI_OVERLAPS[name] not in found:
                found.append(LI_OVERLAPS[name])
    if found:
        run.notes.append(f"{', '.join(found)} under the Li-K edge (their L3 edges are in the image): Li-K not "
                         "measured (flag li_overlap_*)")
    return tuple(found)


#: Instrument values assumed when neither an option nor the files give them.
INSTRUMENT_DEFAULTS = {"beam_energy_kev": 300.0, "collection_semiangle_mrad": 10.0, "resolution_fwhm_ev": 0.5}


def _from_metadata(md: dict, key: str):
    """An instrument value from sreels' own metadata, else HyperSpy/exspy's keys."""
    if not isinstance(md, dict):
        return None
    v = md.get("sreels", {}).get("instrument", {}).get(key) if isinstance(md.get("sreels"), dict) else None
    if v is None:
        tem = md.get("Acquisition_instrument", {}).get("TEM", {}) if isinstance(md.get("Acquisition_instrument"),
                                                                                 dict) else {}
        eels = tem.get("Detector", {}).get("EELS", {}) if isinstance(tem.get("Detector"), dict) else {}
        v = {"beam_energy_kev": tem.get("beam_energy"), "collection_semiangle_mrad": eels.get("collection_angle"),
             "resolution_fwhm_ev": eels.get("resolution_fwhm_ev")}.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def resolve_instrument(windows: dict, s: FitSettings) -> tuple[FitSettings, list]:
    """Settings with every instrument value set: the option, else the files' metadata, else
    :data:`INSTRUMENT_DEFAULTS`; notes name each value's source where it was not given."""

    notes, upd = [], {}
    for key, default in INSTRUMENT_DEFAULTS.items():
        if getattr(s, key) is not None:
            continue
        found = {v for v in (_from_metadata(w.metadata, key) for w in windows.values()) if v is not None}
        if not found and key == "resolution_fwhm_ev" and LOWLOSS_NAME in windows:  # measured: the ZLP's FWHM
            from .lowloss import zlp_centre, zlp_fwhm
            ll = windows[LOWLOSS_NAME]

            def widths(c):
                c = np.asarray(c, float)
                return zlp_fwhm(c, ll.energy, zlp_centre(c, ll.energy)[1])
            if hasattr(ll.counts, "map_blocks"):  # a lazily read window: block by block (Dask)
                c = ll.counts.rechunk({1: -1})
                rows = c.map_blocks(lambda b: widths(b)[:, None], chunks=(c.chunks[0], (1,)), dtype=float)
                fw = float(np.nanmedian(rows[:, 0].compute()))
            else:
                fw = float(np.nanmedian(widths(ll.counts)))
            if np.isfinite(fw) and fw > 0:
                upd[key] = fw
                notes.append(f"resolution_fwhm_ev = {fw:.3g}: the low-loss window's ZLP FWHM (median over rows)")
                continue
        if len(found) == 1:
            upd[key] = found.pop()
            notes.append(f"{key} = {upd[key]:g} from the files' metadata")
        else:
            upd[key] = max(found) if found else default
            notes.append(f"{key} = {upd[key]:g} assumed (" + ("the files disagree: " + str(sorted(found)) if found
                                                                else "not in the files; give it as an option") + ")")
    return dataclasses.replace(s, **upd), notes


def _prepared(windows: dict, s: FitSettings) -> dict:
    return {k: _bin(_dark(w, s.dark_offset_counts), s.bin_rows, s) for k, w in windows.items()}


def noise_counts(windows: dict, s: FitSettings) -> dict:
    """Per core-loss window whose gain is unknown, the histogram whose median is its noise scale
    (:func:`.okpeaks.noise_ratio_counts`) on its counts as recorded (after dark and bin): a Dask fit sums
    its blocks' (:mod:`.daskfit`).  (A low-loss window's, where its Li-K edge is fitted, is taken on the counts
    less their pedestal, :func:`.lowloss.apply_low_loss`.)"""
    from .lowloss import noise_counts_of

    return {k: noise_counts_of(w, s) for k, w in windows.items()
            if k != LOWLOSS_NAME and not (s.gain_counts_per_e or w.gain_counts_per_e)}


#: windows that end above this (eV) have other edges looked for in their mean spectrum (O-K's window: edges under its
#: post-edge, transition-metal L3 lines above it, :func:`_li_overlaps`), against :meth:`_Run.mean_noise`
MEAN_NOISE_EV = 550.0


def unscaled_variance(w: WindowData, s: FitSettings) -> np.ndarray:
    """The per-pixel variance of ``w``'s rows before its noise scale (a window whose gain is unknown: measured on the
    whole image, :func:`with_noise_scales`): the gain's (or 1's) variance model times the deconvolution's factor.
    Its mean over rows, times the scale, over the rows, is the variance of the image's mean spectrum
    (:meth:`_Run.mean_noise`), which the fits of windows that reach :data:`MEAN_NOISE_EV` use."""
    g = (s.gain_counts_per_e or w.gain_counts_per_e) or 1.0
    f = 1.0 if w.variance_factor is None else w.variance_factor[:, None]
    return variance_model(w.counts, g, readout_noise(w, s)) * f


def with_noise_scales(windows: dict, s: FitSettings, counts: dict | None = None) -> dict:
    """The windows whose gain is unknown with their noise scale (``WindowData.noise_scale``, which the fits'
    variances take, :meth:`_Run.variance`) from the counts as recorded, before any deconvolution; ``counts``:
    the whole image's :func:`noise_counts` when ``windows`` hold a block of its rows (None: these rows')."""
    counts = noise_counts(windows, s) if counts is None else counts
    return {k: dataclasses.replace(w, noise_scale=noise_scale_of(counts[k])) if k in counts else w
            for k, w in windows.items()}


def _fit_rows(wins: dict, s: FitSettings, means: dict | None = None, progress: bool = True, threads: bool = False,
              figures: bool = True, mean_vars: dict | None = None):
    """The per-row fits of (a chunk of) an image: columns (Li not yet normalised), status sets,
    the edge fits, timings and notes.  ``threads``: the Li-K and O-K fits (after Ti-L2,3's) in two
    threads (:func:`sreels.resources.run_concurrently`; same results, notes in another order).  ``figures``
    False: the edge fits are not wanted (O-K's, made for figures only, is not made: None).  ``means``, ``mean_vars``:
    the whole image's mean spectra and (window name -> (mean of :func:`unscaled_variance`, rows)) where these rows
    are a block of it."""
    from tqdm.auto import tqdm

    rows = next(iter(wins.values())).counts.shape[0]
    run = _Run(s, rows, [set() for _ in range(rows)], means=means, mean_vars=mean_vars, figures=figures)
    found, run.ranges = select_windows(wins, s, run.notes)
    if found["li"] is not None:
        run.li_overlaps = _li_overlaps(run, wins)
    for tag, w in found.items():  # an over-subtracted dark leaves negative means: flagged, still fitted
        if w is not None:
            run.flag(w.counts[:, w.energy.slice(*run.ranges[tag][:2])].mean(1) < 0, f"{tag}_negative_counts")
    cols: dict[str, np.ndarray] = {}
    fits, timings, ti = {}, {}, None
    with tqdm(total=3, desc="sreels fit", unit="edge", delay=2.0, leave=False, disable=not progress) as bar:
        if found["ti"] is not None:
            ta = time.perf_counter()
            fits["Ti-L23"], c, ti = _fit_ti(run, found["ti"])
            cols.update(c)
            timings["ti"] = time.perf_counter() - ta
        bar.update()

        def edge(tag):  # Li-K and O-K, each given the Ti-L2,3 fit: independent of each other
            ta = time.perf_counter()
            if tag == "li":
                f, c = _fit_li(run, found[tag], ti)
            else:
                f, c = _fit_o(run, found[tag], ti, fits.get("Ti-L23") if found["o"] is found["ti"] else None)
            return f, c, time.perf_counter() - ta

        tags = [t for t in ("li", "o") if found[t] is not None]
        for tag, (f, c, dt) in zip(tags, run_concurrently(edge, [(t,) for t in tags], threads)):
            if f is not None:
                fits[{"li": "Li-K", "o": "O-K"}[tag]] = f
            cols.update(c)
            timings[tag] = dt
        bar.update(2)
    return cols, run.status, fits, timings, run.notes


def _result(pos: PositionAxis, cols: dict, status: list, fits: dict, s: FitSettings, timings: dict,
            notes: list) -> FastResult:
    """The whole image's columns: Li normalised to the parent, missing profiles NaN, status strings."""
    rows = pos.size
    cols = {"y_nm": pos.y_nm, **cols}
    _li_presence(cols, status)   # on the fits' own errors, as before the scatter check widens them
    if any(n.startswith(GAIN_UNKNOWN_NOTE) for n in notes):  # the noise level was measured, not known
        _scatter_check(cols, notes)
    _normalise_li(cols, pos.y_nm, s.parent_nm, notes)
    _li_per_fu_o(cols, status, notes)
    for k in ("li_rel", "li_rel_err", "ti3_fraction", "ti3_fraction_err", "peak_a_ev", "peak_a_ev_err",
              "peak_b_ev", "peak_b_ev_err", "r_oo_nm", "r_oo_nm_err"):
        cols.setdefault(k, np.full(rows, np.nan))
    st = np.array(["|".join(sorted(x)) if x else "ok" for x in status])
    return FastResult(pos, cols, st, fits, s, timings, sorted(set(notes)))


@single_threaded_blas()  # its many small per-row systems and ~500-channel eigenproblems
def fit_image(windows: dict[str, WindowData], settings: FitSettings | None = None,
              progress: bool = True) -> FastResult:
    """Invert a measurement (windows keyed by name) with the fast path: Ti-L2,3 first (Ti atoms
    per row and the row's energy shift), then Li-K (per Ti atom) and O-K (on the Ti-calibrated
    axis).  Inputs are not modified.  For images that do not fit in memory see
    :func:`fit_image_chunked`."""
    s, inst_notes = resolve_instrument(windows, settings or FitSettings())
    check_fit_input(windows, s)
    t0 = time.perf_counter()
    wins = with_noise_scales(_prepared(windows, s), s)
    # the low-loss window -> ZLP reference, t/lambda, deconvolved core loss (:mod:`.lowloss`)
    wins, ll_cols, ll_notes = apply_low_loss(wins, s, threads=True)
    s = dataclasses.replace(s, zlp_referenced=bool(ll_cols))
    cols, status, fits, timings, notes = _fit_rows(wins, s, progress=progress, threads=True)
    cols.update(ll_cols)
    notes += ll_notes
    timings["total"] = time.perf_counter() - t0
    return _result(next(iter(wins.values())).position, cols, status, fits, s, timings, notes + inst_notes)


def fit_image_chunked(windows: dict[str, WindowData], settings: FitSettings | None = None,
                      chunk_rows: int = 4096, **dask_options) -> FastResult:
    """:func:`fit_image` over blocks of ``chunk_rows`` rows, for images that do not fit in
    memory: ``counts`` may be Dask arrays (``load_measurement(..., lazy=True)``), read one
    block at a time.  The blocks are tasks of a Dask graph whose whole-image steps (the mean
    spectra behind the global energy offsets, the low-loss window's widest ZLP and mean ZLP
    shape, the parent normalisation of Li) are reductions, so the result equals
    :func:`fit_image`'s; see :func:`.daskfit.fit_image_dask` (``dask_options``: ``workers``,
    ``scheduler``, ``client``, ``progress``).  The per-row edge fits are not kept (``fits`` is
    empty: no spectra panels or residual images)."""
    from .daskfit import fit_image_dask

    return fit_image_dask(windows, settings, chunk_rows, **dask_options)
