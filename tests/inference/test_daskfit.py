"""The fast path as a Dask graph: the in-memory numbers on every scheduler, maps in and out."""

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from sreels.cli import main
from sreels.config import Detector, Instrument, Scenario
from sreels.errors import SreelsInputError
from sreels.forward.maps import MapSpec, column_scenario, write_map
from sreels.forward.simulate import simulate
from sreels.inference import daskfit
from sreels.inference.daskfit import fit_graph, fit_image_dask
from sreels.inference.fast import fit_image
from sreels.io import read_csv

from .fasthelpers import windows_of

#: the issue's criterion for a Dask fit against the in-memory fit: every column, values and errors, to 1e-9 of itself.
#: The image-wide sums are order-independent (sreels.inference.rowsums), the covariance of the plural tails is a row
#: sample gathered in the image's order, and a row's numbers are its own whatever rows share its block (no 2-D BLAS
#: product over rows, no pseudo-inverse for a whole block because one row is singular): measured bit for bit on every
#: comparison below (AMD EPYC, OpenBLAS 0.3.31 Haswell kernels); the tolerance is for another machine's kernels.
RTOL = 1e-9


def _columns_same(a: dict, b: dict, what=""):
    """Every column of ``a`` equal to ``b``'s within RTOL of itself (NaN where NaN), the same columns."""
    assert a.keys() == b.keys()
    for k, v in a.items():
        v, w = np.asarray(v, float), np.asarray(b[k], float)
        assert np.allclose(v, w, rtol=RTOL, atol=0, equal_nan=True), (what, k, np.nanmax(np.abs(v - w) / np.abs(v)))


def _same(a, b):
    """The same numbers (:func:`_columns_same`) and statuses, and the same notes (the blocks' counts of flagged rows
    added, the low loss's notes the image's) but the one that says the fit was a Dask graph."""
    assert list(a.status) == list(b.status)
    _columns_same(a.columns, b.columns)
    assert a.notes == [n for n in b.notes if not n.startswith("fitted as a Dask graph")]


def test_dask_graph_equals_the_in_memory_fit_with_a_low_loss_window(monkeypatch):
    """Plural scattering + low-loss window: the deconvolution's whole-image steps (widest ZLP, mean
    ZLP shape, power-law pads) and the mean spectra are reductions, so two blocks of 14 rows give the
    whole image's numbers.  The steps a block's later passes take from its first (ZLPs, plural tails,
    deconvolution) run once per block instead of once per pass, and change no number, bit for bit."""
    import sreels.inference.lowloss as lowloss

    inst = Instrument(plural_scattering=True, lowloss_window=True)
    sim = simulate(Scenario(rows=28, row_nm=60.0, first_row_nm=-60.0), inst, rng=5)
    w = windows_of(sim)
    whole = fit_image(w, progress=False)
    calls = []
    for name in ("plural_tails", "fourier_ratio"):
        def counted(*a, _f=getattr(lowloss, name), _n=name, **k):
            calls.append(_n)
            return _f(*a, **k)
        monkeypatch.setattr(lowloss, name, counted)
    runs = {}
    for hold in (0, 1 << 30):
        calls.clear()
        runs[hold] = fit_image_dask(w, chunk_rows=14, progress=False, hold_bytes_per_worker=hold), \
            {n: calls.count(n) for n in ("plural_tails", "fourier_ratio")}
    res = runs[1 << 30][0]
    _same(whole, res)
    assert "t_over_lambda" in res.columns and np.isfinite(res.columns["t_over_lambda"]).all()
    # two blocks: the tails in the first and fit passes (held: the first only), each time in two calls (the rows'
    # own, their noise replicas'); the Fourier ratio in all three passes (the first stops after its averages;
    # held: the sums pass's result goes to the fit)
    assert runs[0][1] == {"plural_tails": 8, "fourier_ratio": 6}
    assert runs[1 << 30][1] == {"plural_tails": 4, "fourier_ratio": 4}
    assert list(runs[0][0].status) == list(res.status)
    for k, v in runs[0][0].columns.items():
        assert np.array_equal(v, res.columns[k], equal_nan=True), k


