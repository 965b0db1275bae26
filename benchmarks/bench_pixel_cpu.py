#!/usr/bin/env python
"""CPU time per pixel of the fast path on a simulated map, by stage, in one process; prints one JSON line.

    # once: the 64 x 64 map bench_maps.py --ny 64 --nx 64 simulates (seed 2026), kept in MAP
    python -c "from sreels.config import Scenario, Instrument, Detector; from sreels.forward.maps import MapSpec, write_map;
      write_map(Scenario(rows=64, row_nm=1900 / 64, first_row_nm=-100.0), MapSpec(columns=64, column_nm=1900 / 64,
      thickness_slope_x_per_um=0.2, grain_drift_nm_per_um=300.0, grain_swell_per_um=0.3), Instrument(), Detector(),
      'MAP', seed=2026, chunk_columns=16)"
    # the Dask graph (sync scheduler, as one single-threaded worker runs its blocks), with the workers' malloc settings
    OPENBLAS_NUM_THREADS=1 MALLOC_TRIM_THRESHOLD_=65536 python benchmarks/bench_pixel_cpu.py --map MAP --out new.npz
    # the code before a change, from a copy of its tree (git archive REV sreels | tar -x -C OLD), for interleaved A/B runs
    ... bench_pixel_cpu.py --map MAP --code OLD --out old.npz
    # every column and status of two runs: the largest change in units of each column's error
    python benchmarks/bench_pixel_cpu.py --compare old.npz new.npz

CPU is ``time.process_time()`` (user + system, all threads) with single-threaded BLAS and the fast path's
thread pools serial (``os.cpu_count`` seen as 1: what a single-threaded Dask worker does).  ``--mode dask``
computes ``daskfit.fit_graph`` on Dask's synchronous scheduler (``--chunk-rows`` pixels a block, the map read
lazily); ``--mode image`` is ``fast.fit_image`` on the whole map in memory.  Per stage (inclusive, ms per pixel of
the map): the three passes of the graph (``_image_pass``, ``_sums``, ``_fit_block``) and the fast path's steps,
with their system time and minor page faults; ``steady_ms_per_pixel`` is the passes' CPU over their blocks after
the first (the first block of each pass also pays the first touch of the process's memory and lazy imports: on a
64 x 64 map in 1024-pixel blocks ~0.1-0.2 ms per pixel of the whole).  Set ``MALLOC_TRIM_THRESHOLD_`` as a
dask.distributed nanny does and the blocks take the workers' malloc settings (:func:`sreels.inference.daskfit.
_malloc_for_blocks`); without it, glibc's defaults (page faults of fresh memory were up to a third of the CPU time
on the shared 2-core machine).  The machine is shared: compare interleaved runs (old, new, old, new, ...), medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def compare(a_path, b_path) -> dict:
    """Statuses identical?  Per column: bit-identical, or the largest change in units of its error column."""
    import numpy as np

    a, b = np.load(a_path), np.load(b_path)
    out = {"status_identical": bool((a["status"] == b["status"]).all()), "columns": len(a.files) - 1,
           "bit_identical": 0, "changed": {}}
    for k in sorted(set(a.files) - {"status"}):
        x, y = a[k].astype(float), b[k].astype(float)
        if np.array_equal(x, y, equal_nan=True):
            out["bit_identical"] += 1
            continue
        base = k.removesuffix("_err")
        ek = next((c for c in (base + "_err", base.removesuffix("_raw") + "_err") if c in a.files), None)
        with np.errstate(invalid="ignore", divide="ignore"):
            if not (np.isfinite(x) == np.isfinite(y)).all():
                out["changed"][k] = "finite in one run only"
                continue
            d = np.abs(x - y)
            e = a[ek].astype(float) if ek else np.maximum(np.abs(x), 1e-300)
            out["changed"][k] = float(np.nanmax(np.where(np.isfinite(d) & (e > 0), d / e, 0.0)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", help="a map folder of .zspy windows (sreels.forward.maps.write_map)")
    ap.add_argument("--code", default=None, help="a sreels source root to import instead of the installed one")
    ap.add_argument("--mode", default="dask", choices=["dask", "image"])
    ap.add_argument("--chunk-rows", type=int, default=1024)
    ap.add_argument("--out", default=None, help="the columns and statuses (.npz), for --compare")
    ap.add_argument("--label", default="")
    ap.add_argument("--compare", nargs=2, metavar=("A.npz", "B.npz"))
    a = ap.parse_args(argv)
    if a.compare:
        print(json.dumps(compare(*a.compare)))
        return
    if a.code:
        sys.path.insert(0, str(Path(a.code).resolve()))
    os.cpu_count = lambda: 1  # the fast path's run_concurrently: serial, as in a single-threaded worker
    import numpy as np
    from threadpoolctl import threadpool_limits

    import sreels
    from sreels.inference import daskfit, fast, lowloss, oamount, okpeaks
    from sreels.inference.load import load_measurement

    cpu, sys_t, faults, calls = {}, {}, {}, {}

    def wrap(mod, name):
        f = getattr(mod, name, None)
        if f is None:
            return
        key = f"{mod.__name__.split('.')[-1]}.{name}"

        def timed(*args, **kw):
            t, r0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
            try:
                return f(*args, **kw)
            finally:
                dt, r1 = time.process_time() - t, resource.getrusage(resource.RUSAGE_SELF)
                cpu[key] = cpu.get(key, 0.0) + dt
                sys_t[key] = sys_t.get(key, 0.0) + r1.ru_stime - r0.ru_stime
                faults[key] = faults.get(key, 0) + r1.ru_minflt - r0.ru_minflt
                calls.setdefault(key, []).append(dt)
        setattr(mod, name, timed)

    for mod, names in ((daskfit, ("_image_pass", "_sums", "_fit_block")),
                       (fast, ("apply_low_loss", "_fit_ti", "_fit_li", "_fit_o", "measure_o_k", "_o_amount")),
                       (lowloss, ("plural_tails", "denoise_rows", "fourier_ratio", "read_zlp")),
                       (oamount, ("fit_linear_edges",)), (okpeaks, ("_peak_fit",))):
        for n in names:
            wrap(mod, n)
    windows = load_measurement(sorted(Path(a.map).glob("*.zspy")), lazy=a.mode == "dask")
    if a.mode == "image":
        import dataclasses
        windows = {k: dataclasses.replace(w, counts=np.asarray(w.counts, float).reshape(-1, w.counts.shape[-1]),
                                          nav_shape=()) for k, w in windows.items()}
    pixels = int(np.prod(next(iter(windows.values())).counts.shape[:-1]))
    with threadpool_limits(1):
        t0, w0 = time.process_time(), time.perf_counter()
        if a.mode == "dask":
            res = daskfit.fit_graph(windows, None, a.chunk_rows).compute(scheduler="sync")
        else:
            res = fast.fit_image(windows, progress=False)
        total, wall = time.process_time() - t0, time.perf_counter() - w0
    if a.out:
        np.savez(a.out, status=res.status, **{k: np.asarray(v) for k, v in res.columns.items()})
    per = 1e3 / pixels
    passes = [k for k in ("daskfit._image_pass", "daskfit._sums", "daskfit._fit_block") if len(calls.get(k, [])) > 1]
    steady = sum(1e3 * sum(calls[k][1:]) / (pixels * (len(calls[k]) - 1) / len(calls[k])) for k in passes)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "label": a.label, "sreels": sreels.__file__, "mode": a.mode, "pixels": pixels, "chunk_rows": a.chunk_rows,
        "ms_per_pixel": total * per, "wall_s": wall, "steady_ms_per_pixel": steady if passes else None,
        "load_average": os.getloadavg(), "malloc_trim_threshold_env": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "process_user_s": ru.ru_utime, "process_system_s": ru.ru_stime, "process_minor_faults": ru.ru_minflt,
        "stages_ms_per_pixel": {k: round(v * per, 4) for k, v in sorted(cpu.items())},
        "stages_system_ms_per_pixel": {k: round(v * per, 4) for k, v in sorted(sys_t.items())},
        "stages_minor_faults": faults}))


if __name__ == "__main__":
    main()
