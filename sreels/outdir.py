"""Output folders that appear complete or not at all, and never eat a user's files.

A result is written into a temporary sibling folder ``.NAME.sreels-tmp-PID-<random>`` and
renamed to ``NAME`` only when the whole block succeeded (and no signal arrived).  The
finished folder holds a manifest, :data:`MANIFEST`, listing every file sreels wrote with
its size and SHA-256.  ``--overwrite`` replaces a folder only when

* it holds nothing but the files of its manifest, unchanged;
* it is not, and does not contain, one of the run's inputs;
* it is not the working folder (nor one of its parents).

Temporary folders left by a killed run (SIGKILL, power loss) carry the killed process's id;
the next run into the same place removes those whose process is gone and says so.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from . import signals
from .errors import SreelsInputError

MANIFEST = ".sreels-manifest"
PARTIAL = ".sreels-partial"
TMP_TAG = "sreels-tmp"
OLD_TAG = "sreels-old"
_SHOW = 8  # offending files named in a message


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _listing(folder: Path) -> list[str]:
    """Every entry below ``folder`` (files, links, empty folders), as relative POSIX paths."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in files + [d for d in dirs if os.path.islink(Path(root) / d)]:
            out.append((rel / name).as_posix())
        for d in dirs:
            p = Path(root) / d
            if not os.path.islink(p) and not any(p.iterdir()):
                out.append((rel / d).as_posix() + "/")
    return sorted(out)


