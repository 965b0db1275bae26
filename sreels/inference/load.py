"""Reading measured spectrum images through RosettaSciIO (and NumPy).

Every file becomes one :class:`WindowData`: counts of shape (rows, channels) with
energy last, whatever the file's order (Digital Micrograph spectrum images arrive
energy-first).  Navigation axes other than the first are flattened into rows and
their shape kept.  Several files (one per energy window) form one measurement; their
row counts must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..axes import EnergyAxis, PositionAxis
from ..errors import SreelsInputError

_READERS = {
    ".hspy": "rsciio.hspy", ".hdf5": "rsciio.hspy",
    ".dm3": "rsciio.digitalmicrograph", ".dm4": "rsciio.digitalmicrograph",
    ".msa": "rsciio.msa", ".ems": "rsciio.msa", ".emsa": "rsciio.msa",
}
_LENGTH_TO_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "Å": 0.1, "A": 0.1, "pm": 1e-3, "m": 1e9}


@dataclass(frozen=True)
class WindowData:
    """One energy window of a measurement."""

    name: str
    energy: EnergyAxis
    counts: np.ndarray                  # (rows, channels), float64
    position: PositionAxis
    source: str
    gain_counts_per_e: float | None = None
    readout_noise_counts: float | None = None
    nav_shape: tuple = ()
    metadata: dict = field(default_factory=dict, repr=False)
    #: per-row factor on the channel variances (rows,): > 1 after a deconvolution (see .lowloss)
    variance_factor: np.ndarray | None = field(default=None, repr=False)


def _energy_axis_index(axes, where):
    """The axis in eV (Digital Micrograph spectrum images mark it as navigation: trust units first)."""
    ev = [i for i, a in enumerate(axes) if str(a.get("units", "")).strip() in ("eV", "keV")]
    idx = ev if len(ev) == 1 else [i for i in (ev or range(len(axes))) if not axes[i].get("navigate", True)]
    if len(idx) != 1:
        raise SreelsInputError(f"{where}: cannot tell the energy axis among {[a.get('name') for a in axes]}; "
                               "expected exactly one signal axis in eV")
    return idx[0]


def has_zlp(energy: EnergyAxis, counts) -> bool:
    """A zero-loss peak near 0 eV: the image's mean spectrum peaks within 10 eV of 0 eV (axes are
    off by a few eV) at more than 20x its median.  Recognised by content, not by file name."""
    if not (energy.offset_ev < 10.0 and energy.end_ev > 0.0):
        return False
    m = counts.mean(0)
    m = np.asarray(m.compute() if hasattr(m, "compute") else m, dtype=float)
    e = energy.energy_ev
    i = int(np.argmax(m))
    return bool(abs(e[i]) <= 10.0 and m[i] > 20.0 * max(np.median(np.abs(m)), 1e-12))


def _window_name(energy: EnergyAxis, fallback: str, counts=None) -> str:
    from ..config import LOWLOSS_NAME
    if counts is not None and has_zlp(energy, counts):
        return LOWLOSS_NAME
    if energy.contains(55.0, 62.0):
        return "low"
    if energy.contains(456.0, 470.0) or energy.contains(530.0, 560.0):
        return "high"
    return fallback


def _is_lazy(a) -> bool:
    return hasattr(a, "compute") and hasattr(a, "chunks")  # a Dask array


def from_signal_dict(sig: dict, source: str, energy_offset_ev=None, dispersion_ev=None) -> WindowData:
    """Build a WindowData from a RosettaSciIO signal dictionary (a Dask array stays lazy)."""
    data = sig["data"] if _is_lazy(sig["data"]) else np.asarray(sig["data"])
    axes = sig["axes"]
    if data.ndim != len(axes) or data.ndim < 1:
        raise SreelsInputError(f"{source}: data has {data.ndim} dimensions but {len(axes)} axes")
    ie = _energy_axis_index(axes, source)
    ea = axes[ie]
    scale = float(ea.get("scale", 1.0)) * (1e3 if str(ea.get("units")).strip() == "keV" else 1.0)
    offset = float(ea.get("offset", 0.0)) * (1e3 if str(ea.get("units")).strip() == "keV" else 1.0)
    energy = EnergyAxis(offset if energy_offset_ev is None else float(energy_offset_ev),
                        scale if dispersion_ev is None else float(dispersion_ev), data.shape[ie])
    data = np.moveaxis(data, ie, -1)
    nav_axes = [a for i, a in enumerate(axes) if i != ie]
    nav_shape = data.shape[:-1]
    counts = data.reshape(-1, data.shape[-1]).astype(float)
    if nav_axes:
        a0 = nav_axes[0]
        unit = str(a0.get("units", "")).strip()
        f = _LENGTH_TO_NM.get(unit, 1.0)
        position = PositionAxis(float(a0.get("offset", 0.0)) * f, float(a0.get("scale", 1.0)) * f or 1.0,
                                counts.shape[0]) if len(nav_axes) == 1 else PositionAxis(0.0, 1.0, counts.shape[0])
    else:
        position = PositionAxis(0.0, 1.0, 1)
    md = sig.get("metadata", {}) or {}
    sre = md.get("sreels", {}) if isinstance(md, dict) else {}
    det = sre.get("detector", {}) if isinstance(sre, dict) else {}
    return WindowData(_window_name(energy, Path(source).stem, counts), energy, counts, position, source,
                      sre.get("gain_counts_per_e"), det.get("readout_noise_counts"), tuple(nav_shape), md)


def check_counts(w: WindowData) -> None:
    bad = ~np.isfinite(w.counts)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise SreelsInputError(f"{w.source}: {int(bad.sum())} NaN/inf values (first at row {r}, "
                               f"{w.energy.energy_ev[c]:.2f} eV); expected finite counts")


def _from_text(path: Path, energy_offset_ev=None, dispersion_ev=None) -> WindowData:
    """A two-column text spectrum (energy in eV, counts), resampled linearly onto its median
    step if the energies are not evenly spaced."""
    from ..structures.spectra import load_spectrum

    spec = load_spectrum(path)
    e, y = spec.energy_ev, spec.counts
    de = float(np.median(np.diff(e)))
    if de <= 0:
        raise SreelsInputError(f"{path}: energies do not increase (median step {de} eV)")
    n = int(round((e[-1] - e[0]) / de)) + 1
    grid = e[0] + de * np.arange(n)
    if n != e.size or not np.allclose(grid, e, atol=1e-3 * de):
        y = np.interp(grid, e, y)
    sig = {"data": y[None, :], "axes": [{"name": "y", "units": "", "size": 1, "navigate": True},
                                       {"name": "E", "units": "eV", "size": n, "offset": float(e[0]),
                                        "scale": de, "navigate": False}]}
    return from_signal_dict(sig, str(path), energy_offset_ev, dispersion_ev)


def read_file(path, energy_offset_ev=None, dispersion_ev=None, lazy: bool = False) -> list[WindowData]:
    """Read one file; returns one WindowData per signal it holds (``lazy``: counts as Dask
    arrays, read when used; the finite-counts check then happens block by block in the fit)."""
    import importlib

    path = Path(path)
    if not path.is_file():
        raise SreelsInputError(f"input file {path} does not exist")
    ext = path.suffix.lower()
    if ext == ".npy":
        if energy_offset_ev is None or dispersion_ev is None:
            raise SreelsInputError(f"{path}: a .npy array has no energy axis; give --energy-offset and --dispersion")
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if lazy else None)
        if lazy:  # memory-mapped, read block by block through Dask
            import dask.array as da
            arr = da.from_array(arr, chunks=(4096,) + arr.shape[1:] if arr.ndim == 2 else arr.shape)
        if arr.ndim not in (1, 2):
            raise SreelsInputError(f"{path}: expected a 1-D spectrum or a 2-D (rows, channels) array, got shape {arr.shape}")
        arr = arr[None, :] if arr.ndim == 1 else arr
        sig = {"data": arr, "axes": [{"name": "y", "units": "", "size": arr.shape[0], "navigate": True},
                                     {"name": "E", "units": "eV", "size": arr.shape[1], "navigate": False}]}
        out = [from_signal_dict(sig, str(path), energy_offset_ev, dispersion_ev)]
    elif ext in (".txt", ".dat", ".csv"):  # two columns: energy (eV), counts; one spectrum
        out = [_from_text(path, energy_offset_ev, dispersion_ev)]
    elif ext in _READERS:
        reader = importlib.import_module(_READERS[ext]).file_reader
        try:
            try:
                sigs = reader(str(path), lazy=True) if lazy else reader(str(path))
            except TypeError:  # a reader without lazy loading (e.g. MSA: one small spectrum)
                sigs = reader(str(path))
        except Exception as exc:  # noqa: BLE001 - any reader failure is the file's problem
            raise SreelsInputError(f"{path}: RosettaSciIO could not read it ({type(exc).__name__}: {exc})") from None
        out = []
        for s in sigs:
            try:
                out.append(from_signal_dict(s, str(path), energy_offset_ev, dispersion_ev))
            except SreelsInputError:
                if len(sigs) == 1:
                    raise
        if not out:
            raise SreelsInputError(f"{path}: no spectrum (signal axis in eV) found")
    else:
        raise SreelsInputError(f"{path}: unknown file type {ext!r}; expected one of "
                               f"{sorted(set(_READERS) | {'.npy', '.txt', '.dat', '.csv'})}")
    for w in out:
        if not lazy:
            check_counts(w)
    return out


def from_hyperspy(signal, name: str | None = None) -> WindowData:
    """Accept a HyperSpy signal (EELSSpectrum or Signal1D) from the Python API."""
    axes = [ax.get_axis_dictionary() if hasattr(ax, "get_axis_dictionary") else dict(ax)
            for ax in signal.axes_manager._get_axes_dicts()] if hasattr(signal.axes_manager, "_get_axes_dicts") \
        else signal.axes_manager.as_dictionary().values()
    sig = {"data": np.asarray(signal.data), "axes": list(axes), "metadata": signal.metadata.as_dictionary()}
    w = from_signal_dict(sig, name or getattr(signal.metadata.General, "title", "signal"))
    check_counts(w)
    return w


def load_measurement(inputs, energy_offset_ev=None, dispersion_ev=None, lazy: bool = False) -> dict[str, WindowData]:
    """Read several files (or HyperSpy signals) as one measurement, keyed by window name
    (``lazy``: Dask arrays for :func:`~sreels.inference.fast.fit_image_chunked`)."""
    windows: dict[str, WindowData] = {}
    for item in inputs:
        ws = [from_hyperspy(item)] if hasattr(item, "axes_manager") else \
            read_file(item, energy_offset_ev, dispersion_ev, lazy)
        for w in ws:
            key = w.name
            i = 2
            while key in windows:
                key = f"{w.name}{i}"
                i += 1
            windows[key] = w
    rows = {k: w.counts.shape[0] for k, w in windows.items()}
    if len(set(rows.values())) > 1:
        raise SreelsInputError(f"the windows have different numbers of rows {rows}; expected one measurement "
                               "with the same rows in every window")
    return windows
