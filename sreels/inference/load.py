"""Reading measured spectrum images through RosettaSciIO (and NumPy).

Every file becomes one :class:`WindowData`: counts of shape (rows, channels) with
energy last, whatever the file's order (Digital Micrograph spectrum images arrive
energy-first).  Navigation axes other than the first are flattened into rows and
their shape kept.  Several files (one per energy window) form one measurement; their
row counts must agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..axes import EnergyAxis, PositionAxis
from ..errors import SreelsInputError

_READERS = {
    ".hspy": "rsciio.hspy", ".hdf5": "rsciio.hspy", ".zspy": "rsciio.zspy",
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
    position_unit: str = "nm"           # "" when the file gives no length unit: y is then the row index
    #: per-row factor on the channel variances (rows,): > 1 after a deconvolution (see .lowloss)
    variance_factor: np.ndarray | None = field(default=None, repr=False)
    #: with the gain unknown, the noise level (x counts) measured on the counts before a deconvolution
    #: (:func:`.okpeaks.noise_scale`; the deconvolved channels are smoothed by the reconvolution)
    noise_scale: float | None = field(default=None, repr=False)
    #: plural scattering of a window the low loss reaches (see .lowloss.plural_kernel): per row the
    #: unscattered fraction (rows,), the multiple scattering (rows, lags) on losses m x channel width in
    #: low-loss counts, and its noise as replica deviations (replicas, rows, lags)
    unscattered: np.ndarray | None = field(default=None, repr=False)
    plural_tail: np.ndarray | None = field(default=None, repr=False)
    plural_tail_dev: np.ndarray | None = field(default=None, repr=False)
    tail_step_ev: float = 0.0  # the lag spacing of plural_tail (eV)
    #: the whole image's mean tail (1, lags) and unscattered fraction (for the mean spectrum's fit)
    plural_tail_mean: np.ndarray | None = field(default=None, repr=False)
    unscattered_mean: float | None = None
    #: a lazily read 2-D map's counts as stored, (ny, nx, channels) (a Dask array; ``counts`` are its rows
    #: y-major): a Dask fit reads blocks that follow its storage chunks (:mod:`.daskfit`)
    map_counts: object = field(default=None, repr=False)
    #: per-row energy shift (eV) still in the counts (the ZLP's about the image's mean, for windows not
    #: deconvolved)
    row_shift_ev: np.ndarray | None = field(default=None, repr=False)
    #: the image's mean ZLP position (eV) on the low-loss window's stored axis, with ``row_shift_ev``
    zlp_mean_ev: float | None = None
    #: this window's exposure over the low-loss window's (from the metadata), with ``plural_tail``
    exposure_ratio: float | None = None
    #: rows of the recording summed into each row (``sreels fit --bin``): every pixel of a row was read that
    #: many times, so its readout noise is sqrt(rows_summed) x one read's (:func:`.lowloss.readout_noise`)
    rows_summed: int = 1
    #: (rows, channels) bool, set when rows were summed: the pixels where any row summed into them reached the
    #: saturation level (a sum is compared with no single-read level; :func:`.lowloss.saturated_pixels`)
    saturated: np.ndarray | None = field(default=None, repr=False)


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
    off by a few eV) at more than 20x its median.  Recognised by content, not by file name.  ``counts``:
    (..., channels); of a lazily read file its first stored block is read first, in this process, and the whole
    file only when that block shows no ZLP (thick, empty): the whole file's mean was a full pass over it, on the
    cluster's workers when a Dask client was active (~3 s of a 256 x 256 map's fit on 2 workers, measured)."""
    if not (energy.offset_ev < 10.0 and energy.end_ev > 0.0):
        return False
    if _is_lazy(counts):
        first = counts.blocks[(0,) * (counts.ndim - 1)].compute(scheduler="sync")
        if _peaks_at_zero(energy, first):
            return True
        counts = counts.mean(axis=tuple(range(counts.ndim - 1))).compute(scheduler="sync")  # (a thick or empty first block)
    return _peaks_at_zero(energy, counts)