def write_manifest(folder: Path) -> None:
    """Record every file in ``folder`` (size and SHA-256) in ``folder/.sreels-manifest``."""
    folder = Path(folder)
    files = {}
    for rel in _listing(folder):
        if rel in (MANIFEST, PARTIAL) or rel.endswith("/"):
            continue
        p = folder / rel
        files[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    (folder / MANIFEST).write_text(json.dumps({"written_by": "sreels", "files": files}, indent=1) + "\n")


def _name(items, n=_SHOW) -> str:
    items = list(items)
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def check_replaceable(path: Path, inputs=()) -> None:
    """Raise :class:`SreelsInputError` unless ``path`` may be replaced by a new result.

    Parameters
    ----------
    path : Path
        An existing folder named by ``--out``.
    inputs : iterable of path-like
        Files the run reads; none may be ``path`` or lie inside it.
    """
    path = Path(path).resolve()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise SreelsInputError(f"--overwrite refused: {path} is the working folder"
                               f"{'' if path == cwd else ' or contains it'}; choose a new output folder")
    inside = []
    for item in inputs:
        p = Path(item).resolve()
        if p == path or path in p.parents:
            inside.append(str(item))
    if inside:
        raise SreelsInputError(f"--overwrite refused: {path} holds the input(s) {_name(inside)}; "
                               "write the result to another folder")
    present = _listing(path)
    man = path / MANIFEST
    if not man.is_file():
        raise SreelsInputError(f"--overwrite refused: {path} is not a sreels result (no {MANIFEST}); it holds "
                               f"{_name(present) or 'nothing but is not sreels-made'}; sreels replaces only "
                               "folders it wrote itself")
    try:
        listed = json.loads(man.read_text())["files"]
        if not isinstance(listed, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise SreelsInputError(f"--overwrite refused: {man} is not a valid sreels manifest") from None
    foreign = [f for f in present if f not in listed and f != MANIFEST]
    changed = [f for f, rec in listed.items() if (path / f).is_file()
               and ((path / f).stat().st_size != rec.get("bytes") or _sha256(path / f) != rec.get("sha256"))]
    if foreign or changed:
        why = ([f"files sreels did not write: {_name(foreign)}"] if foreign else []) + \
              ([f"files changed since sreels wrote them: {_name(changed)}"] if changed else [])
        raise SreelsInputError(f"--overwrite refused: {path} holds {'; '.join(why)}; move them away or "
                               "choose another output folder")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(path: Path) -> list[Path]:
    """Remove temporary folders of killed sreels runs into ``path``; returns what was removed.

    A leftover is recognised by its name (``.NAME.sreels-tmp-PID-*`` or ``.NAME.sreels-old-PID-*``)
    and removed only when it was made on this host by a process that no longer exists.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    host = socket.gethostname()
    for cand in path.parent.glob(f".{glob.escape(path.name)}.sreels-*-*"):
        parts = cand.name[len(path.name) + 2:].split("-")
        if len(parts) < 4 or f"{parts[0]}-{parts[1]}" not in (TMP_TAG, OLD_TAG) or not parts[2].isdigit():
            continue
        mark = cand / PARTIAL
        made_here = True
        if mark.is_file():
            with contextlib.suppress(ValueError, OSError):
                made_here = json.loads(mark.read_text()).get("host", host) == host
        if not cand.is_dir() or cand.is_symlink() or not made_here or _alive(int(parts[2])):
            continue
        shutil.rmtree(cand, ignore_errors=True)
        if not cand.exists():
            removed.append(cand)
            print(f"note: removed {cand}, left by an interrupted sreels run (process {parts[2]})",
                  file=sys.stderr)
    return removed


def _check_space(parent: Path, expected_bytes: int) -> None:
    if expected_bytes <= 0:
        return
    free = shutil.disk_usage(parent).free
    if expected_bytes > free:
        raise SreelsInputError(f"not enough disk space in {parent}: the result needs about "
                               f"{expected_bytes / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free")


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SreelsInputError(f"cannot create output folder {path}: {exc.strerror}") from None


def check_output(path, overwrite: bool = False, inputs=()) -> Path:
    """Refuse an output folder early (before a long computation); creates nothing.

    Returns the resolved path.  The same checks run again when the result is published.
    """
    path = Path(path).absolute()
    real = path.resolve()
    for p in [real, *real.parents]:
        if p.exists():
            if p != real and not p.is_dir():
                raise SreelsInputError(f"cannot create output folder {path}: {p} is a file, not a folder")
            break
    if real.exists():
        if not real.is_dir():
            raise SreelsInputError(f"output path {path} exists and is not a folder")
        if not overwrite:
            raise SreelsInputError(f"output folder {path} exists; choose another or pass --overwrite")
        check_replaceable(real, inputs)
    return real


@contextlib.contextmanager
def output_directory(path, overwrite: bool = False, inputs=(), expected_bytes: int = 0):
    """Yield a temporary folder that becomes ``path`` only if the block succeeds.

    Parameters
    ----------
    path : path-like
        The output folder (``--out``).
    overwrite : bool
        Replace an existing ``path`` (only if :func:`check_replaceable` allows it).
    inputs : iterable of path-like
        The run's input files: ``path`` may not be or contain one of them.
    expected_bytes : int
        Approximate size of the result, checked against the free disk space up front.

    Raises
    ------
    SreelsInputError
        An existing folder without ``overwrite`` or not replaceable, an unwritable place,
        a full disk.  On any failure or signal nothing is left behind and an existing folder
        is untouched.
    """
    path = Path(path).absolute()
    real = check_output(path, overwrite, inputs)
    _make_parent(real)
    clean_stale(real)
    _check_space(real.parent, expected_bytes)
    with signals.deferred():  # a signal between creating the folder and knowing its name would leave it
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.{TMP_TAG}-{os.getpid()}-", dir=real.parent))
        except OSError as exc:
            raise SreelsInputError(f"cannot write into {real.parent}: {exc.strerror}") from None
    try:
        signals.raise_if_pending()  # ... so it is raised here, where the folder is removed
        os.chmod(tmp, 0o777 & ~_umask())
        (tmp / PARTIAL).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        yield tmp
        signals.raise_if_pending()
        (tmp / PARTIAL).unlink()
        write_manifest(tmp)
        if real.exists():
            check_replaceable(real, inputs)  # nothing added to it while we worked
            old = Path(tempfile.mkdtemp(prefix=f".{real.name}.{OLD_TAG}-{os.getpid()}-", dir=real.parent))
            os.replace(real, old / real.name)
            os.replace(tmp, real)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, real)
    except OSError as exc:  # a full disk, a read-only place, a quota: the output's problem, said in one line
        shutil.rmtree(tmp, ignore_errors=True)
        why = exc.strerror or str(exc)
        raise SreelsInputError(f"cannot write the result to {path}: {why}"
                               f"{' (' + str(exc.filename) + ')' if exc.filename else ''}; nothing was written"
                               ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
