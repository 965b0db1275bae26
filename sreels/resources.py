"""Machine resources: one BLAS thread for small linear algebra; memory estimated before allocating,
and refused above a limit the user can raise.

The limit is, in order: :func:`set_limit` (the ``--max-memory GIB`` option), the environment
variable ``SREELS_MAX_MEMORY_GIB``, else 80 % of the machine's physical memory.  The per-element
costs below were measured (peak resident memory against image size, 330 and 3300 rows x 2 x 2048
channels): ``sreels simulate`` ~20 bytes and ``sreels fit`` ~49 bytes per pixel and window, to
which a margin is added.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os

from .errors import SreelsInputError

#: bytes per (row x channel) pixel of all windows, with a margin over the measured peak
SIMULATE_BYTES_PER_PIXEL = 40
FIT_BYTES_PER_PIXEL = 64
BASE_BYTES = 300 * 2**20          # interpreter, libraries, kernels
_ENV = "SREELS_MAX_MEMORY_GIB"
_limit_gib: float | None = None


def _physical_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest machine
        return 8 * 2**30


def _parse_gib(value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SreelsInputError(f"{where} = {value!r}: expected a memory size in GiB (a number > 0)") from None
    if not math.isfinite(v) or v <= 0:
        raise SreelsInputError(f"{where} = {value!r}: expected a memory size in GiB (a finite number > 0)")
    return v


def set_limit(gib: float | None) -> None:
    """Set the limit for this process (None: back to the environment / default)."""
    global _limit_gib
    _limit_gib = None if gib is None else _parse_gib(gib, "--max-memory")


def limit_bytes() -> tuple[int, str]:
    """The memory limit in bytes and where it comes from."""
    if _limit_gib is not None:
        return int(_limit_gib * 2**30), "--max-memory"
    env = os.environ.get(_ENV)
    if env:
        return int(_parse_gib(env, _ENV) * 2**30), f"${_ENV}"
    return int(0.8 * _physical_bytes()), "80 % of this machine's memory"


def check_memory(nbytes: float, what: str, hint: str = "") -> None:
    """Raise :class:`SreelsInputError` if ``what`` would need more than the limit.

    Parameters
    ----------
    nbytes : float
        Estimated peak memory in bytes.
    what : str
        What is being sized, e.g. ``"simulating 100000 rows x 4096 channels"``.
    hint : str
        How else to proceed (e.g. ``--chunk-rows``).
    """
    limit, source = limit_bytes()
    if not math.isfinite(nbytes) or nbytes > limit:
        raise SreelsInputError(
            f"{what} needs about {nbytes / 2**30:.3g} GiB of memory, above the limit of {limit / 2**30:.3g} GiB "
            f"({source}); {hint + '; ' if hint else ''}raise the limit with --max-memory GIB or ${_ENV}")


def simulate_bytes(rows: int, channels: int) -> float:
    """Peak memory of a simulation of ``rows`` rows and ``channels`` channels over all windows."""
    return BASE_BYTES + float(rows) * float(channels) * SIMULATE_BYTES_PER_PIXEL


def fit_bytes(rows: int, channels: int) -> float:
    """Peak memory of an in-memory fast fit of ``rows`` rows and ``channels`` channels over all windows."""
    return BASE_BYTES + float(rows) * float(channels) * FIT_BYTES_PER_PIXEL


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20,
                      top_pad: int | None = None) -> bool:
    """Let glibc's malloc serve arrays up to ``mmap_threshold`` bytes (32 MiB: its largest) from its heap and keep up
    to ``trim_threshold`` bytes of freed memory for the next array (and grow by ``top_pad``), instead of mapping and
    unmapping every large temporary page by page (mallopt(3); setting either threshold stops glibc's own dynamic
    adjustment).  For processes that make many short-lived arrays of a few to tens of MB: the fast path's Dask
    workers (:mod:`sreels.inference.daskfit`), ``sreels plan``.  Returns whether the settings were taken (False
    without glibc: nothing changed)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):   # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = [(_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold)]
    if top_pad is not None:
        settings.append((_M_TOP_PAD, top_pad))
    return all(mallopt(k, int(v)) == 1 for k, v in settings)


def no_huge_page_advice() -> bool:
    """Stop numpy asking the kernel for transparent huge pages on its large arrays (madvise(MADV_HUGEPAGE) on every
    allocation of 4 MiB or more, numpy's default on Linux).  With the kernel's THP ``defrag`` at ``madvise`` (a common
    default) each fault in such an array may stall in direct compaction, and where no huge page can be had the stall
    buys nothing.  Measured in a fast-path Dask worker on a 64 x 64 map (sync scheduler, one process, 2026-12-02,
    AMD EPYC VM, AnonHugePages 0 kB throughout): system time 1.3 -> 0.67 s, CPU per pixel 2.13 -> 2.02 ms (two
    interleaved pairs), at twice the (4 KiB) page faults.  Returns whether the setting was taken (False where numpy
    has no such switch)."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # pragma: no cover - numpy < 2
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            return False
    _set_madvise_hugepage(False)
    return True


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with one BLAS thread (every BLAS library loaded: numpy's and scipy's, through
    threadpoolctl).  sreels' linear algebra is many small products and solves, which BLAS threads do
    not speed up and, spinning, slow down: measured on 2 cores, the demo's emcee run 92 s with one
    thread against 142 s (and 50 s of system time) with two on an idle machine, and small eigenproblems
    10-100x slower with two on a busy one.  Parallelism comes from the FFTs' workers, Dask's blocks and
    the in-memory fit's independent steps in threads (:func:`run_concurrently`)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


#: the threads of a Fourier transform (scipy.fft's ``workers``): -1, every core, unless within :func:`single_threaded_fft`
_FFT_WORKERS = contextvars.ContextVar("sreels_fft_workers", default=-1)


def fft_workers() -> int:
    """``workers`` for scipy.fft's transforms here: every core (-1), or 1 within :func:`single_threaded_fft`."""
    return _FFT_WORKERS.get()


@contextlib.contextmanager
def single_threaded_fft():
    """The transforms within in the caller's thread alone: for a task among others that fill the cores (a Dask
    block; on 2 single-threaded workers of 2 cores the transforms' second thread cost 3-6 % more CPU, measured on
    the 256 x 256 map of benchmarks/bench_maps.py).  Same results (each transform is computed by one thread either
    way)."""
    token = _FFT_WORKERS.set(1)
    try:
        yield
    finally:
        _FFT_WORKERS.reset(token)


def run_concurrently(fn, calls, threads: bool = True) -> list:
    """``[fn(*args) for args in calls]``, the calls in threads when ``threads`` (and there are two or more
    of them and two or more cores), each in a copy of the caller's context (context variables).  For
    independent steps whose numpy work releases the GIL (the fast fit's windows and edges: their
    results do not depend on the order in which they run); results in the order of ``calls``."""
    calls = list(calls)
    if not threads or len(calls) < 2 or (os.cpu_count() or 1) < 2:
        return [fn(*a) for a in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(calls), os.cpu_count() or 1)) as ex:
        futures = [ex.submit(contextvars.copy_context().run, fn, *a) for a in calls]
        return [f.result() for f in futures]
