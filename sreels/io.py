"""Files in and out: atomic writes, HSPY through RosettaSciIO, CSV/JSON.

Nothing here overwrites a user's file unless asked to; every result is written
to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .axes import EnergyAxis, PositionAxis
from .outdir import output_directory

__all__ = ["output_directory", "atomic_write_bytes", "atomic_write_text", "write_json", "write_csv",
           "read_csv", "save_hspy", "hdf5_safe"]  # output_directory: the one way to write a result folder


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def hdf5_safe(obj):
    """``obj`` with every integer outside int64 (a 128-bit entropy seed, ``--seed 2**70``)
    turned into its decimal string: HDF5 attributes hold at most 64-bit integers."""
    if isinstance(obj, dict):
        return {k: hdf5_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(hdf5_safe(v) for v in obj)
    if isinstance(obj, int) and not isinstance(obj, bool) and not -2**63 <= obj < 2**63:
        return str(obj)
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _strict(obj):
    """``obj`` with every non-finite float (NaN: a number not measured; +-inf) as None: JSON has no NaN, and strict
    parsers (JavaScript's JSON.parse, jq, Go, serde) refuse the literal Python writes for it."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _strict(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def dumps_json(obj, indent: int = 2) -> str:
    """``obj`` as strict JSON text: a non-finite number as null, numpy values as Python's."""
    return json.dumps(_strict(obj), indent=indent, default=_json_default, allow_nan=False)


def write_json(path: Path, obj) -> None:
    """``obj`` as strict JSON (:func:`dumps_json`), written atomically."""
    atomic_write_text(path, dumps_json(obj) + "\n")


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Write equal-length 1-D columns as CSV (header = keys)."""
    names = list(columns)
    arrays = [np.asarray(columns[k]) for k in names]
    n = {a.shape[0] for a in arrays}
    if len(n) != 1:
        raise ValueError(f"CSV columns differ in length: {dict(zip(names, [a.shape for a in arrays]))}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for row in zip(*arrays):
        w.writerow([_fmt(v) for v in row])
    atomic_write_text(path, buf.getvalue())


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """Read a CSV written by :func:`write_csv`; numeric columns become float arrays."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(header):
        col = [r[j] for r in body]
        try:
            out[name] = np.array([float(c) for c in col])
        except ValueError:
            out[name] = np.array(col)
    return out


# --------------------------------------------------------------------- HSPY
def save_hspy(path: Path, data: np.ndarray, energy: EnergyAxis, position: PositionAxis,
              metadata: dict, title: str = "") -> None:
    """Save a 2-D spectrum image (rows = y, columns = energy) as a HyperSpy file.

    The navigation axis is the position y (nm), the signal axis the energy loss
    (eV), so ``hs.load(path)`` gives an ``EELSSpectrum``-like 1-D signal over y.
    ``metadata`` holds HyperSpy nodes: ``TEM`` (Acquisition_instrument.TEM), ``Signal``
    (merged into the Signal node, e.g. Noise_properties), ``Sample``, and ``sreels``.
    """
    from rsciio.hspy import file_writer

    data = np.asarray(data)
    if data.shape != (position.size, energy.size):
        raise ValueError(f"image shape {data.shape} does not match axes ({position.size}, {energy.size})")
    axes = [
        {"name": "y", "units": "nm", "size": position.size, "offset": position.offset_nm,
         "scale": position.scale_nm, "navigate": True},
        {"name": "Energy loss", "units": "eV", "size": energy.size, "offset": energy.offset_ev,
         "scale": energy.scale_ev, "navigate": False},
    ]
    md = {
        "General": {"title": title or Path(path).stem},
        "Signal": {"signal_type": "EELS", "quantity": "Intensity (counts)", **metadata.get("Signal", {})},
        "Acquisition_instrument": {"TEM": metadata.get("TEM", {})},
        "sreels": metadata.get("sreels", {}),
    }
    if "Sample" in metadata:  # HyperSpy's Sample node (elements) for exspy's create_model
        md["Sample"] = metadata["Sample"]
    sig = {"data": data, "axes": axes, "metadata": md, "original_metadata": {}, "tmp_parameters": {},
           "attributes": {"_lazy": False}, "learning_results": {}, "models": {},
           "package_info": {"name": "hyperspy", "version": "2.0"}}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.hspy")
    try:
        file_writer(str(tmp), sig)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
