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
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .axes import EnergyAxis, PositionAxis
from .errors import SreelsInputError


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


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


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


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


@contextlib.contextmanager
def output_directory(path: Path, overwrite: bool = False):
    """Yield a temporary folder that becomes ``path`` only if the block succeeds.

    An existing ``path`` is refused unless ``overwrite``; on failure nothing is
    left behind and an existing folder is untouched.
    """
    path = Path(path).resolve()
    if path.exists() and not overwrite:
        raise SreelsInputError(f"output folder {path} exists; choose another or pass --overwrite")
    if path.exists() and not path.is_dir():
        raise SreelsInputError(f"output path {path} exists and is not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


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
