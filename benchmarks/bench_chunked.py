"""Chunked (Dask, lazily read) fast fit against the whole-image fit on a tall image; prints JSON.

The out-of-memory path (`sreels fit --chunk-rows N`, `fit_image_chunked`) must give the same
numbers (tested in tests/inference/test_chunked.py) with a memory peak set by the chunk, not
the image.  Peak memory is what Python's tracemalloc sees (NumPy reports its buffers to it).

Usage: python benchmarks/bench_chunked.py [--rows 33000] [--chunk 2048] [--dir DIR]
(writes the simulated image to DIR, default a temporary folder, and removes it afterwards)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from sreels.config import Scenario
from sreels.forward.output import write_simulation
from sreels.forward.simulate import simulate
from sreels.inference.fast import fit_image, fit_image_chunked
from sreels.inference.load import load_measurement


def _measure(fn):
    tracemalloc.start()
    t = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": dt, "ms_per_row": 1e3 * dt / res.position.size, "peak_traced_mib": peak / 2**20,
            "rows_ok": int((res.status == "ok").sum())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=33000)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        d = Path(tmp) / "image"
        write_simulation(simulate(Scenario(rows=a.rows, row_nm=1830.0 / a.rows), rng=3), d)
        files = sorted(d.glob("*.hspy"))
        out = {"rows": a.rows, "chunk_rows": a.chunk,
               "chunked_lazy": _measure(lambda: fit_image_chunked(load_measurement(files, lazy=True), chunk_rows=a.chunk)),
               "whole_image": _measure(lambda: fit_image(load_measurement(files)))}
    out["memory_ratio_whole_over_chunked"] = out["whole_image"]["peak_traced_mib"] / out["chunked_lazy"]["peak_traced_mib"]
    out["time_ratio_whole_over_chunked"] = out["whole_image"]["seconds"] / out["chunked_lazy"]["seconds"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
