"""Measured MLLS references for the Ti-L2,3 fit of the fast path.

Digital Micrograph's MLLS fits a spectrum image with measured standards; sreels does the
same when given them (``sreels fit --reference Ti4+=rutile.msa --reference Ti3+=Ti2O3.msa``):
each standard replaces the forward model's per-atom Ti4+ or Ti3+ shape.  A standard is

1. read (``.msa``, ``.dm3``/``.dm4``, ``.hspy`` or two-column ``.dat``; one spectrum),
2. freed of its power-law background, fitted over the fit's pre-edge window,
3. interpolated onto the fit's fine grid by a cubic spline (ends held flat beyond the
   measured range),
4. put on the model's energy scale: the Ti4+ standard (else the Ti3+ one) is matched to the
   model's shape by cross-correlation and every standard is moved by that offset (their
   relative alignment is kept), so that the per-row shift of the fit -- removed from the
   O-K peak positions and applied to the Li-K references -- still means the same thing,
5. scaled per Ti atom: its integral over the post-edge continuum window (default
   470-480 eV, past the L2 white line, where the L2,3 continuum does not depend on the
   valence) is set equal to the forward model's there.

Step 4 keeps the Ti3+ fraction a per-atom fraction and keeps the Ti amplitudes in the
units the Li-K (per Ti atom) and O-K (Ti-L tail under O-K) fits use.  The standards must be
measured with the same resolution and camera as the image and on a common energy axis
(their relative alignment is kept; a per-row shift moves both together).
"""

from __future__ import annotations

import numpy as np

from ..axes import EnergyAxis
from ..errors import SreelsInputError

#: Components a measured standard may replace.
REFERENCE_NAMES = ("Ti4+", "Ti3+")


def parse_references(items) -> tuple:
    """``["Ti4+=rutile.msa", ...]`` -> ``(("Ti4+", "rutile.msa"), ...)``, names checked."""
    out = {}
    for item in items or ():
        name, sep, path = str(item).partition("=")
        name = name.strip()
        if not sep or not path.strip():
            raise SreelsInputError(f"--reference {item!r}: expected NAME=FILE, e.g. Ti4+=rutile.msa")
        if name not in REFERENCE_NAMES:
            raise SreelsInputError(f"--reference {item!r}: unknown component {name!r}; valid: {list(REFERENCE_NAMES)}")
        if name in out:
            raise SreelsInputError(f"--reference {name} given twice ({out[name]}, {path})")
        out[name] = path.strip()
    return tuple(out.items())


def _uniform_axis(e: np.ndarray, where: str) -> EnergyAxis:
    step = np.diff(e)
    # float32 axes jitter by ~1e-7 of the energy: allowed on top of 0.1 % of the step
    if e.size < 20 or np.any(step <= 0) or np.ptp(step) > 1e-3 * abs(step.mean()) + 2e-6 * np.abs(e).max():
        raise SreelsInputError(f"{where}: energy axis must be increasing and uniformly spaced "
                               f"with >= 20 channels (got {e.size} channels)")
    return EnergyAxis(float(e[0]), float(step.mean()), int(e.size))


def load_standard(path, fine_ev: np.ndarray, pre_ev: tuple, need_ev: tuple) -> np.ndarray:
    """A measured standard, background-subtracted, on the fine grid ``fine_ev`` (unscaled).

    Raises
    ------
    SreelsInputError
        Unreadable file, non-finite values, a non-uniform axis, or an axis that does not
        cover ``need_ev`` (the pre-edge window through the normalisation window).
    """
    from ..structures.spectra import load_spectrum
    from .background import fit_power_law

    spec = load_spectrum(path)
    e, y = np.asarray(spec.energy_ev, float), np.asarray(spec.counts, float)
    if not np.all(np.isfinite(y)):
        raise SreelsInputError(f"reference {path}: {int(np.sum(~np.isfinite(y)))} non-finite values")
    axis = _uniform_axis(e, f"reference {path}")
    if e[0] > need_ev[0] or e[-1] < need_ev[1]:
        raise SreelsInputError(f"reference {path} covers {e[0]:.1f}-{e[-1]:.1f} eV; the Ti-L2,3 fit needs "
                               f"{need_ev[0]:.1f}-{need_ev[1]:.1f} eV (pre-edge window to the normalisation window)")
    pl = fit_power_law(axis, np.maximum(y, 0.0)[None, :], *pre_ev)
    if not (np.isfinite(pl.log_a[0]) and np.isfinite(pl.r[0])):
        raise SreelsInputError(f"reference {path}: no power-law background could be fitted over "
                               f"{pre_ev[0]:.1f}-{pre_ev[1]:.1f} eV")
    from scipy.interpolate import make_interp_spline

    # cubic: a white line sampled at 0.1 eV is reproduced on the 0.01 eV grid to ~1e-3
    # (linear interpolation clips its peaks by ~1 % and biased f3 by half an error bar)
    spline = make_interp_spline(e, y - pl.evaluate(e)[0], k=3)
    return spline(np.clip(fine_ev, e[0], e[-1]))


def with_measured(fine_ev: np.ndarray, model: dict, files: tuple, pre_ev: tuple, norm_ev: tuple,
                  search_ev: float = 5.0) -> tuple[dict, float]:
    """``model`` (name -> per-atom reference on ``fine_ev``) with the named components replaced
    by measured standards, moved onto the model's energy scale and scaled to the model's
    per-atom continuum over ``norm_ev``; also returns the offset removed (eV)."""
    from .edgefits import global_shift

    out = dict(model)
    band = (fine_ev >= norm_ev[0]) & (fine_ev <= norm_ev[1])
    if band.sum() < 2:
        raise SreelsInputError(f"normalisation window {norm_ev} eV lies outside the fit's reference grid "
                               f"{fine_ev[0]:.1f}-{fine_ev[-1]:.1f} eV")
    raw = {name: (path, load_standard(path, fine_ev, pre_ev, (pre_ev[0], norm_ev[1]))) for name, path in files}
    key = next(n for n in REFERENCE_NAMES if n in raw)
    grid = EnergyAxis(float(fine_ev[0]), float(fine_ev[1] - fine_ev[0]), int(fine_ev.size))
    offset = global_shift(grid, raw[key][1], model[key], pre_ev[0], norm_ev[1], search_ev)
    for name, (path, r) in raw.items():
        r = np.interp(fine_ev + offset, fine_ev, r)
        area = np.trapezoid(r[band], fine_ev[band])
        if not area > 0:
            raise SreelsInputError(f"reference {path} ({name}): no Ti-L2,3 continuum above the background over "
                                   f"{norm_ev[0]:.0f}-{norm_ev[1]:.0f} eV (integral {area:.3g}); is it a Ti-L2,3 "
                                   "spectrum on the right energy axis?")
        out[name] = r * (np.trapezoid(model[name][band], fine_ev[band]) / area)
    return out, offset