def test_dask_graph_equals_the_in_memory_fit_on_a_low_loss_with_a_pedestal():
    """A low loss recorded from -40 eV with a 40-count pedestal: its subtraction and the rows' signal ends are each
    row's own (lowloss.low_loss_floor), so two blocks of 14 rows give the whole image's numbers."""
    inst = Instrument(lowloss_offset_ev=-40.0)
    sim = simulate(Scenario(rows=28, row_nm=60.0, first_row_nm=-60.0), inst, rng=6)
    w = windows_of(sim)
    w["lowloss"] = dataclasses.replace(w["lowloss"], counts=np.asarray(w["lowloss"].counts, float) + 40.0)
    whole = fit_image(w, progress=False)
    assert any("pedestal subtracted in 28 of 28 rows" in n for n in whole.notes)
    _same(whole, fit_image_dask(w, chunk_rows=14, progress=False))


def _nbytes(x) -> int:
    """Bytes of the arrays in a nest of tuples, lists and dicts (of a view: what it keeps alive, its base)."""
    if isinstance(x, np.ndarray):
        while x.base is not None and isinstance(x.base, np.ndarray):
            x = x.base
        return x.nbytes
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (tuple, list)):
        return sum(_nbytes(v) for v in x)
    return 0


def test_the_held_steps_are_what_the_budget_counts():
    """What a block hands from its first pass to the second (ZLPs, the replicas' plural tails) and from the
    second to the fits (ZLPs, the Li-K window's plural scattering, the Fourier ratio) is what held_steps
    counts per row (within 2 %); the second hand-over no longer carries the tails; and a budget that holds
    every step only because the tails are replaced by the smaller plural_window picks all of them."""
    from sreels.inference.daskfit import _image_pass, _image_reduce, _sums, held_steps
    from sreels.inference.fast import FitSettings, resolve_instrument

    sim = simulate(Scenario(rows=24, row_nm=60.0, first_row_nm=-60.0), Instrument(), rng=5)
    w = {k: dataclasses.replace(v, name=k) for k, v in windows_of(sim).items()}
    s, _ = resolve_instrument(w, FitSettings())
    rows = 24
    keep = held_steps(w, s, rows, 1 << 30)
    assert keep == ("read_zlp", "plural_tails", "plural_window", "fourier_ratio")
    templates = {k: dataclasses.replace(v, counts=None) for k, v in w.items()}
    blocks = [v.counts for v in w.values()]
    (first, held1) = _image_pass(templates, s, ("read_zlp", "plural_tails"), rows, 0, *blocks)
    image = _image_reduce(first)
    _, held2 = _sums(templates, s, image, held1, ("fourier_ratio", "plural_window"), 0, *blocks)
    assert {k[1] for k in held1} == {"read_zlp", "plural_tails"}
    assert {k[1] for k in held2} == {"read_zlp", "plural_window", "fourier_ratio"}
    per_row = {n: sum(_nbytes(v) for k, v in h.items() if k[1] == n) / rows
               for h in (held1, held2) for n in {k[1] for k in h}}
    lags = (per_row["plural_tails"] - 144.0) / 40.0
    assert per_row["read_zlp"] == pytest.approx(40.0)
    # the estimate's parts: 40 bytes a lag (+ 144) for the tails (the row's own in double, its 8 replicas' per unit I_0
    # in single), 40 (+ 24) for the plural window, 4 a channel (+ 8)
    assert per_row["plural_window"] == pytest.approx(40.0 * lags + 24.0, rel=0.02)
    # (the deconvolved channels in the transforms' single precision, the variance factor in double)
    assert per_row["fourier_ratio"] == pytest.approx(4.0 * w["high"].energy.size + 8.0, rel=0.02)
    first_b = 40.0 + per_row["plural_tails"]
    second_b = 40.0 + per_row["plural_window"] + per_row["fourier_ratio"]
    budget = max(first_b, second_b) * 65536 * 1.001  # a 256 x 256 map: all held, though tails + deconvolution
    assert (per_row["plural_tails"] + per_row["fourier_ratio"] + 40.0) * 65536 > budget  # would not fit
    assert held_steps(w, s, 65536, budget) == keep
    # the second hand-over is the larger (the tails in single precision): just below it, the tails alone; below
    # those, the deconvolution alone; below that, the ZLPs alone
    assert second_b > first_b > 40.0 + per_row["fourier_ratio"]
    assert held_steps(w, s, 65536, 0.99 * second_b * 65536) == ("read_zlp", "plural_tails", "plural_window")
    assert held_steps(w, s, 65536, 0.99 * first_b * 65536) == ("read_zlp", "fourier_ratio")
    assert held_steps(w, s, 65536, 0.99 * (40.0 + per_row["fourier_ratio"]) * 65536) == ("read_zlp",)


