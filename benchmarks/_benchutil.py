"""Small helpers shared by the benchmark scripts (not part of sreels, not run by pytest).

Timing convention everywhere: ``time.perf_counter``; ``warmup`` untimed calls, then
``repeats`` timed calls; the median is the headline number, all times are kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
import warnings

import numpy as np

#: Environment variables that change which OpenBLAS kernel runs or how many threads it uses.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def blas_info() -> list[dict]:
    """What threadpoolctl reports (BLAS library, kernel 'architecture', threads), if installed."""
    try:
        import threadpoolctl
    except ImportError:
        return [{"error": "threadpoolctl not installed (pip install threadpoolctl)"}]
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer", "filepath")
    return [{k: d.get(k) for k in keep} for d in threadpoolctl.threadpool_info()]


def versions(names) -> dict:
    from importlib import metadata
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except Exception:
            out[n] = None
    return out


def cpu_info() -> dict:
    """CPU facts for the report; each one is optional (absent where the OS does not give it)."""
    info = {"os_cpu_count": os.cpu_count()}
    with contextlib.suppress(Exception):
        info["sched_affinity"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["model_name"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["loadavg_1_5_15min"] = os.getloadavg()  # when the report was made
    return info


def environment(extra_packages=()) -> dict:
    pk = ["numpy", "scipy", "sreels", "threadpoolctl", *extra_packages]
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu_info(),
        "executable": sys.executable,
        "blas_env": {k: os.environ.get(k) for k in BLAS_ENV},
        "threadpoolctl": blas_info(), "versions": versions(pk),
    }


def time_calls(fn, repeats: int, warmup: int = 1, setup=None) -> dict:
    """Median-of-``repeats`` timing of ``fn(state)``; ``state = setup()`` is rebuilt, untimed,
    before every call (warm-up included) when ``setup`` is given."""
    times, wtimes, out = [], [], None
    for k in range(warmup + repeats):
        state = setup() if setup is not None else None
        t0 = time.perf_counter()
        out = fn(state)
        dt = time.perf_counter() - t0
        (wtimes if k < warmup else times).append(dt)
    return {"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)),
            "times_ms": [round(1e3 * t, 3) for t in times], "warmup_ms": [round(1e3 * t, 3) for t in wtimes],
            "repeats": repeats, "warmup": warmup, "_last": out}


def strip_private(d):
    """Drop keys starting with '_' (e.g. the last return value) before JSON output."""
    if isinstance(d, dict):
        return {k: strip_private(v) for k, v in d.items() if not str(k).startswith("_")}
    if isinstance(d, list):
        return [strip_private(v) for v in d]
    return d


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        with contextlib.suppress(Exception):
            self.records.append(f"LOG {record.levelname} {record.name}: {record.getMessage()}"[:300])


@contextlib.contextmanager
def captured(sink: list):
    """Collect unique warnings and WARNING+ log records raised inside the block into ``sink``
    (the peers are chatty; their messages go into the JSON instead of stdout)."""
    h = _ListHandler()
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in ("hyperspy", "exspy", "rsciio",
                                                                       "pyEELSMODEL", "lmfit")]
    for lg in loggers:
        lg.addHandler(h)
    try:
        with warnings.catch_warnings(record=True) as wl:
            warnings.simplefilter("always")
            yield
    finally:
        for lg in loggers:
            lg.removeHandler(h)
        for w in wl:
            s = f"{w.category.__name__}: {str(w.message)[:240]} ({os.path.basename(w.filename)}:{w.lineno})"
            if s not in sink:
                sink.append(s)
        for s in h.records:
            if s not in sink:
                sink.append(s)


def quiet_hyperspy():
    """Remove HyperSpy's own stderr handlers; their records still reach :func:`captured`."""
    for n in ("hyperspy", "exspy", "rsciio"):
        lg = logging.getLogger(n)
        for h in list(lg.handlers):
            if isinstance(h, logging.StreamHandler):
                lg.removeHandler(h)
        lg.propagate = True


def reserve_stdout():
    """Send everything written to stdout (fd 1: prints, HyperSpy's log handler, C code) to stderr
    from now on, and return a file on the original stdout for the final JSON only."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return real
