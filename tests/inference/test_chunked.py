"""Chunked (Dask, out-of-memory) fast fit: the same numbers as the whole-image fit."""

import dataclasses

import numpy as np
import pytest

from sreels.cli import main
from sreels.config import Instrument, Scenario
from sreels.errors import SreelsInputError
from sreels.forward.output import write_simulation
from sreels.forward.simulate import simulate
from sreels.inference.fast import FitSettings, fit_image, fit_image_chunked
from sreels.inference.load import load_measurement
from sreels.io import read_csv

from .fasthelpers import windows_of


def _same(a, b):
    """Every number to 1e-9 of itself (measured: bit for bit), the same statuses."""
    assert (a.status == b.status).all()
    for k, v in a.columns.items():
        w = b.columns[k]
        assert np.allclose(v, w, rtol=1e-9, atol=0, equal_nan=True), (k, np.nanmax(np.abs(v - w)))


@pytest.fixture(scope="module")
def sim():
    # single scattering, no low-loss window: the chunked path has no low-loss step yet
    return simulate(Scenario(rows=90, row_nm=20.0, first_row_nm=-60.0),
                    Instrument(plural_scattering=False, lowloss_window=False), rng=17)


@pytest.mark.parametrize("bin_rows, chunk", [(1, 25), (2, 25), (1, 1000)])
def test_chunks_of_dask_arrays_give_the_whole_image_result(sim, bin_rows, chunk):
    import dask.array as da

    s = FitSettings(bin_rows=bin_rows)
    whole = fit_image(windows_of(sim), s)
    lazy = {k: dataclasses.replace(w, counts=da.from_array(w.counts, chunks=(10, -1)))
            for k, w in windows_of(sim).items()}
    res = fit_image_chunked(lazy, s, chunk_rows=chunk)
    _same(whole, res)
    assert res.position.size == whole.position.size and not res.fits
    assert any("chunks of <= " in n for n in res.notes)


def test_lazy_files_and_the_command_line(sim, tmp_path):
    write_simulation(sim, tmp_path / "sim")
    files = sorted((tmp_path / "sim").glob("*.hspy"))
    lazy = load_measurement(files, lazy=True)
    assert all(hasattr(w.counts, "compute") for w in lazy.values())  # nothing read yet
    _same(fit_image(load_measurement(files)), fit_image_chunked(lazy, chunk_rows=30))
    assert main(["fit", str(tmp_path / "sim"), "--out", str(tmp_path / "a"), "--no-plot"]) == 0
    assert main(["fit", str(tmp_path / "sim"), "--out", str(tmp_path / "b"), "--no-plot", "--chunk-rows", "40"]) == 0
    a, b = (read_csv(tmp_path / d / "profiles.csv") for d in "ab")
    assert list(a["status"]) == list(b["status"])
    for k in a:
        if k != "status":
            assert np.allclose(np.asarray(a[k], float), np.asarray(b[k], float), rtol=1e-5, equal_nan=True), k


def test_a_nan_in_a_lazy_block_is_named(sim, tmp_path):
    w = windows_of(sim)
    c = w["high"].counts.copy()
    c[57, 300] = np.nan
    np.save(tmp_path / "high.npy", c)
    lazy = load_measurement([tmp_path / "high.npy"], w["high"].energy.offset_ev, w["high"].energy.scale_ev, lazy=True)
    with pytest.raises(SreelsInputError, match="row 57"):
        fit_image_chunked(lazy, chunk_rows=20)
    with pytest.raises(SreelsInputError, match="chunk_rows"):
        fit_image_chunked(lazy, chunk_rows=0)


def test_a_blocks_chi2_scale_is_the_whole_images(sim):
    """The reduced chi^2 a right model has under the detector's PSF (the O-K poor-fit flags' scale) comes from the
    whole image's mean spectrum: a block of rows given the image's means gets the image's value, not its own rows'."""
    from sreels.inference.fast import _Run, resolve_instrument

    wins = windows_of(sim)
    s, _ = resolve_instrument(wins, FitSettings())
    for name, w in wins.items():
        whole = _Run(s, w.counts.shape[0], []).chi2_scale(w)
        assert 0.3 < whole < 1.0, (name, whole)  # the PSF lowers the shot noise per pixel (known gain)
        for rows in (slice(0, 10), slice(40, 90, 3)):
            block = dataclasses.replace(w, counts=w.counts[rows])
            run = _Run(s, block.counts.shape[0], [], means={name: w.counts.mean(0)})
            assert run.chi2_scale(block) == whole
