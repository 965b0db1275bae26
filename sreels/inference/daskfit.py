"""The fast path as a Dask graph: blocks of rows (pixels of a map) fitted as tasks.

The graph, for blocks ``b`` of ``chunk_rows`` rows::

    low-loss block b --(ZLP FWHM per row, partial sums, row sample)--> percentile 95 of the FWHMs, mean ZLP
                        shape, mean spectra behind the deconvolution's power-law pads, the Li-K tails' principal
                        components, noise levels  (reduction 1)
    windows block b  --(bin, dark, deconvolve)--> sum over rows      (reduction 2: mean spectra; without a
                                                                       low loss, noise levels)
    windows block b + reductions 1, 2 --> per-row fits of block b    (the vectorised block fit)
    all blocks' columns --> parent normalisation of Li, status strings     (the whole-image step)

Every task runs :mod:`.fast`'s own functions (:func:`.fast._fit_rows`, :func:`.lowloss.apply_low_loss`)
on a block held in memory, so the result equals :func:`.fast.fit_image`'s: the global energy
offsets see the whole image's mean spectra, the deconvolution the whole image's widest ZLP, the
Li normalisation the whole image's parent, the fits' weights (gain unknown) the whole image's noise level
(histograms of :func:`.okpeaks.noise_ratio_counts` added), the O-K poor-fit flags the chi^2 scale of its mean
spectrum, Li-K "present in the image" every row (decided after the blocks are put together,
:func:`.fast._li_presence`).  Bit for bit: the sums are exact sums rounded once (:mod:`.rowsums`), whatever the
blocks; the tails' components come from a sample of the image's rows gathered in its order
(:func:`.deconvolve.sampled_moments`); a row's fit does not depend on the other rows of its block.

Schedulers: Dask's local threaded scheduler (default), a ``dask.distributed`` LocalCluster
(``workers=N``: N single-threaded worker processes) or an existing cluster (``scheduler=ADDRESS``).
Progress through Dask's own diagnostics (``dask.diagnostics.ProgressBar`` locally,
``distributed.progress`` on a cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time

import numpy as np

from ..axes import PositionAxis
from ..config import LOWLOSS_NAME
from ..errors import SreelsInputError
from ..resources import (check_memory, keep_freed_memory, no_huge_page_advice, single_threaded_blas,
                         single_threaded_fft)
from .fast import (FastResult, FitSettings, _binned_position, _fit_rows, _prepared, _result, check_fit_input,
                   noise_counts, resolve_instrument, unscaled_variance, with_noise_scales, MEAN_NOISE_EV)
from .deconvolve import FR_DTYPE, ImageStats, image_stats
from .lowloss import (FLOOR_COLUMNS, LowLossFloor, apply_low_loss, low_loss_floor_note, low_loss_note,
                      widest_zlp_fwhm)
from .rowsums import add_sums, row_sums, sum_value


_MALLOC_SET = False


def _malloc_for_blocks() -> None:
    """Once per process: glibc's thresholds for a worker that dask.distributed started.

    Its nanny sets MALLOC_TRIM_THRESHOLD_=65536 (memory back to the OS early), which also fixes glibc's
    mmap threshold at 128 KiB (mallopt(3): setting either stops their dynamic adjustment): every
    temporary array of a block fit above that size is then mapped and unmapped, page by page.  Measured
    on a 64 x 64 map (sync scheduler, one process, load ~8, 2026-12-01): 43x the page faults, CPU
    5.6 -> 12-13 ms a pixel (system time 5 -> 59 s).  In such a process the mmap threshold is raised to
    32 MiB (glibc's largest) and the trim threshold to 256 MiB, and numpy's huge-page advice is switched off
    (:func:`sreels.resources.no_huge_page_advice`: half the worker's system time); elsewhere nothing is changed."""
    global _MALLOC_SET
    if _MALLOC_SET:
        return
    _MALLOC_SET = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    keep_freed_memory(32 << 20, 256 << 20)
    no_huge_page_advice()


def _block_task(fn):
    """A pass over a block as a task: the worker's malloc settings, and its Fourier transforms in the task's thread
    alone (the blocks fill the cores: :func:`sreels.resources.single_threaded_fft`)."""
    @functools.wraps(fn)
    def task(*args):
        _malloc_for_blocks()
        with single_threaded_fft():
            return fn(*args)
    return task


class _Rows:
    """A block of a window's rows as a Dask array that the task itself computes (in the worker,
    with the synchronous scheduler): not a dependency of the graph, so no block is held between
    tasks."""

    def __init__(self, a):
        self.a = a


def _read(blocks) -> list:
    """The blocks' counts (float64, rows x channels): those held as :class:`_Rows` computed together, in one call of
    the synchronous scheduler (its graph optimised and run once for every window of the block: 35 instead of 43-47 ms
    of CPU for a 1024-pixel tile of three windows, measured)."""
    import dask

    lazy = [i for i, c in enumerate(blocks) if isinstance(c, _Rows)]
    got = dict(zip(lazy, dask.compute(*[blocks[i].a for i in lazy], scheduler="sync")))
    out = []
    for i, c in enumerate(blocks):
        a = np.asarray(got.get(i, c), dtype=float)
        out.append(a.reshape(-1, a.shape[-1]))  # a tile of a map (y, x, channels): its pixels y-major
    return out


def _block_windows(templates: dict, rows, blocks, check: bool = True) -> dict:
    """WindowData of one block (rows i0.. or the rows of an index array) from the windows' templates
    (counts None) and the blocks; ``check``: refused if a count is not finite (the first pass over the blocks:
    a later pass reads the same)."""
    out = {}
    i0 = int(rows[0]) if np.ndim(rows) else int(rows)
    for (k, w), c in zip(templates.items(), _read(blocks)):
        if check and not np.isfinite(c).all():  # a lazily read file is checked block by block
            r, ch = np.argwhere(~np.isfinite(c))[0]
            raise SreelsInputError(f"{w.source}: NaN/inf values (first at row {rows[r] if np.ndim(rows) else i0 + r}, "
                                   f"{w.energy.energy_ev[ch]:.2f} eV); expected finite counts")
        pos = PositionAxis(w.position.offset_nm + i0 * w.position.scale_nm, w.position.scale_nm, c.shape[0])
        out[k] = dataclasses.replace(w, counts=c, position=pos, nav_shape=(c.shape[0],))
    return out


@_block_task
def _image_pass(templates, s, keep, image_rows, i0, *blocks):
    """Per block: the ZLP FWHM per row, and the deconvolution's partial averages
    (:class:`.deconvolve.ImageStats`), for the whole-image reductions; and the block's steps named in
    ``keep`` that no image average changes (its ZLPs, its plural tails), held for the later passes.
    ``image_rows``: the image's rows (after binning), ``i0``: the block's first row before binning, or its rows."""
    wins = _prepared(_block_windows(templates, i0, blocks), s)
    noise = noise_counts(wins, s)
    rows = next(iter(wins.values())).counts.shape[0]
    idx = np.asarray(i0) if np.ndim(i0) else int(i0) // s.bin_rows + np.arange(rows)
    with image_stats(ImageStats(keep=keep, rows=idx, image_rows=image_rows)) as st:  # (the deconvolution and the projections after the averages are skipped)
        _, cols, _ = apply_low_loss(with_noise_scales(wins, s, noise), s, wide_fwhm_ev=s.resolution_fwhm_ev)
    return (cols["resolution_ev"], st.parts, noise), st.held


def _image_partial(*parts):
    """A group of blocks' first-pass parts as one block's: the rows' FWHMs, the averages' sums and rows, the noise
    histograms."""
    return (np.concatenate([p[0] for p in parts]), ImageStats.add([p[1] for p in parts]),
            _noise_sum(p[2] for p in parts))


def _image_reduce(*parts):
    """The widest ZLP (95th percentile of every row's FWHM), the deconvolution's averages and the noise histograms
    (:func:`.fast.noise_counts`) of the whole image."""
    return (widest_zlp_fwhm(np.concatenate([p[0] for p in parts])), ImageStats.combine([p[1] for p in parts]),
            _noise_sum(p[2] for p in parts))


def _noise_sum(parts) -> dict:
    """The blocks' noise histograms added, window by window (in block order)."""
    parts = list(parts)
    return {k: sum(p[k] for p in parts) for k in parts[0]}


#: the first pass's parts are reduced in groups of this many blocks, each as soon as its blocks are done, then the
#: groups' (when a block's parts held the Li-K tails' Gram matrices, ~6 MB, the single reduction of a 256 x 256 map's
#: 64 blocks moved 370 MB to one worker while the other waited, 0.5 s; they now hold its rows of the image's row
#: sample, ~0.6 MB, and exact sums, whose order does not matter)
REDUCE_GROUP = 8


def _deconvolved(templates, s, image, held, keep, i0, blocks, plural=True, noise=None):
    """The block's windows through :func:`.lowloss.apply_low_loss` with the image's averages, the steps held, and
    the block's own noise histograms where ``noise`` (the image's) is not given and there is no first pass (None
    where given)."""
    wins = _prepared(_block_windows(templates, i0, blocks, check=image is None and noise is None), s)
    if noise is None and image is not None:
        noise = image[2]  # (the first pass's reduction)
    own = noise_counts(wins, s) if noise is None else None
    wins = with_noise_scales(wins, s, own if noise is None else noise)
    if image is None:
        return apply_low_loss(wins, s), {}, own  # no low-loss window: nothing image-wide
    with image_stats(ImageStats(image[1], held, keep)) as st:
        return apply_low_loss(wins, s, wide_fwhm_ev=image[0], plural=plural), st.held, own


@_block_task
def _sums(templates, s, image, held, keep, i0, *blocks):
    """Per window, the block's sum over rows and its row count (after bin, dark and deconvolution; the
    windows whose plural scattering the fit models are not changed by it) with the block's noise histograms
    (where there was no first pass: no low-loss window); and the steps held for the
    fits (those of the first pass and this one's).  The plural scattering of those windows is computed
    here only when its result is held for the fits (``plural_window`` in ``keep``): the replicas' tails
    it starts from are then not held any longer."""
    plural = "plural_window" in keep
    (wins, _, _), held, noise = _deconvolved(templates, s, image, held, keep, i0, blocks, plural=plural)
    if plural:
        held = {k: v for k, v in held.items() if k[1] != "plural_tails"}
    return ({k: (row_sums(w.counts), row_sums(unscaled_variance(w, s)) if w.energy.end_ev >= MEAN_NOISE_EV else None,
                 w.counts.shape[0]) for k, w in wins.items()}, noise), held


def _means(*parts) -> tuple:
    """The mean spectra of the whole image and the means of its pixels' variances before their noise scale
    (:func:`.fast.unscaled_variance`, with the image's rows), the in-memory fit's bit for bit (:mod:`.rowsums`), and
    (without a first pass) its noise histograms."""
    n = {k: sum(p[0][k][2] for p in parts) for k in parts[0][0]}
    means = {k: sum_value(add_sums([p[0][k][0] for p in parts])) / n[k] for k in n}
    mean_vars = {k: (sum_value(add_sums([p[0][k][1] for p in parts])) / n[k], n[k]) if parts[0][0][k][1] is not None
                 else None for k in n}
    return means, mean_vars, (None if parts[0][1] is None else _noise_sum(p[1] for p in parts))


@_block_task
def _fit_block(templates, s, image, means, held, i0, *blocks):
    """The vectorised fit of one block: :func:`.fast._fit_rows` with the whole image's means."""
    means, mean_vars, noise = means
    (wins, ll_cols, ll_notes), _, _ = _deconvolved(templates, s, image, held, (), i0, blocks, noise=noise)
    s2 = dataclasses.replace(s, zlp_referenced=bool(ll_cols))
    cols, status, _, timings, notes = _fit_rows(wins, s2, means, progress=False, figures=False, mean_vars=mean_vars)
    cols.update(ll_cols)
    # the low-loss summary note is the whole image's (made in _assemble)
    notes += [n for n in ll_notes if not n.startswith("low-loss window ")]
    return cols, status, timings, notes, s2.zlp_referenced


def _assemble(full: PositionAxis, s: FitSettings, notes: list, ll_source, order, *parts) -> FastResult:
    """The blocks' columns in the image's row order (``order``: the rows of the concatenated blocks,
    None: in order already) and the whole-image steps."""
    cols = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    status, timings, nt = [], {}, list(notes)
    for _, st, tm, n, _ in parts:
        status += st
        nt += n
        for key, v in tm.items():
            timings[key] = timings.get(key, 0.0) + v
    if order is not None:
        inv = np.empty(order.size, int)
        inv[order] = np.arange(order.size)
        cols = {k: v[inv] for k, v in cols.items()}
        status = [status[i] for i in inv]
    s = dataclasses.replace(s, zlp_referenced=parts[0][4])
    if ll_source is not None and "zlp_shift_ev" in cols:
        nt.append(low_loss_note(ll_source, cols["zlp_shift_ev"], cols["resolution_ev"], cols["t_over_lambda"]))
    if FLOOR_COLUMNS["pedestal"] in cols:  # the low-loss floor's note of the image's rows
        floor = LowLossFloor(**{f: cols.pop(c) for f, c in FLOOR_COLUMNS.items()})
        nt += [n for n in (low_loss_floor_note(ll_source, floor),) if n]
    return _result(full, cols, status, {}, s, timings, _rows_added(nt))


def _rows_added(notes: list) -> list:
    """The blocks' notes, those that count a block's rows ("N row(s) flagged ...") as one note of the image's rows (the
    in-memory fit's), the others as they are."""
    import re

    counts, out = {}, []
    for n in notes:
        m = re.fullmatch(r"(\d+) (row\(s\) .*)", n, re.S)
        if m is None:
            out.append(n)
            continue
        if m.group(2) not in counts:
            counts[m.group(2)] = 0
            out.append(m.group(2))
        counts[m.group(2)] += int(m.group(1))
    return [f"{counts[n]} {n}" if n in counts else n for n in out]


#: dask.distributed settings of the LocalCluster sreels starts (``--workers N``): a CPU-bound fit on as many single-
#: threaded workers as cores, where every cycle the cluster's own housekeeping takes is a cycle the blocks lose.
#: Measured on the 256 x 256 map of ``benchmarks/bench_maps.py``, 2 workers on 2 cores (2026-12-02, AMD EPYC VM):
#: the client's process (scheduler, nannies) 5.2-5.8 -> 1.8-2.1 CPU-s during the fit; idle, the workers' own
#: 0.9 -> 0.08 CPU-s in 20 s; each worker's page faults 0.5-1.0 M -> 0.4 M, system time 5.5-6.4 -> 3.5 s; the fit
#: 71-76 -> 65 s (worker CPU 65-69 -> 61 s each).
LOCAL_CLUSTER_CONFIG = {
    # the workers' statistical profiler samples the running task's stack every 10 ms, for a dashboard not started
    "distributed.worker.profile.enabled": False,
    # the event loops' watchdog tick (every 20 ms) and the resource monitors (psutil, every 100-500 ms) of the
    # scheduler, the nannies and the workers
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
    # one glibc malloc arena per worker: the task thread's arrays come from the main heap, which keeps freed memory
    # for the next block (:func:`_malloc_for_blocks`), instead of a thread arena's heaps, mapped and unmapped in
    # 64 MiB pieces and faulted page by page (read at the process's start: set before the nanny spawns it)
    "distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": 1,
}


@contextlib.contextmanager
def local_cluster(workers: int, **options):
    """A ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes, no dashboard, with
    :data:`LOCAL_CLUSTER_CONFIG` (``options``: LocalCluster's others, e.g. ``memory_limit``)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=40, **options) as cluster:
        yield cluster


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None):
    """A ``distributed.Client``: on a new LocalCluster of ``workers`` single-threaded processes,
    or connected to ``scheduler`` (an address such as ``tcp://host:8786``); None for neither
    (Dask's local threaded scheduler)."""
    if workers is not None and scheduler is not None:
        raise SreelsInputError(f"--workers {workers} and --scheduler {scheduler}: expected one of them "
                               "(workers start a local cluster; a scheduler address uses an existing one)")
    if workers is None and scheduler is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - the maps extra
        raise SreelsInputError("--workers/--scheduler need dask.distributed: pip install 'sreels[maps]'") from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise SreelsInputError(f"--scheduler {scheduler}: no Dask scheduler answered ({exc}); expected the "
                                   "address of a running `dask scheduler` (tcp://host:port)") from None
        with client:
            yield client
        return
    if int(workers) != workers or workers < 1:
        raise SreelsInputError(f"--workers {workers!r}: expected an integer >= 1")
    with local_cluster(workers) as cluster, Client(cluster) as client:
        yield client


def _rows_of(counts, step: int, total: int):
    """The first ``total`` rows of a window's counts: a Dask array in blocks of ``step`` rows, or in memory."""
    return counts[:total].rechunk((step, -1)) if hasattr(counts, "dask") else np.asarray(counts)[:total]


def _map_tiles(windows: dict, step: int):
    """Blocks of a lazily read 2-D map that follow its storage chunks: [(row indices (y-major), (y slice,
    x slice))], each of at most ``step`` pixels (a chunk larger than that split along y, then x); None
    unless every window holds its map as stored (``map_counts``) with the same navigation shape.  Blocks of
    consecutive rows would cut across the chunks of a map stored in column strips (as ``write_map`` writes
    it): each block would decompress every chunk it touches (x 32 for 256 x 256 in 2048-pixel blocks)."""
    maps = [w.map_counts for w in windows.values()]
    if any(m is None or not hasattr(m, "chunks") for m in maps) or len({m.shape[:2] for m in maps}) != 1:
        return None
    nx = maps[0].shape[1]
    tiles = []
    y0 = 0
    for hy in maps[0].chunks[0]:
        x0 = 0
        for wx in maps[0].chunks[1]:
            wx_b = min(wx, step)                 # columns per block
            hy_b = max(1, step // wx_b)          # rows per block
            for ya in range(y0, y0 + hy, hy_b):
                yb = min(ya + hy_b, y0 + hy)
                for xa in range(x0, x0 + wx, wx_b):
                    xb = min(xa + wx_b, x0 + wx)
                    idx = (np.arange(ya, yb)[:, None] * nx + np.arange(xa, xb)[None, :]).ravel()
                    tiles.append((idx, (slice(ya, yb), slice(xa, xb))))
            x0 += wx
        y0 += hy
    return tiles


#: What a Dask fit may hold in one worker's memory between its passes over the blocks (bytes):
#: the results of the block steps that no image average changes (:func:`held_steps`).
HOLD_BYTES_PER_WORKER = 1 << 30


def held_steps(windows: dict, s: FitSettings, rows: int, budget: float) -> tuple:
    """The block steps a fit of ``rows`` rows holds from one pass to the next within ``budget`` bytes
    (:func:`.deconvolve.held_step`): the ZLPs (40 bytes a row); the plural tails of the windows that
    start in the low-loss range (the row's own in float64, its replicas' per unit I_0 in float32: ~11 kB a
    row for Li-K at 40 eV), held from the first pass to the second, which then computes the window's plural
    scattering from the image's averages and holds that for the fits instead (``plural_window``: the denoised
    tail in float64 and the replicas' deviations in float32, ~11 kB a row); and each other window's
    Fourier-ratio deconvolution (its channels in the transforms' precision, :data:`.deconvolve.FR_DTYPE`, which
    holds their values exactly: half of float64's memory), held from the second pass to the fits.  The peak is the
    larger of the two hand-overs; the tails first (at 1024 pixels a block on one core ~0.6 s a block each time they
    are not computed again, the deconvolution ~0.6 s)."""
    from .lowloss import MIN_DECONVOLVE_EV, TAIL_MARGIN_EV, TAIL_REPLICAS, TAIL_STEP_EV, li_k_in_low_loss_only

    tails = window = deconv = 0.0
    for k, w in windows.items():
        if k == LOWLOSS_NAME and not li_k_in_low_loss_only(windows):
            continue   # (a low loss holding the only Li-K edge is its own plural source: .lowloss.apply_low_loss)
        if w.energy.offset_ev < MIN_DECONVOLVE_EV:
            span = max(min(w.energy.end_ev, s.li_fit_ev[1] + TAIL_MARGIN_EV), w.energy.offset_ev + 10.0)
            lags = np.ceil(span / max(w.energy.scale_ev, TAIL_STEP_EV)) + 3
            tails += (8.0 + 4.0 * TAIL_REPLICAS) * lags + 16.0 * (TAIL_REPLICAS + 1)  # (and I_t, I_0)
            window += (8.0 + 4.0 * TAIL_REPLICAS) * lags + 8.0 * 3
        else:
            deconv += np.dtype(FR_DTYPE).itemsize * w.energy.size + 8.0  # (and the variance factor)
    if 40.0 * rows > budget:
        return ()
    budget -= 40.0 * rows
    for hold_tails, hold_deconv in ((True, True), (True, False), (False, True)):
        if (hold_tails and not tails) or (hold_deconv and not deconv):
            continue
        first = tails if hold_tails else 0.0
        second = (window if hold_tails else 0.0) + (deconv if hold_deconv else 0.0)
        if max(first, second) * rows <= budget:
            return ("read_zlp",) + (("plural_tails", "plural_window") if hold_tails else ()) \
                + (("fourier_ratio",) if hold_deconv else ())
    return ("read_zlp",)


def fit_graph(windows: dict, settings: FitSettings | None = None, chunk_rows: int = 1024,
              hold_bytes: float = HOLD_BYTES_PER_WORKER, workers=None):
    """The Dask graph of a fast-path fit: a ``dask.delayed`` whose ``compute()`` is the
    :class:`~.fast.FastResult` (and the resolved settings).  ``counts`` may be NumPy or Dask arrays.
    ``hold_bytes``: what the workers together may hold between passes (:func:`held_steps`; 0: every
    pass computes its steps again, memory of one block per worker whatever the image's size).
    ``workers`` (addresses of a dask.distributed cluster's workers): every pass over block j on worker
    j mod N, so that what a block's passes hold stays where it was made (loose restrictions: the scheduler
    may still move a task, e.g. off a lagging worker).  Without them a block's later passes went to whichever
    worker was free and its held steps with them: on a 256 x 256 map on 2 workers 1 GB crossed between the
    workers.  The numbers do not depend on them (nor on the blocks: :mod:`.rowsums`).  Given for a LocalCluster
    (``--workers``) or a client the caller holds, not for a running cluster (``--scheduler``), whose workers may
    change while the graph runs."""
    import dask

    def at(j):
        if not workers:
            return contextlib.nullcontext()
        return dask.annotate(workers=[workers[j % len(workers)]], allow_other_workers=True)

    def per_block(fn, nout, calls):
        """``fn(*args)`` for every block's args, each on its block's worker (with its outputs' items, ``nout``)."""
        out = []
        for j, args in enumerate(calls):
            with at(j):
                d = dask.delayed(fn, nout=nout)(*args)
                out.append(tuple(d[i] for i in range(nout)) if nout else d)
        return out

    s, inst_notes = resolve_instrument(windows, settings or FitSettings())
    check_fit_input(windows, s)
    if isinstance(chunk_rows, bool) or int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise SreelsInputError(f"chunk_rows = {chunk_rows!r}: expected an integer >= 1")
    n = s.bin_rows
    step = max(n, (int(chunk_rows) // n) * n)
    any_w = next(iter(windows.values()))
    total = (any_w.counts.shape[0] // n) * n
    if total == 0:
        raise SreelsInputError(f"{any_w.source}: {any_w.counts.shape[0]} rows, fewer than --bin {n}")
    windows = {k: dataclasses.replace(w, name=k) for k, w in windows.items()}  # unique names: the keys
    templates = {k: dataclasses.replace(w, counts=None, map_counts=None) for k, w in windows.items()}
    tiles = _map_tiles(windows, step) if n == 1 else None
    order = None
    if tiles is not None:  # a lazily read map: blocks follow its storage chunks (each chunk read once a pass)
        maps = [w.map_counts for w in windows.values()]
        starts = [idx for idx, _ in tiles]
        order = np.concatenate(starts)

        def read():
            return [tuple(_Rows(m[ys, xs]) for m in maps) for _, (ys, xs) in tiles]
    else:
        arrays = [_rows_of(w.counts, step, total) for w in windows.values()]
        starts = list(range(0, total, step))

        def read():
            """Each pass's tasks read their own blocks (:class:`_Rows`): a block read for the mean spectra
            is not held in memory until the fits, which wait for every block's sum.  Counts in memory: the
            block's rows themselves (a Dask array made from the whole image would go with every task)."""
            return [tuple(_Rows(a[i0:i0 + step]) if hasattr(a, "dask") else a[i0:i0 + step] for a in arrays)
                    for i0 in starts]

    blocks = read()
    tpl, st = dask.delayed(templates, pure=True), dask.delayed(s, pure=True)
    image, held = None, [None] * len(blocks)
    keep1, keep2 = (), ()
    if LOWLOSS_NAME in windows:  # reduction 1: the widest ZLP and the deconvolution's image averages
        keep = held_steps(windows, s, total // n, hold_bytes)
        keep1 = tuple(k for k in keep if k in ("read_zlp", "plural_tails"))
        keep2 = tuple(k for k in keep if k in ("fourier_ratio", "plural_window"))
        first = per_block(_image_pass, 2, [(tpl, st, keep1, total // n, i0, *b) for i0, b in zip(starts, read())])
        parts = [f[0] for f in first]
        if len(parts) > REDUCE_GROUP:  # in groups of consecutive blocks
            partial = []
            for j in range(0, len(parts), REDUCE_GROUP):
                with at(j // REDUCE_GROUP):  # (the groups round the workers too)
                    partial.append(dask.delayed(_image_partial, pure=True)(*parts[j:j + REDUCE_GROUP]))
            parts = partial
        image = dask.delayed(_image_reduce, pure=True)(*parts)
        held = [f[1] for f in first]
    sums = per_block(_sums, 2, [(tpl, st, image, h, keep2, i0, *b) for i0, h, b in zip(starts, held, blocks)])
    means = dask.delayed(_means, pure=True)(*[p[0] for p in sums])  # reduction 2: mean spectra (noise levels)
    fits = per_block(_fit_block, None, [(tpl, st, image, means, p[1], i0, *b) for i0, p, b in zip(starts, sums, read())])
    notes = inst_notes + [f"fitted as a Dask graph of {len(blocks)} chunks of <= {step} rows: per-row edge fits "
                          "not kept (no spectra panels or residual images)"]
    full = _binned_position(any_w.position, n)
    ll_source = windows[LOWLOSS_NAME].source if LOWLOSS_NAME in windows else None
    return dask.delayed(_assemble, pure=True)(full, s, notes, ll_source, order, *fits)


def fit_image_dask(windows: dict, settings: FitSettings | None = None, chunk_rows: int = 1024,
                   workers: int | None = None, scheduler: str | None = None, client=None,
                   progress: bool = True, hold_bytes_per_worker: float = HOLD_BYTES_PER_WORKER) -> FastResult:
    """:func:`.fast.fit_image` as a Dask graph (:func:`fit_graph`), computed on Dask's local
    threaded scheduler, on a LocalCluster of ``workers`` processes, on the cluster at
    ``scheduler``, or with a ``client`` the caller holds.  Same numbers as the in-memory fit;
    ``fits`` is empty (per-row edge fits are not gathered).  ``hold_bytes_per_worker``: see
    :func:`held_steps` (the local scheduler is one process)."""
    t0 = time.perf_counter()
    if client is not None:
        _warm_workers(client)
        windows = _portable(windows)
        res = _compute_distributed(fit_graph(windows, settings, chunk_rows, _hold(client, hold_bytes_per_worker),
                                             _addresses(client)), client, progress)
    else:
        with dask_client(workers, scheduler) as cl:
            if cl is not None:
                _warm_workers(cl)
                windows = _portable(windows)
            # blocks placed on the workers of a LocalCluster of its own, not on a running cluster's (whose workers
            # may come and go: one that joins later would get work by stealing only)
            graph = fit_graph(windows, settings, chunk_rows, _hold(cl, hold_bytes_per_worker),
                              _addresses(cl) if scheduler is None else None)
            if cl is None:
                from dask.diagnostics import ProgressBar
                with ProgressBar(minimum=2.0) if progress else contextlib.nullcontext():
                    with single_threaded_blas():  # the blocks are the threads
                        res = graph.compute(scheduler="threads")
            else:
                res = _compute_distributed(graph, cl, progress)
    res.timings_s["total"] = time.perf_counter() - t0
    return res


def _portable(windows: dict) -> dict:
    """The windows as a dask.distributed cluster's workers can receive them: a file read lazily through h5py (.hspy,
    HDF5) holds dataset handles that cannot be pickled; its counts are read here into memory (within the memory
    limit, :func:`sreels.resources.check_memory`; for larger maps save them as .zspy, which the workers read
    themselves).  Other windows as they are."""
    import pickle

    import cloudpickle

    out = {}
    for k, w in windows.items():
        try:
            for a in (w.counts, w.map_counts):
                if hasattr(a, "dask"):
                    cloudpickle.dumps(a)
            out[k] = w
        except (TypeError, pickle.PicklingError, AttributeError):
            n = float(np.prod(w.counts.shape)) * w.counts.dtype.itemsize
            check_memory(n, f"reading {w.source} into memory (a file read lazily through h5py cannot be sent to a "
                            "Dask cluster's workers)", "save it as .zspy (HyperSpy: s.save('map.zspy')), which the "
                            "workers read block by block")
            out[k] = dataclasses.replace(w, counts=np.asarray(w.counts.compute(scheduler="sync")), map_counts=None)
    return out


def _block_imports() -> None:
    """What a worker imports for its first block: unpickling the blocks' Dask arrays imports dask.array (with
    pandas and xarray: 0.43 s, measured), which a worker of a new cluster has not."""
    import dask.array  # noqa: F401

    from . import fast  # noqa: F401


def _warm_workers(client) -> None:
    """The workers import what their first block needs while this process builds the graph (a task on each, not
    waited for: the first tasks of a new LocalCluster waited 0.5-0.7 s for it, measured on the 256 x 256 map)."""
    from distributed import fire_and_forget

    for a in _addresses(client):
        fire_and_forget(client.submit(_block_imports, key=f"sreels-imports-{a}", workers=[a], pure=False))


def _addresses(client):
    """The addresses of the workers of ``client`` (None: the local scheduler)."""
    return None if client is None else sorted(client.scheduler_info()["workers"])


def _hold(client, per_worker: float) -> float:
    """What the workers of ``client`` (None: this process) may hold together (bytes)."""
    return per_worker * (len(client.scheduler_info()["workers"]) if client is not None else 1)


def _compute_distributed(graph, client, progress: bool):
    fut = client.compute(graph)
    if progress:
        from distributed import progress as dprogress
        dprogress(fut, notebook=False, minimum=2.0)
    return fut.result()
