"""Reading single O-K spectra for the calibration (MSA, DM3/DM4, HSPY, two-column text).

Every reader returns a :class:`Spectrum1D` (energy axis in eV, counts) and
raises :class:`~sreels.errors.SreelsInputError` naming the file and the problem.
Formats are read through RosettaSciIO (``rsciio.msa``, ``rsciio.digitalmicrograph``,
``rsciio.hspy``); two-column ``.dat``/``.txt`` files through NumPy.

Real-world quirks handled here:

* MSA files whose data lines end with a trailing comma (seen in the
  amorphous-ice data set) are parsed by a tolerant fallback reader.
* DM spectrum images load energy-first ``(E, y, x)``; the energy axis is
  identified by its units (eV) and moved last.
* Multi-spectrum files (line scans) need ``rows``: the selected rows are summed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SreelsInputError


@dataclass(frozen=True)
class Spectrum1D:
    """One EELS spectrum.

    Attributes
    ----------
    energy_ev : ndarray, shape (n,)
        Energy-loss axis as stored in the file (eV); may be offset by several eV.
    counts : ndarray, shape (n,)
        Intensity per channel (counts or arbitrary units as stored).
    name : str
        Label used in tables and figures.
    source : str
        File path (and row selection) it came from.
    """

    energy_ev: np.ndarray
    counts: np.ndarray
    name: str
    source: str


def _energy_axis_index(axes) -> int:
    for i, ax in enumerate(axes):
        if str(ax.get("units", "")).strip().lower() == "ev":
            return i
    for i, ax in enumerate(axes):
        if not ax.get("navigate", True):
            return i
    return len(axes) - 1


def _from_rsciio(signal: dict, path: Path, rows, name: str) -> Spectrum1D:
    data = np.asarray(signal["data"], dtype=float)
    axes = signal["axes"]
    ie = _energy_axis_index(axes)
    data = np.moveaxis(data, ie, -1)
    ax = axes[ie]
    n = data.shape[-1]
    energy = float(ax.get("offset", 0.0)) + float(ax.get("scale", 1.0)) * np.arange(n)
    src = str(path)
    if data.ndim > 1:
        flat = data.reshape(-1, n)
        if rows is None:
            raise SreelsInputError(
                f"{path}: holds {flat.shape[0]} spectra (shape {data.shape}); "
                "choose the rows to sum, e.g. rows=[0, 1, 2]")
        idx = np.atleast_1d(np.asarray(rows, dtype=int))
        if idx.size == 0 or idx.min() < 0 or idx.max() >= flat.shape[0]:
            raise SreelsInputError(f"{path}: rows {list(idx)} outside 0..{flat.shape[0] - 1}")
        data = flat[idx].sum(axis=0)
        src = f"{path}[rows {','.join(map(str, idx))}]"
    return Spectrum1D(energy, data, name, src)


def _read_msa_tolerant(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse EMSA/MAS text by hand: '#' header lines, then 'x, y[,]' lines."""
    xs, ys = [], []
    offset = scale = None
    for line in path.read_text(errors="replace").splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            key, _, val = s[1:].partition(":")
            key = key.strip().upper()
            with contextlib.suppress(ValueError, IndexError):  # a non-numeric value: axis from the data
                if key == "OFFSET":
                    offset = float(val.split()[0])
                elif key == "XPERCHAN":
                    scale = float(val.split()[0])
            continue
        parts = [p for p in s.replace(";", ",").replace("\t", ",").split(",") if p.strip()]
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            continue
        if len(vals) >= 2:
            xs.append(vals[0])
            ys.append(vals[1])
        elif len(vals) == 1:
            ys.append(vals[0])
    if not ys:
        raise SreelsInputError(f"{path}: no numeric spectrum lines found in the MSA file")
    y = np.asarray(ys, dtype=float)
    if len(xs) == len(ys):
        x = np.asarray(xs, dtype=float)
    elif offset is not None and scale is not None:
        x = offset + scale * np.arange(y.size)
    else:
        raise SreelsInputError(f"{path}: MSA file without an energy column or OFFSET/XPERCHAN")
    return x, y


@contextlib.contextmanager
def _quiet_rsciio():
    """Silence RosettaSciIO's warnings about malformed MSA DATE/TIME header fields."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("rsciio")]
    loggers.append(logging.getLogger("rsciio"))
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, old):
            lg.setLevel(lv)


def load_spectrum(path, rows=None, name: str | None = None) -> Spectrum1D:
    """Load one spectrum (or the sum of ``rows`` of a line scan) from ``path``.

    Parameters
    ----------
    path : str or Path
        ``.msa``/``.ems``, ``.dm3``/``.dm4``, ``.hspy``, or two-column ``.dat``/``.txt``
        (energy in eV, counts).
    rows : sequence of int, optional
        For files with more than one spectrum: the flat indices of the spectra to sum.
    name : str, optional
        Label; defaults to the file stem.

    Returns
    -------
    Spectrum1D
    """
    path = Path(path)
    name = name or path.stem
    if not path.is_file():
        raise SreelsInputError(f"spectrum file {path} does not exist")
    ext = path.suffix.lower()
    try:
        if ext in (".msa", ".ems", ".emsa"):
            try:
                from rsciio.msa import file_reader
                with _quiet_rsciio():
                    sig = file_reader(str(path))[0]
                spec = _from_rsciio(sig, path, rows, name)
            except SreelsInputError:
                raise
            except Exception:  # trailing-comma MSA files and other dialects
                x, y = _read_msa_tolerant(path)
                spec = Spectrum1D(x, y, name, str(path))
        elif ext in (".dm3", ".dm4"):
            from rsciio.digitalmicrograph import file_reader
            spec = _from_rsciio(file_reader(str(path))[0], path, rows, name)
        elif ext in (".hspy", ".hdf5", ".h5"):
            from rsciio.hspy import file_reader
            spec = _from_rsciio(file_reader(str(path))[0], path, rows, name)
        elif ext in (".dat", ".txt", ".csv"):
            arr = np.loadtxt(path, delimiter="," if ext == ".csv" else None, ndmin=2)
            if arr.shape[1] < 2:
                raise SreelsInputError(f"{path}: expected two columns (energy eV, counts), got {arr.shape[1]}")
            spec = Spectrum1D(arr[:, 0], arr[:, 1], name, str(path))
        else:
            raise SreelsInputError(
                f"{path}: unknown spectrum format {ext!r}; expected .msa, .dm3, .dm4, .hspy or .dat")
    except SreelsInputError:
        raise
    except Exception as exc:
        raise SreelsInputError(f"{path}: cannot read spectrum ({type(exc).__name__}: {exc})") from exc
    e, c = np.asarray(spec.energy_ev, float), np.asarray(spec.counts, float)
    if e.ndim != 1 or e.size < 10 or e.shape != c.shape:
        raise SreelsInputError(f"{path}: expected a 1-D spectrum, got energy {e.shape} and counts {c.shape}")
    order = np.argsort(e)
    return Spectrum1D(e[order], c[order], spec.name, spec.source)
