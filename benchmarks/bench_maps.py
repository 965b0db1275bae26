#!/usr/bin/env python
"""2-D maps at scale: a simulated NY x NX x 2 x 2048 float32 map fitted as a Dask graph on 1 and 2
dask.distributed workers; prints JSON (progress on stderr).

    python benchmarks/bench_maps.py [--ny 256 --nx 256] [--chunk-rows 2048] [--workers 1,2]
        [--exspy-pixels 64] [--dir DIR] [--keep] [--out FILE]

What is measured, per worker count (the LocalCluster ``sreels fit --workers N`` starts, ``daskfit.local_cluster``:
single-threaded worker processes and its settings, the map read lazily from the .zspy stores by the workers):
- wall time of ``fit_image_chunked(load_measurement(files, lazy=True), client=...)`` (graph build,
  both reductions, the block fits, the assembly);
- peak resident memory of every worker process (``ru_maxrss`` read on the workers afterwards;
  each run on a fresh cluster);
- pixels per second per core (= per worker), and per CPU second of the workers (``process_time`` read on
  them before and after: on a shared machine the wall time also holds the other processes' load), their
  user and system seconds and minor page faults, and the block steps held between passes
  (``daskfit.held_steps`` within ``HOLD_BYTES_PER_WORKER``);
- the task stream (``distributed.get_task_stream``): compute time per kind of task, and what is
  left of the wall time (scheduling, transfers, the client): the serial part of the model
  T(P cores) = T_serial + sum(task compute) / P  (+ per-task overhead x tasks / P)
  that extrapolates to N machines of 2 cores.
- the peer: exspy ``EELSModel.multifit`` (power law + Ti4+ + Ti3+ fixed patterns, Levenberg-Marquardt
  per pixel, the nearest exspy task; benchmarks/peers.py) on ``--exspy-pixels`` pixels read lazily
  from the same Ti window store, per pixel, against sreels' per pixel (three edges).
The map is simulated first (``sreels.forward.maps.write_map``, timed too) unless ``--dir`` holds one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _peak_rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rusage():
    """user and system CPU seconds and minor page faults of this process"""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while in use (a shared machine's other work)."""

    def __init__(self, every=5.0):
        import threading
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self._stat0 = _cpu_stat()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self._stat1 = _cpu_stat()

    def summary(self):
        v = self.samples or [os.getloadavg()[0]]
        out = {"min": min(v), "mean": float(np.mean(v)), "max": max(v), "samples": len(v)}
        if self._stat0 and self._stat1:  # the machine's CPU seconds, all cores: busy, and stolen by the hypervisor
            d = [b - a for a, b in zip(self._stat0, self._stat1)]
            out.update(machine_busy_cpu_s=d[0], machine_steal_cpu_s=d[1])
        return out