def test_dask_arguments_are_checked():
    sim = simulate(Scenario(rows=12), rng=1)
    with pytest.raises(SreelsInputError, match="chunk_rows = 0"):
        fit_image_dask(windows_of(sim), chunk_rows=0)
    with pytest.raises(SreelsInputError, match="--workers 2 and --scheduler"):
        fit_image_dask(windows_of(sim), workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(SreelsInputError, match="--workers 0"):
        fit_image_dask(windows_of(sim), workers=0)


def test_map_columns_vary_in_x():
    sc = Scenario()
    spec = MapSpec(columns=5, column_nm=250.0, thickness_slope_x_per_um=0.4, grain_drift_nm_per_um=100.0)
    a, b = column_scenario(sc, spec, 0), column_scenario(sc, spec, 4)
    assert b.thickness_nm == pytest.approx(a.thickness_nm * 1.4)
    assert b.grains[0].center_nm == pytest.approx(a.grains[0].center_nm + 100.0)
    with pytest.raises(SreelsInputError, match="thickness_slope_x_per_um"):
        MapSpec(columns=5, column_nm=250.0, thickness_slope_x_per_um=-1.5)


# ------------------------------------------------------------- a real cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A `dask scheduler` and two `dask worker` processes on free ports (port 0: the OS picks)."""
    pytest.importorskip("distributed")
    d = tmp_path_factory.mktemp("cluster")
    sf = d / "scheduler.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sf)], cwd=d, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        t0 = time.monotonic()
        while not sf.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.1)
        assert sf.exists(), "the dask scheduler did not start"
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                           str(sf), "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                          cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client
        with Client(scheduler_file=str(sf), timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
            yield c.scheduler.address
    finally:  # our own processes, by their handles (the workers hold no state worth a clean exit)
        for p in procs[::-1]:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


def _fit_map_through_scheduler(tmp_path, address, ny, nx, chunk):
    import hyperspy.api as hs

    sc = Scenario(rows=ny, row_nm=1900.0 / ny, first_row_nm=-100.0)
    spec = MapSpec(columns=nx, column_nm=20.0, thickness_slope_x_per_um=1.0, grain_drift_nm_per_um=2000.0)
    write_map(sc, spec, Instrument(), Detector(), tmp_path / "map", seed=11, chunk_columns=max(1, nx // 3))
    assert main(["fit", str(tmp_path / "map"), "--out", str(tmp_path / "mem"), "--no-plot"]) == 0
    assert main(["fit", str(tmp_path / "map"), "--out", str(tmp_path / "dask"), "--no-plot", "--scheduler", address,
                 "--chunk-rows", str(chunk)]) == 0
    a = hs.load(tmp_path / "mem" / "maps.zspy")
    b = hs.load(tmp_path / "dask" / "maps.zspy", lazy=True)
    assert a.data.shape == (len(a.metadata.sreels.quantities), ny, nx)
    names = list(a.metadata.sreels.quantities)
    _columns_same({k: a.data[i] for i, k in enumerate(names)}, {k: np.asarray(b.data[i]) for i, k in enumerate(names)})
    ta, tb = (read_csv(tmp_path / d / "profiles.csv") for d in ("mem", "dask"))
    assert list(ta["status"]) == list(tb["status"])
    # the map is a map: Li per Ti atom does not follow the thickness wedge along x (it cancels)
    li = a.data[names.index("li_rel")]
    assert np.nanstd(np.nanmean(li[ny // 2:], 0)) < 0.1
    return a


def test_a_map_through_a_real_scheduler_equals_the_in_memory_fit(tmp_path, cluster):
    _fit_map_through_scheduler(tmp_path, cluster, 8, 8, 24)


@pytest.mark.slow
def test_a_64x64_map_through_a_real_scheduler_equals_the_in_memory_fit(tmp_path, cluster):
    _fit_map_through_scheduler(tmp_path, cluster, 64, 64, 512)


def test_simulate_map_command_line(tmp_path):
    import hyperspy.api as hs

    assert main(["simulate", "--rows", "6", "--columns", "5", "--chunk-columns", "2", "--seed", "3",
                 "--thickness-slope-x", "0.5", "--out", str(tmp_path / "m")]) == 0
    s = hs.load(tmp_path / "m" / "high.zspy", lazy=True)
    assert s.data.shape == (6, 5, 2048) and s.data.chunks[1] == (2, 2, 1) and s.data.dtype == np.float32
    t = read_csv(tmp_path / "m" / "truth.csv")
    assert t["iy"].size == 30
    # the same column simulated alone: the same counts (per-column random streams)
    sc = column_scenario(Scenario(rows=6), MapSpec(columns=5, column_nm=5.7, thickness_slope_x_per_um=0.5), 3)
    seed = np.random.SeedSequence(3).spawn(5)[3]
    one = simulate(sc, rng=np.random.default_rng(seed))
    assert np.array_equal(np.asarray(s.data[:, 3, :]), one.windows["high"].counts)


def test_map_chunks_are_the_fit_blocks(tmp_path, monkeypatch):
    """write_map stores chunks of at most CHUNK_PIXELS pixels (the fit's blocks: one chunk each), float32
    counts compressed by LZ4; a Dask fit's blocks follow them."""
    import zarr

    import sreels.forward.maps as maps
    from sreels.inference.daskfit import _map_tiles
    from sreels.inference.load import load_measurement

    monkeypatch.setattr(maps, "CHUNK_PIXELS", 6)
    write_map(Scenario(rows=7), MapSpec(columns=5), Instrument(), Detector(), tmp_path / "m", seed=1, chunk_columns=2)
    z = zarr.open(str(tmp_path / "m" / "high.zspy"), mode="r")["Experiments"]
    data = next(iter(z.groups()))[1]["data"]
    assert data.chunks == (3, 2, 2048) and data.dtype == np.float32 and data.compressor.cname == "lz4"
    w = load_measurement(sorted((tmp_path / "m").glob("*.zspy")), lazy=True)
    tiles = _map_tiles(w, 6)
    assert [(t[1][0].start, t[1][0].stop, t[1][1].start, t[1][1].stop) for t in tiles][:4] == \
        [(0, 3, 0, 2), (0, 3, 2, 4), (0, 3, 4, 5), (3, 6, 0, 2)]
    assert sorted(np.concatenate([t[0] for t in tiles])) == list(range(35))


def test_the_resolution_of_a_lazy_low_loss_window_is_read_block_by_block():
    """Without metadata the resolution is the median ZLP FWHM over rows: the same from Dask blocks."""
    import dask.array as da

    from sreels.inference.fast import FitSettings, resolve_instrument

    sim = simulate(Scenario(rows=30), Instrument(plural_scattering=True, lowloss_window=True), rng=1)
    w = windows_of(sim)
    lazy = {k: dataclasses.replace(v, counts=da.from_array(v.counts, chunks=(7, -1))) for k, v in w.items()}
    a, b = (resolve_instrument(x, FitSettings())[0].resolution_fwhm_ev for x in (w, lazy))
    assert a == b and 0.5 < a < 0.7  # the 0.5 eV ZLP widened by the camera's PSF


def test_li_k_in_a_low_loss_alone_is_present_or_not_for_the_whole_image():
    """A low-loss spectrum image holding Li-K, fitted alone (its plural scattering from itself) in two blocks: whether
    the image holds Li-K is the whole image's decision (a block of the parent's rows, none at 3 sigma, read no_li
    while the image had Li: statuses differed); every number the in-memory fit's (:func:`_same`)."""
    from sreels.config import LOWLOSS_NAME

    sim = simulate(Scenario(rows=40, row_nm=40.0, first_row_nm=-60.0), Instrument(lowloss_exposure_s=0.005), rng=3)
    w = {LOWLOSS_NAME: windows_of(sim)[LOWLOSS_NAME]}
    a, b = fit_image(w, progress=False), fit_image_dask(w, chunk_rows=20, progress=False)
    assert "no_li" not in "".join(a.status)
    _same(a, b)


def test_a_lazy_low_loss_is_recognised_from_its_first_block_alone():
    """The loader tells the low-loss window by its ZLP from the first stored block of a lazy file, read here: when
    that block shows it no other block is computed (the whole file's mean was a full pass over it, on a Dask
    client's workers when one was active); when it does not (thick, empty), the whole file decides.  A core-loss
    window is not taken for a low loss."""
    import dask
    import dask.array as da

    from sreels.axes import EnergyAxis
    from sreels.inference.load import has_zlp

    ax = EnergyAxis(-10.0, 0.1, 400)
    zlp = 1e4 * np.exp(-0.5 * (ax.energy_ev / 0.3) ** 2) + 5.0
    first = da.from_array(np.tile(zlp, (2, 3, 1)), chunks=(2, 3, 400))

    @dask.delayed
    def never():
        raise AssertionError("a block after the first was read")

    rest = da.from_delayed(never(), shape=(2, 3, 400), dtype=float)
    lazy = da.concatenate([first, rest], axis=0)
    assert has_zlp(ax, lazy)
    flat = np.tile(np.linspace(100.0, 50.0, 400), (4, 3, 1))
    assert not has_zlp(ax, da.from_array(flat, chunks=(2, 3, 400)))
    assert has_zlp(ax, np.tile(zlp, (3, 1))) and not has_zlp(EnergyAxis(40.0, 0.1, 400), np.tile(zlp, (3, 1)))
    # a first block without a visible ZLP (thick: its plasmon above it; or empty): the whole file decides
    plasmon = 3e4 * np.exp(-0.5 * ((ax.energy_ev - 20.0) / 4.0) ** 2)
    thick_first = np.concatenate([np.tile(0.1 * zlp + plasmon, (2, 3, 1)), np.tile(zlp, (30, 3, 1))])
    assert not has_zlp(ax, thick_first[:2]) and has_zlp(ax, thick_first)
    assert has_zlp(ax, da.from_array(thick_first, chunks=(2, 3, 400)))
    empty_first = np.concatenate([np.zeros((2, 3, 400)), np.tile(zlp, (6, 3, 1))])
    assert has_zlp(ax, da.from_array(empty_first, chunks=(2, 3, 400)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and numpy's madvise: Linux")
@pytest.mark.parametrize("nanny", [True, False])
def test_a_workers_memory_settings_are_taken_in_a_nannys_process_only(nanny):
    """In a process a dask.distributed nanny started (MALLOC_TRIM_THRESHOLD_ set) the blocks' first task switches
    numpy's huge-page advice off (resources.no_huge_page_advice); elsewhere numpy's default stays."""
    from numpy._core.multiarray import _set_madvise_hugepage

    code = ("from numpy._core.multiarray import _set_madvise_hugepage as s\n"
            "from sreels.inference.daskfit import _malloc_for_blocks\n"
            "before = s(True); s(before); _malloc_for_blocks(); print(before, s(True))")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    if nanny:
        env["MALLOC_TRIM_THRESHOLD_"] = "65536"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    default = _set_madvise_hugepage(True)
    _set_madvise_hugepage(default)
    assert out.split() == [str(default), str(default and not nanny)]


def test_the_local_cluster_of_workers_takes_its_settings_and_gives_the_in_memory_numbers():
    """``--workers N`` starts a LocalCluster with LOCAL_CLUSTER_CONFIG: its workers run with one malloc arena and
    no statistical profiler, and the fit there gives the in-memory numbers."""
    from distributed import Client

    from sreels.inference.daskfit import local_cluster

    sim = simulate(Scenario(rows=24, row_nm=60.0, first_row_nm=-60.0), Instrument(), rng=2)
    w = windows_of(sim)
    with local_cluster(1) as cl, Client(cl) as client:
        seen = list(client.run(lambda: (os.environ.get("MALLOC_ARENA_MAX"),
                                        __import__("dask").config.get("distributed.worker.profile.enabled"))).values())
        assert seen == [("1", False)]
        # the first block's imports (dask.array, unpickling the blocks' arrays) started on the workers, not waited for
        imported = lambda: list(client.run(lambda: "dask.array" in sys.modules).values())  # noqa: E731
        if imported() == [False]:  # (a worker of this distributed has not imported it at its start)
            daskfit._warm_workers(client)
            t0 = time.monotonic()
            while imported() != [True] and time.monotonic() - t0 < 30:
                time.sleep(0.05)
            assert imported() == [True]
        _same(fit_image(w, progress=False), fit_image_dask(w, chunk_rows=12, client=client, progress=False))


def test_the_first_pass_reduced_in_groups_gives_the_in_memory_numbers(monkeypatch):
    """With more blocks than REDUCE_GROUP the first pass's parts are added in groups, then the groups combined: the
    numbers stay the in-memory fit's (5 blocks in groups of 2: a group of one block too)."""
    import sreels.inference.daskfit as daskfit

    monkeypatch.setattr(daskfit, "REDUCE_GROUP", 2)
    sim = simulate(Scenario(rows=30, row_nm=50.0, first_row_nm=-60.0), Instrument(), rng=4)
    w = windows_of(sim)
    g = daskfit.fit_graph(w, chunk_rows=6)
    assert sum("_image_partial" in str(k) for k in dict(g.__dask_graph__())) == 3
    _same(fit_image(w, progress=False), g.compute(scheduler="sync"))


def test_a_workers_blocks_share_the_steps_of_the_image_averages_alone(monkeypatch):
    """The Li-K tails' principal components and the Ti window's global offset come from the image's averages, which
    every block of a process is handed as the same objects: computed once (the components once per tail, the rows'
    own and each replica's), not once per block, and the numbers stay the in-memory fit's."""
    import sreels.inference.lowloss as lowloss

    sim = simulate(Scenario(rows=30, row_nm=50.0, first_row_nm=-60.0), Instrument(), rng=6)
    w = windows_of(sim)
    whole = fit_image(w, progress=False)
    import sreels.inference.fast as fast

    calls, offsets = [], []
    real, real_offset = lowloss._leading_components, fast._mean_ti_offset
    monkeypatch.setattr(lowloss, "_leading_components", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(fast, "_mean_ti_offset", lambda *a: offsets.append(1) or real_offset(*a))
    lowloss._COMPONENTS.clear()
    # 3 blocks, one after another (as a single-threaded worker runs them; the threaded scheduler's concurrent
    # blocks may each compute them before either has)
    _same(whole, fit_graph(w, chunk_rows=10).compute(scheduler="sync"))
    assert len(calls) == lowloss.TAIL_REPLICAS + 1 and len(offsets) == 1


def test_every_pass_over_a_block_is_placed_on_one_worker(monkeypatch):
    """Given a cluster's workers, block j's three passes (and the items of their outputs) prefer worker j mod N, so
    that what a block's passes hold stays where it was made; the restrictions are loose; blocks alternate, and so do
    the first pass's group reductions (all of them had gone to one worker)."""
    import sreels.inference.daskfit as daskfit

    monkeypatch.setattr(daskfit, "REDUCE_GROUP", 2)
    sim = simulate(Scenario(rows=30), Instrument(), rng=1)
    ws = ["tcp://a:1", "tcp://b:2"]
    hlg = fit_graph(windows_of(sim), chunk_rows=6, workers=ws).__dask_graph__()
    ann = {k: getattr(v, "annotations", None) or {} for k, v in hlg.layers.items()}

    def upstream(name, kind):
        """The layer of ``kind`` that ``name`` depends on (through its getitem layers)."""
        todo, seen = [name], set()
        while todo:
            n = todo.pop()
            for d in hlg.dependencies[n]:
                if d.startswith(kind):
                    return d
                if d.startswith("getitem") and d not in seen:
                    seen.add(d)
                    todo.append(d)
        raise AssertionError(f"{name}: no {kind} upstream")

    placed = []
    for name in (k for k in hlg.layers if k.startswith("_fit_block")):
        chain = [name, upstream(name, "_sums"), upstream(upstream(name, "_sums"), "_image_pass")]
        assert all(ann[c].get("allow_other_workers") is True for c in chain)
        assert len({tuple(ann[c]["workers"]) for c in chain}) == 1, chain
        placed.append(ann[name]["workers"][0])
    assert len(placed) == 5 and sorted(placed) == sorted(ws * 2 + ws[:1])
    assert sorted(ann[k]["workers"][0] for k in hlg.layers if k.startswith("_image_partial")) == sorted(ws + ws[:1])
    assert not any(getattr(v, "annotations", None) for v in fit_graph(windows_of(sim), chunk_rows=6)
                   .__dask_graph__().layers.values())


def test_the_numbers_do_not_depend_on_the_workers_the_blocks_are_placed_on(monkeypatch):
    """The reductions sum the blocks' parts in block order whatever workers the blocks prefer: the same numbers, bit
    for bit, with no workers, two or three (the synchronous scheduler ignores placement; the graph's sums are what
    differ when the grouping follows the workers)."""
    import sreels.inference.daskfit as daskfit

    monkeypatch.setattr(daskfit, "REDUCE_GROUP", 2)
    sim = simulate(Scenario(rows=30, row_nm=50.0, first_row_nm=-60.0), Instrument(), rng=8)
    w = windows_of(sim)
    runs = [fit_graph(w, chunk_rows=6, workers=ws).compute(scheduler="sync")
            for ws in (None, ["tcp://a:1", "tcp://b:2"], ["tcp://a:1", "tcp://b:2", "tcp://c:3"])]
    for r in runs[1:]:
        assert list(r.status) == list(runs[0].status)
        for k, v in runs[0].columns.items():
            assert np.array_equal(v, r.columns[k], equal_nan=True), k


def test_with_the_gain_unknown_the_blocks_take_the_whole_images_noise_level():
    """Gain unknown (a measured file without it): the noise level of every window (the Li-K window fitted with its
    plural scattering, the deconvolved Ti/O window as recorded, the Li-K edge of a low loss alone less its pedestal)
    is the whole image's, a reduction of the graph, in the first pass or, without a low-loss window, the sums pass:
    blocks of 9 rows give the in-memory numbers and flags."""
    sim = simulate(Scenario(rows=27, row_nm=60.0, first_row_nm=-60.0), Instrument(), rng=8)
    unknown = {k: dataclasses.replace(w, gain_counts_per_e=None) for k, w in windows_of(sim).items()}
    cases = {"dualeels": unknown, "no low loss": {k: w for k, w in unknown.items() if k != "lowloss"},
             "li-k in the low loss": {"lowloss": dataclasses.replace(
                 unknown["lowloss"], counts=np.asarray(unknown["lowloss"].counts) + 30.0)}}
    for name, w in cases.items():
        whole = fit_image(w, progress=False)
        assert any("measured from channel-to-channel differences" in n for n in whole.notes), name
        _same(whole, fit_image_dask(w, chunk_rows=9, progress=False))


def test_a_blocks_transforms_run_in_its_own_thread_with_the_same_numbers(monkeypatch):
    """A Dask block's Fourier transforms (the Li-K tails' Fourier logs, the Fourier ratio) use the task's thread
    alone, the in-memory fit every core; the transforms give the same numbers bit for bit either way."""
    import sreels.inference.lowloss as lowloss
    from sreels.resources import fft_workers, single_threaded_fft

    sim = simulate(Scenario(rows=28, row_nm=60.0, first_row_nm=-60.0), Instrument(), rng=9)
    w = windows_of(sim)
    seen = []

    def spy(*a, _f=lowloss.plural_tails, **k):
        seen.append(fft_workers())
        return _f(*a, **k)

    monkeypatch.setattr(lowloss, "plural_tails", spy)
    whole = fit_image(w, progress=False)
    assert set(seen) == {-1}
    seen.clear()
    _same(whole, fit_image_dask(w, chunk_rows=14, progress=False))
    assert set(seen) == {1}
    ll = w["lowloss"]
    args = (np.asarray(ll.counts, float), ll.energy, np.zeros(28), np.full(28, 1.5), 0.5, 80.0)
    many = spy(*args, noise_gain=1.0)
    with single_threaded_fft():
        one = spy(*args, noise_gain=1.0)
    assert seen[-2:] == [-1, 1]
    assert all(np.array_equal(a, b) for a, b in zip(many, one))


def test_a_line_scan_read_lazily_from_hspy_files_through_a_real_scheduler(tmp_path, cluster):
    """.hspy (HDF5) files read lazily hold h5py handles, which a cluster's workers cannot receive: the counts are
    read into memory and the blocks sent as their rows (the measured DualEELS .hspy pairs failed with --workers and
    --scheduler: "h5py objects cannot be pickled"); the numbers are the in-memory fit's."""
    from sreels.forward.output import write_simulation
    from sreels.inference.load import load_measurement

    sim = simulate(Scenario(rows=30, row_nm=60.0, first_row_nm=-60.0), Instrument(), rng=12)
    write_simulation(sim, tmp_path / "sim")
    files = sorted((tmp_path / "sim").glob("*.hspy"))

    def bare(ws):  # as a measured file: no resolution, gain or detector in its metadata (the ZLP's FWHM is measured)
        return {k: dataclasses.replace(w, metadata={}, gain_counts_per_e=None) for k, w in ws.items()}

    lazy = bare(load_measurement(files, lazy=True))
    import cloudpickle

    with pytest.raises(TypeError, match="h5py"):  # (what a worker would be sent)
        cloudpickle.dumps(lazy["high"].counts)
    whole = fit_image(bare(load_measurement(files)), progress=False)
    assert any("resolution_fwhm_ev" in n and "ZLP" in n for n in whole.notes)
    _same(whole, fit_image_dask(lazy, chunk_rows=10, scheduler=cluster, progress=False))


def test_the_blocks_notes_that_count_rows_are_added_up():
    """A note that counts a block's flagged rows is one note of the image's rows (the Fe/Cr scan in 4 blocks said "10
    row(s) flagged o_background_poor" and "30 row(s) ..." where the in-memory fit said 100); other notes as they are."""
    notes = ["10 row(s) flagged o_b: x (y)", "gain unknown", "30 row(s) flagged o_b: x (y)", "2 row(s) flagged z",
             "30 row(s) flagged o_b: x (y)", "gain unknown"]
    assert daskfit._rows_added(notes) == ["70 row(s) flagged o_b: x (y)", "gain unknown", "2 row(s) flagged z",
                                          "gain unknown"]