def _peaks_at_zero(energy: EnergyAxis, counts) -> bool:
    """:func:`has_zlp`'s test on the mean spectrum of ``counts`` (..., channels)."""
    m = np.asarray(counts, dtype=float).reshape(-1, np.shape(counts)[-1]).mean(0)
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


def _item(tree: dict, path: str):
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def mapped_metadata(sig: dict) -> dict:
    """The signal's ``metadata`` with RosettaSciIO's ``mapping`` applied to its ``original_metadata``, as
    HyperSpy's loader does (a DM file's beam energy, collection angle and exposure live only in its original
    tags until mapped); keys already in ``metadata`` win, and a tag a mapping function cannot convert is
    skipped."""
    import copy

    md = copy.deepcopy(sig.get("metadata") or {})
    om, mapping = sig.get("original_metadata") or {}, sig.get("mapping") or {}
    if not isinstance(md, dict) or not isinstance(om, dict) or not isinstance(mapping, dict):
        return md if isinstance(md, dict) else {}
    for src, target in mapping.items():
        value = _item(om, src)
        if value is None or not isinstance(target, tuple) or len(target) != 2:
            continue
        dest, convert = target
        try:
            value = convert(value) if convert is not None else value
        except Exception:  # noqa: BLE001 - a tag the reader's own converter rejects is left out
            continue
        *parents, leaf = dest.split(".")
        node = md
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else None
            if node is None:
                break
        if node is not None and value is not None and leaf not in node:
            node[leaf] = value
    return md


def from_signal_dict(sig: dict, source: str, energy_offset_ev=None, dispersion_ev=None) -> WindowData:
    """Build a WindowData from a RosettaSciIO signal dictionary (a Dask array stays lazy)."""
    data = sig["data"] if _is_lazy(sig["data"]) else np.asarray(sig["data"])
    axes = sig["axes"]
    if data.ndim != len(axes) or data.ndim < 1:
        raise SreelsInputError(f"{source}: data has {data.ndim} dimensions but {len(axes)} axes")
    if data.ndim > 3 or 0 in data.shape:
        raise SreelsInputError(f"{source}: data of shape {tuple(data.shape)}; expected a spectrum, a line scan "
                               "(rows, channels) or a 2-D map (ny, nx, channels), none of size 0")
    if np.dtype(data.dtype).kind not in "iuf":
        raise SreelsInputError(f"{source}: data of type {data.dtype}; expected real numbers (counts)")
    ie = _energy_axis_index(axes, source)
    ea = axes[ie]
    scale = float(ea.get("scale", 1.0)) * (1e3 if str(ea.get("units")).strip() == "keV" else 1.0)
    offset = float(ea.get("offset", 0.0)) * (1e3 if str(ea.get("units")).strip() == "keV" else 1.0)
    energy = EnergyAxis(offset if energy_offset_ev is None else float(energy_offset_ev),
                        scale if dispersion_ev is None else float(dispersion_ev), data.shape[ie])
    data = np.moveaxis(data, ie, -1)
    nav_axes = [a for i, a in enumerate(axes) if i != ie]
    if len(nav_axes) == 2 and 1 in data.shape[:-1]:  # a 1 x N "map" is a line scan along its long axis
        keep = 0 if data.shape[0] > 1 else 1
        nav_axes = [nav_axes[keep]]
        data = data.reshape(data.shape[keep], data.shape[-1])
    nav_shape = data.shape[:-1]
    counts = data.reshape(-1, data.shape[-1]).astype(float)
    if nav_axes:
        a0 = nav_axes[0]
        unit = str(a0.get("units", "")).strip()
        f = _LENGTH_TO_NM.get(unit, 1.0)
        position = PositionAxis(float(a0.get("offset", 0.0)) * f, float(a0.get("scale", 1.0)) * f or 1.0,
                                counts.shape[0]) if len(nav_axes) == 1 else PositionAxis(0.0, 1.0, counts.shape[0])
        punit = ("nm" if unit in _LENGTH_TO_NM else "") if len(nav_axes) == 1 else "px"
    else:
        position, punit = PositionAxis(0.0, 1.0, 1), ""
    md = mapped_metadata(sig)
    sre = md.get("sreels", {}) if isinstance(md, dict) else {}
    det = sre.get("detector", {}) if isinstance(sre, dict) else {}
    return WindowData(_window_name(energy, Path(source).stem, data), energy, counts, position, source,
                      sre.get("gain_counts_per_e"), det.get("readout_noise_counts"), tuple(nav_shape), md, punit,
                      map_counts=data if _is_lazy(data) and len(nav_shape) == 2 else None)