def _cpu_stat():
    """(busy, steal) CPU seconds of the machine since boot, from /proc/stat (None elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(v[:3]) + sum(v[5:7])  # user, nice, system, irq, softirq
    return busy / tick, (v[7] if len(v) > 7 else 0) / tick


def fit_on_cluster(files, workers, chunk_rows):
    from distributed import Client, get_task_stream

    from sreels.inference.fast import fit_image_chunked
    from sreels.inference.load import load_measurement

    from sreels.inference.daskfit import local_cluster

    # (the LocalCluster `sreels fit --workers N` starts, with a memory limit above the workers' peak)
    with local_cluster(workers, memory_limit="6GiB") as cluster, Client(cluster) as client:
        client.run(lambda: __import__("sreels.inference.daskfit"))  # imports untimed, as a running cluster has
        cpu0, ru0 = client.run(time.process_time), client.run(_rusage)
        t0 = time.perf_counter()
        windows = load_measurement(files, lazy=True)
        with get_task_stream(client) as ts, LoadSampler() as load:
            res = fit_image_chunked(windows, chunk_rows=chunk_rows, client=client, progress=False)
        wall = time.perf_counter() - t0
        cpu1, ru1 = client.run(time.process_time), client.run(_rusage)
        rss = client.run(_peak_rss_mib)
    from sreels.inference.daskfit import HOLD_BYTES_PER_WORKER, held_steps
    from sreels.inference.fast import FitSettings, resolve_instrument
    s, _ = resolve_instrument(windows, FitSettings())
    held = held_steps(windows, s, res.position.size, HOLD_BYTES_PER_WORKER * workers)
    per_kind, n_tasks = {}, 0
    for t in ts.data:
        kind = str(t["key"][0] if isinstance(t["key"], tuple) else t["key"]).split("-")[0]
        comp = sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
        per_kind[kind] = per_kind.get(kind, 0.0) + comp
        n_tasks += 1
    busy = sum(per_kind.values())
    pixels = res.position.size
    return res, {"workers": workers, "wall_s": wall, "pixels": pixels,
                 "pixels_per_s_per_core": pixels / wall / workers,
                 # CPU seconds the workers spent (on a shared machine the wall time holds the others' load)
                 "worker_cpu_s": sorted(cpu1[k] - cpu0[k] for k in cpu1),
                 "pixels_per_cpu_s": pixels / max(sum(cpu1[k] - cpu0[k] for k in cpu1), 1e-9),
                 "worker_cpu_ms_per_pixel": 1e3 * sum(cpu1[k] - cpu0[k] for k in cpu1) / pixels,
                 "peak_rss_mib_per_worker": sorted(rss.values()),
                 "worker_user_sys_s_minor_faults": sorted([ru1[k][i] - ru0[k][i] for i in range(3)] for k in ru1),
                 "held_steps": list(held), "hold_bytes_per_worker": HOLD_BYTES_PER_WORKER,
                 "tasks": n_tasks, "task_compute_s_by_kind": per_kind, "task_compute_s_total": busy,
                 "task_compute_ms_per_pixel_by_kind": {k: 1e3 * v / pixels for k, v in per_kind.items() if v > 0.01},
                 "serial_s": max(wall - busy / workers, 0.0),
                 "rows_ok": int((res.status == "ok").sum()),
                 "load_average_1min_during_fit": load.summary()}


def exspy_sample(store: Path, n_pixels: int, seed: int):
    """exspy multifit on ``n_pixels`` pixels read lazily from the Ti-window store."""
    import hyperspy.api as hs

    import peers

    s = hs.load(store, lazy=True)
    ny, nx = s.data.shape[:2]
    rng = np.random.default_rng(seed)
    flat = np.sort(rng.choice(ny * nx, size=min(n_pixels, ny * nx), replace=False))
    data = s.data.reshape(ny * nx, -1)
    t0 = time.perf_counter()
    counts = np.asarray(data[flat].compute(), dtype=float)
    read = time.perf_counter() - t0
    ax = s.axes_manager.signal_axes[0]
    e = ax.offset + ax.scale * np.arange(ax.size)
    c0 = time.process_time()
    r = peers.time_exspy_ti_mlls({"high": (counts, e)}, repeats=1, variants=("lm_r_free",))
    out = r["lm_r_free"]
    out["cpu_s"] = time.process_time() - c0
    out["pixels"] = int(flat.size)
    out["lazy_read_s"] = read
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--ny", type=int, default=256)
    ap.add_argument("--nx", type=int, default=256)
    ap.add_argument("--chunk-rows", type=int, default=1024)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--exspy-pixels", type=int, default=64)
    ap.add_argument("--dir", default=None, help="a map written by write_map / sreels simulate --columns (reused)")
    ap.add_argument("--keep", action="store_true", help="keep the simulated map (in --dir)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    from sreels.config import Detector, Instrument, Scenario
    from sreels.forward.maps import MapSpec, write_map

    out = {"benchmark": "maps", "shape": [a.ny, a.nx, 2, 2048], "chunk_rows": a.chunk_rows,
           "load_average_start": os.getloadavg(), "cpus": os.cpu_count()}
    tmp = None
    if a.dir and (Path(a.dir) / "high.zspy").exists():
        d = Path(a.dir)
        out["simulate"] = {"reused": str(d)}
    else:
        tmp = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="bench-maps-"))
        d = tmp / "map" if a.dir else tmp / "map"
        sc = Scenario(rows=a.ny, row_nm=1900.0 / a.ny, first_row_nm=-100.0)
        spec = MapSpec(columns=a.nx, column_nm=1900.0 / a.nx, thickness_slope_x_per_um=0.2,
                       grain_drift_nm_per_um=300.0, grain_swell_per_um=0.3)
        log(f"simulating {a.ny} x {a.nx} x 2 x 2048 ...")
        t0 = time.perf_counter()
        write_map(sc, spec, Instrument(), Detector(), d, seed=2026, chunk_columns=16)
        out["simulate"] = {"seconds": time.perf_counter() - t0, "peak_rss_mib": _peak_rss_mib(),
                           "bytes_on_disk": sum(p.stat().st_size for p in d.rglob("*") if p.is_file())}
        log(f"simulated in {out['simulate']['seconds']:.0f} s")
    files = sorted(d.glob("*.zspy"))
    runs, results = [], []
    for w in [int(x) for x in a.workers.split(",")]:
        log(f"fitting on {w} worker(s) ...")
        res, r = fit_on_cluster(files, w, a.chunk_rows)
        log(f"  {r['wall_s']:.1f} s, {r['pixels_per_s_per_core']:.0f} px/s/core, peak RSS {r['peak_rss_mib_per_worker']}")
        runs.append(r)
        results.append(res)
    if len(results) > 1:
        a0, a1 = results[0], results[-1]
        eq = all(np.allclose(a0.columns[k], a1.columns[k], rtol=1e-9, atol=0, equal_nan=True) for k in a0.columns)
        out["results_equal_across_worker_counts_rtol_1e-9"] = bool(eq and (a0.status == a1.status).all())
    out["runs"] = runs
    # extrapolation: T(P) = T_serial + busy / P, from the run on the most workers
    r = max(runs, key=lambda x: x["workers"])  # (whatever order --workers gives)
    busy, serial = r["task_compute_s_total"], r["serial_s"]
    per_task = serial / max(r["tasks"], 1)
    out["extrapolation"] = {
        "model": "T(P cores) = T_serial + sum(task compute) / P; T_serial = wall - sum(task compute) / workers of "
                 "the largest run (scheduling, transfers, reductions' wait, the client); treated as fixed "
                 "(an upper bound for its per-task part, which also spreads)",
        "task_compute_s": busy, "serial_s": serial, "serial_s_per_task": per_task,
        "machines_of_2_cores": {str(n): serial + busy / (2 * n) for n in (1, 2, 4, 8, 16, 32)},
        "map_1024x1024_on_machines_of_2_cores": {str(n): 16 * (serial + busy / (2 * n)) for n in (1, 4, 16, 64)},
        # the same model with the workers' CPU seconds as the work (the task stream's compute times are wall
        # times, which a shared machine's load inflates more than CPU seconds)
        "worker_cpu_s": sum(r["worker_cpu_s"]),
        "machines_of_2_cores_by_cpu": {str(n): serial + sum(r["worker_cpu_s"]) / (2 * n) for n in (1, 2, 4, 8, 16, 32)},
    }
    if a.exspy_pixels:
        log(f"exspy multifit on {a.exspy_pixels} pixels ...")
        try:
            ex = exspy_sample(d / "high.zspy", a.exspy_pixels, 7)
            # sreels per pixel on one core: the workers' CPU seconds over the pixels (the wall time of a
            # shared machine holds the others' load; exspy's time below is wall time in this process)
            sreels_px = 1e3 * sum(runs[0]["worker_cpu_s"]) / runs[0]["pixels"]
            out["peer_exspy"] = {**{k: ex.get(k) for k in ("variant", "median_ms", "ms_per_row", "pixels",
                                                          "lazy_read_s", "n_free_params")},
                                 "exspy_cpu_s": ex.get("cpu_s"),
                                 "exspy_cpu_ms_per_pixel": 1e3 * ex["cpu_s"] / ex["pixels"],
                                 "sreels_cpu_ms_per_pixel_one_core_three_edges": sreels_px,
                                 # CPU over CPU (the wall-time ratio would set exspy's loaded wall time
                                 # against sreels' CPU time)
                                 "ratio_exspy_ti_only_over_sreels_per_pixel_cpu":
                                     1e3 * ex["cpu_s"] / ex["pixels"] / sreels_px}
        except Exception as exc:  # record, go on
            out["peer_exspy"] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    out["load_average_end"] = os.getloadavg()
    text = json.dumps(out, indent=1, default=float)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    if tmp is not None and not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