#: No detector records more than this per pixel (16-bit readouts summed over > 10^7 frames).
MAX_ABS_COUNTS = 1e12


def check_counts(w: WindowData) -> None:
    """Refuse NaN/inf and values no detector records (``|counts|`` above :data:`MAX_ABS_COUNTS`)."""
    counts = np.asarray(w.counts)
    bad = ~np.isfinite(counts)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise SreelsInputError(f"{w.source}: {int(bad.sum())} NaN/inf values (first at row {r}, "
                               f"{w.energy.energy_ev[c]:.2f} eV); expected finite counts")
    big = np.abs(counts) > MAX_ABS_COUNTS
    if big.any():
        r, c = np.argwhere(big)[0]
        raise SreelsInputError(f"{w.source}: {int(big.sum())} values beyond +-{MAX_ABS_COUNTS:g} (first "
                               f"{counts[r, c]:g} at row {r}, {w.energy.energy_ev[c]:.2f} eV); expected detector "
                               "counts")


def _load_npy(path: Path, lazy: bool) -> np.ndarray:
    """A .npy array of real numbers, or a clear error for an empty, truncated or object file."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            data_start = fh.tell()
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as exc:
        raise SreelsInputError(f"{path}: not a readable .npy array ({exc}); expected an array saved by numpy.save"
                               ) from None
    if dtype.kind not in "iuf" or dtype.hasobject:
        raise SreelsInputError(f"{path}: array of type {dtype} (shape {shape}); expected real numbers (counts)")
    need = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size
    if have < need:
        raise SreelsInputError(f"{path}: truncated .npy file ({have} bytes, the header of a {shape} {dtype} "
                               f"array needs {need}); expected a complete file")
    if 0 in shape or len(shape) == 0:
        raise SreelsInputError(f"{path}: empty array of shape {shape}; expected spectra")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if lazy else None)
    except (ValueError, OSError, EOFError) as exc:
        raise SreelsInputError(f"{path}: numpy could not read it ({exc})") from None


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
    if not (path.is_file() or (path.suffix.lower() == ".zspy" and path.is_dir())):  # a .zspy is a zarr folder
        raise SreelsInputError(f"input file {path} does not exist")
    ext = path.suffix.lower()
    if ext == ".npy":
        if energy_offset_ev is None or dispersion_ev is None:
            raise SreelsInputError(f"{path}: a .npy array has no energy axis; give --energy-offset and --dispersion")
        arr = _load_npy(path, lazy)
        if arr.ndim not in (1, 2):
            raise SreelsInputError(f"{path}: expected a 1-D spectrum or a 2-D (rows, channels) array, got shape {arr.shape}")
        if lazy and arr.size:  # memory-mapped, read block by block through Dask
            import dask.array as da
            arr = da.from_array(arr, chunks=(4096,) + arr.shape[1:] if arr.ndim == 2 else arr.shape)
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
            except (TypeError, NotImplementedError):  # a reader without lazy loading (MSA: one small spectrum)
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


def _refuse_duplicates(inputs) -> None:
    """The same file given twice (by any path) would be fitted as two windows: refuse it."""
    seen: dict[tuple, str] = {}
    for item in inputs:
        if hasattr(item, "axes_manager"):
            continue
        p = Path(item)
        try:
            st = p.stat()
        except OSError:
            continue  # read_file says that it does not exist
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise SreelsInputError(f"input {item} given twice (also as {seen[key]}); expected each energy "
                                   "window's file once")
        seen[key] = str(item)


def load_measurement(inputs, energy_offset_ev=None, dispersion_ev=None, lazy: bool = False) -> dict[str, WindowData]:
    """Read several files (or HyperSpy signals) as one measurement, keyed by window name
    (``lazy``: Dask arrays for :func:`~sreels.inference.fast.fit_image_chunked`)."""
    windows: dict[str, WindowData] = {}
    _refuse_duplicates(inputs)
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


def _finite(where, v, lo=-np.inf, hi=np.inf, lo_open=False, what="a number"):
    try:
        x = float(v) if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) else None
    except OverflowError:
        x = None
    ok = x is not None and math.isfinite(x) and (x > lo if lo_open else x >= lo) and x <= hi
    if not ok:
        rng = f" in {'(' if lo_open else '['}{lo:g}, {hi:g}]" if np.isfinite(lo) or np.isfinite(hi) else ""
        raise SreelsInputError(f"{where} = {v!r}: expected {what}{rng}")


def check_settings(s) -> None:
    """Refuse fit settings no detector or specimen can have (names the setting, the value, the range)."""
    for name in ("gain_counts_per_e", "saturation_counts"):
        v = getattr(s, name)
        if v is not None:
            _finite(name, v, 0, 1e12, lo_open=True)
    for name, hi in (("readout_noise_counts", 1e6), ("c_err_ev_nm2", 100.0)):
        v = getattr(s, name)
        if v is not None:
            _finite(name, v, 0, hi)
    if s.psf_decay is not None:
        _finite("psf_decay", s.psf_decay, 0, 0.999)
    _finite("resolution_fwhm_ev", s.resolution_fwhm_ev, 0, 20, lo_open=True)
    _finite("c_ev_nm2", s.c_ev_nm2, 0, 100, lo_open=True)
    _finite("dark_offset_counts", s.dark_offset_counts, -1e12, 1e12)
    _finite("beam_energy_kev", s.beam_energy_kev, 1, 3000)
    _finite("collection_semiangle_mrad", s.collection_semiangle_mrad, 0, 500, lo_open=True)
    if isinstance(s.bin_rows, bool) or not isinstance(s.bin_rows, (int, np.integer)) or s.bin_rows < 1:
        raise SreelsInputError(f"bin_rows = {s.bin_rows!r}: expected an integer >= 1")
    if s.parent_nm is not None:
        p = s.parent_nm
        if not (isinstance(p, (tuple, list)) and len(p) == 2
                and all(isinstance(v, (int, float, np.integer, np.floating)) and not np.isnan(v) for v in p)
                and p[0] < p[1]):
            raise SreelsInputError(f"parent range = {p!r}: expected two numbers Y0 < Y1 (nm, or flat pixel "
                                   "indices for a 2-D map)")


def check_fit_input(windows: dict, settings=None) -> None:
    """The fit's input checks, in one place: the windows and the settings.

    Parameters
    ----------
    windows : dict of str to WindowData
        The measurement; every window needs 2-D counts (rows, channels) matching its axes,
        the same rows as the others, and (in memory) finite values of detector size.
    settings : FitSettings, optional
        Checked with :func:`check_settings`.

    Raises
    ------
    SreelsInputError
        Naming the window or setting, its value and what was expected.
    """
    if not isinstance(windows, dict) or not windows:
        raise SreelsInputError(f"expected a non-empty dict of windows (name -> WindowData), got {type(windows).__name__}")
    rows = {}
    for k, w in windows.items():
        if not isinstance(w, WindowData):
            raise SreelsInputError(f"window {k!r} is a {type(w).__name__}; expected a WindowData (load_measurement)")
        shape = tuple(getattr(w.counts, "shape", ()))
        if len(shape) != 2 or shape[0] < 1 or shape[1] != w.energy.size or shape[0] != w.position.size:
            raise SreelsInputError(f"window {k!r}: counts of shape {shape}; expected (rows, channels) = "
                                   f"({w.position.size}, {w.energy.size}) from its axes")
        if not _is_lazy(w.counts):
            if np.dtype(w.counts.dtype).kind not in "iuf":
                raise SreelsInputError(f"window {k!r}: counts of type {w.counts.dtype}; expected real numbers")
            check_counts(w)
        rows[k] = shape[0]
    if len(set(rows.values())) > 1:
        raise SreelsInputError(f"the windows have different numbers of rows {rows}; expected one measurement")
    if settings is not None:
        check_settings(settings)
