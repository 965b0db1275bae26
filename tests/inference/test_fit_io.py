"""`sreels fit` on files: the output contract, bad input, and the measured reference data."""

import json

import numpy as np
import pytest

from sreels.cli import main
from sreels.errors import SreelsInputError
from sreels.inference.fast import fit_image, usable
from sreels.inference.load import load_measurement, read_file
from sreels.io import read_csv

CONTRACT = ["y_nm", "li_rel", "li_rel_err", "ti3_fraction", "ti3_fraction_err", "peak_a_ev", "peak_a_ev_err",
            "peak_b_ev", "peak_b_ev_err", "r_oo_nm", "r_oo_nm_err", "status"]
SUMMARY = ["electrode_width_nm", "ti_boundary_nm", "li_max_rel", "li_at_ti_boundary_rel", "r_oo_parent_nm",
           "r_oo_max_nm"]


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim") / "sim"
    assert main(["simulate", "--out", str(d), "--seed", "9", "--rows", "80"]) == 0
    return d


def _strict_json(path):
    """A JSON file read as a strict parser reads it: NaN and Infinity, which Python writes unless told not to, are
    not JSON."""
    def refuse(word):
        raise AssertionError(f"{path.name}: {word} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_json_is_strict_a_number_not_measured_is_null(tmp_path):
    from sreels.io import write_json

    write_json(tmp_path / "a.json", {"x": float("nan"), "y": np.float32(np.inf), "z": np.array([1.0, np.nan]),
                                     "n": np.int64(3), "ok": np.bool_(True), "nested": [{"v": np.nan}, (2.5,)]})
    assert _strict_json(tmp_path / "a.json") == {"x": None, "y": None, "z": [1.0, None], "n": 3, "ok": True,
                                                 "nested": [{"v": None}, [2.5]]}


def test_fit_cli_writes_the_contract_and_leaves_inputs_alone(simdir, tmp_path):
    before = {p.name: p.read_bytes() for p in simdir.iterdir()}
    out = tmp_path / "fit"
    assert main(["fit", str(simdir / "low.hspy"), str(simdir / "high.hspy"), "--out", str(out)]) == 0
    prof = read_csv(out / "profiles.csv")
    assert list(prof)[:len(CONTRACT) - 1] == CONTRACT[:-1] and "status" in prof
    assert prof["y_nm"].size == 80
    s = _strict_json(out / "summary.json")
    for k in SUMMARY:
        assert k in s and f"{k}_err" in s
    assert s["input_files"] and s["version"] and "settings" in s
    # a sreels simulation is inverted with its forward model's C, exactly (measured data: a calibrated C)
    assert any("the forward model's own constant" in n for n in s["notes"])
    # the low-loss window left out: plural scattering stays in the O-K window, a systematic of R_OO (no C error)
    from sreels.inference.fast import R_OO_PLURAL_SYST
    np.testing.assert_allclose(prof["r_oo_nm_err"], np.hypot(prof["r_oo_nm_err_stat"], R_OO_PLURAL_SYST * prof["r_oo_nm"]),
                               rtol=1e-12)
    assert (out / "profiles.png").stat().st_size > 10_000 and (out / "residuals.png").exists()
    assert {p.name: p.read_bytes() for p in simdir.iterdir()} == before
    # a folder works as input too; an existing output is refused
    assert main(["fit", str(simdir), "--out", str(out)]) == 2


def test_npy_needs_an_axis_and_then_fits(simdir, tmp_path):
    from rsciio.hspy import file_reader
    arr = file_reader(str(simdir / "high.hspy"))[0]["data"]
    f = tmp_path / "high.npy"
    np.save(f, arr)
    with pytest.raises(SreelsInputError, match="--energy-offset"):
        read_file(f)
    res = fit_image(load_measurement([f], energy_offset_ev=420.0, dispersion_ev=0.1))
    ref = fit_image(load_measurement([simdir / "high.hspy"]))
    # no gain, readout or PSF in a .npy: slightly different weights and references, same answer
    # within a fraction of the error (the noise level is then measured from the data): measured, 71 of 72
    # rows within 0.016 sigma and one (its peak-b fit converging elsewhere under the other weights) 0.52
    d = (res.columns["peak_b_ev"] - ref.columns["peak_b_ev"]) / ref.columns["peak_b_ev_err"]
    assert np.isfinite(d).sum() > 60 and np.nanmedian(np.abs(d)) < 0.05 and np.nanmax(np.abs(d)) < 1.0


def test_bad_inputs_are_named(simdir, tmp_path):
    from rsciio.hspy import file_reader
    arr = file_reader(str(simdir / "high.hspy"))[0]["data"].astype(float)
    bad = arr.copy()
    bad[3, 100] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(SreelsInputError, match="NaN/inf.*row 3"):
        read_file(tmp_path / "nan.npy", 420.0, 0.1)
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    with pytest.raises(SreelsInputError, match="shape"):
        read_file(tmp_path / "cube.npy", 420.0, 0.1)
    (tmp_path / "trunc.hspy").write_bytes((simdir / "high.hspy").read_bytes()[:5000])
    with pytest.raises(SreelsInputError, match="RosettaSciIO could not read"):
        read_file(tmp_path / "trunc.hspy")
    with pytest.raises(SreelsInputError, match="truth.csv: cannot read spectrum"):  # not two numeric columns
        read_file(simdir / "truth.csv")
    (tmp_path / "x.xyz").write_text("1 2\n")
    with pytest.raises(SreelsInputError, match="unknown file type"):
        read_file(tmp_path / "x.xyz")
    with pytest.raises(SreelsInputError, match="does not exist"):
        read_file(tmp_path / "missing.dm4")
    # an axis that holds none of the edges
    np.save(tmp_path / "far.npy", arr)
    with pytest.raises(SreelsInputError, match="no window covers"):
        fit_image(load_measurement([tmp_path / "far.npy"], 1000.0, 0.1))
    # a window that cuts the O-K edge: Ti-L2,3 measured, O-K named as not measured
    np.save(tmp_path / "short.npy", arr[:, :1200])
    res = fit_image(load_measurement([tmp_path / "short.npy"], 420.0, 0.1))
    assert any("O-K edge is cut by the window" in n for n in res.notes)
    assert np.isnan(res.columns["r_oo_nm"]).all() and np.isfinite(res.columns["ti3_fraction"]).sum() > 60
    # windows with different rows
    np.save(tmp_path / "rows.npy", arr[:50])
    with pytest.raises(SreelsInputError, match="different numbers of rows"):
        load_measurement([simdir / "low.hspy", tmp_path / "rows.npy"], 420.0, 0.1)


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.dm3"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ real data
def test_srtio3_rows_of_the_lsmo_sto_line_scan_are_ti4(shared_data):
    f = shared_data / "internal-only" / "exspy-demos" / "LSMO_STO_linescan.hspy"
    if not f.exists():
        pytest.skip(f"{f} absent")
    res = fit_image(load_measurement([f]))
    f3, err = res.columns["ti3_fraction_raw"], res.columns["ti3_fraction_err"]
    # SrTiO3 rows 0-2: Ti4+ -- consistent with 0, or withheld where the shapes miss the edge
    assert all("ti_shape_mismatch" in res.status[i] or abs(f3[i] / err[i]) < 2 for i in range(3)), (f3, err)
    assert np.isfinite(f3[:3]).any()
    assert all("no_ti" in s for s in res.status[4:])      # LSMO rows: no Ti at all
    # the 1 eV/channel axis sits ~1 eV off: found by the Ti-L cross-correlation
    assert abs(np.median(res.columns["ti_shift_ev"][:3])) < 3.0


def test_tio2_standard_is_ti4(shared_data):
    f = shared_data / "internal-only" / "Ti-Oxidation-EELS-data-processing" / "TiO2_TiL_SI_high-loss.dm4"
    if not f.exists():
        pytest.skip(f"{f} absent")
    res = fit_image(load_measurement([f]))
    ok = usable(res.status)
    f3 = res.columns["ti3_fraction_raw"][ok]
    assert ok.sum() > 40
    # the parametric Ti4+ shape does not describe rutile: every row says so, and the errors
    # widened by sqrt(chi2_red) keep the pure Ti4+ standard consistent with f3 = 0
    assert sum("ti_poor_fit" in s for s in res.status) >= 55
    z = f3 / res.columns["ti3_fraction_err"][ok]
    assert np.median(f3) < 0.15 and abs(np.median(z)) < 1.5 and np.std(z) < 2.0, (np.median(f3), np.median(z),
                                                                                  np.std(z))
    # the raw axis is ~3 eV high (data README): the fit finds it
    assert np.median(res.columns["ti_shift_ev"][ok]) == pytest.approx(3.0, abs=0.8)


def test_tio2_with_its_own_measured_standard(shared_data, tmp_path):
    """The summed TiO2 image as the Ti4+ MLLS standard (Ti3+ from the forward model): the
    parametric Ti4+ shape's f3 ~ 0.13 bias (rutile's real L2,3 shape) goes to ~0 and chi2 drops."""
    from sreels.inference.fast import FitSettings

    f = shared_data / "internal-only" / "Ti-Oxidation-EELS-data-processing" / "TiO2_TiL_SI_high-loss.dm4"
    if not f.exists():
        pytest.skip(f"{f} absent")
    wins = load_measurement([f])
    w = next(iter(wins.values()))
    std = tmp_path / "tio2_sum.dat"  # a scratch file: the data themselves never enter the project
    np.savetxt(std, np.column_stack([w.energy.energy_ev, w.counts.sum(0)]))
    model = fit_image(wins)
    meas = fit_image(wins, FitSettings(ti_references=(("Ti4+", str(std)),)))
    ok = usable(meas.status)
    assert ok.sum() >= usable(model.status).sum() > 40
    f3 = meas.columns["ti3_fraction_raw"][ok]
    z = f3 / meas.columns["ti3_fraction_err"][ok]
    assert abs(np.median(z)) < 1.0 and np.std(z) < 2.0, (np.median(z), np.std(z))
    thick = ok & (w.counts.sum(1) > np.median(w.counts.sum(1)))
    a3 = np.abs(meas.columns["ti3_fraction_raw"][thick])
    assert abs(np.median(f3)) < 0.01 and np.median(a3) < 0.03 and np.percentile(a3, 95) < 0.08, \
        (np.percentile(f3, [5, 50, 95]), np.percentile(a3, [50, 95]))
    assert np.median(meas.columns["ti_chi2_red"][ok]) < 0.5 * np.median(model.columns["ti_chi2_red"][ok])
    # the standard lies on the raw axis, ~3 eV high (data README): moved onto the model's scale
    moved = next(n for n in meas.notes if "standards moved by" in n)
    assert float(moved.split("moved by ")[1].split(" eV")[0]) == pytest.approx(-3.0, abs=0.4)


def test_a_2d_map_gives_pixel_values_and_maps(tmp_path, capsys):
    """A 6 x 10 scan (the rows of a line scan laid out as a map): per-pixel values equal the
    line fit's (Li relative to the map's mean instead of the far third), pixel indices in the
    table, maps.png instead of the line-profile figure, no line-profile numbers."""
    import json

    from rsciio.hspy import file_writer

    from sreels.cli import main
    from sreels.config import Scenario
    from sreels.forward.simulate import simulate

    sim = simulate(Scenario(rows=60, row_nm=30.0, first_row_nm=-60.0), rng=8)
    for name, w in sim.windows.items():
        e = w.energy
        axes = [{"name": "y", "units": "nm", "size": 6, "offset": 0.0, "scale": 1.0, "navigate": True},
                {"name": "x", "units": "nm", "size": 10, "offset": 0.0, "scale": 1.0, "navigate": True},
                {"name": "Energy loss", "units": "eV", "size": e.size, "offset": e.offset_ev, "scale": e.scale_ev,
                 "navigate": False}]
        file_writer(str(tmp_path / f"{name}.hspy"), {
            "data": w.counts.reshape(6, 10, -1), "axes": axes, "original_metadata": {}, "tmp_parameters": {},
            "attributes": {"_lazy": False}, "learning_results": {}, "models": {},
            "metadata": {"General": {"title": name}, "Signal": {"signal_type": "EELS"},
                         "sreels": {"gain_counts_per_e": 1.55, "detector": {"psf_decay": 0.2}}},
            "package_info": {"name": "hyperspy", "version": "2.0"}})
    # with the low loss (DualEELS): without it the Li-K fits are withheld (li_plural_unmodelled) and no parent is left
    files = [str(tmp_path / f"{name}.hspy") for name in sim.windows]
    assert main(["fit", *files, "--out", str(tmp_path / "binned"), "--bin", "2"]) == 2  # no 1-D binning of a map
    assert "2-D map" in capsys.readouterr().err and not (tmp_path / "binned").exists()
    assert main(["fit", *files, "--out", str(tmp_path / "map")]) == 0
    out = capsys.readouterr().out
    assert "2-D map 6 x 10" in out and "ti3_fraction_median" in out
    assert (tmp_path / "map" / "maps.png").is_file() and not (tmp_path / "map" / "profiles.png").exists()
    s = json.loads((tmp_path / "map" / "summary.json").read_text())
    assert s["map_shape"] == [6, 10] and s["electrode_width_nm"] is None
    from sreels.io import read_csv
    t = read_csv(tmp_path / "map" / "profiles.csv")
    assert list(np.asarray(t["iy"], int)[:12]) == [0] * 10 + [1] * 2 and np.asarray(t["ix"], int)[11] == 1
    par = np.asarray(t["parent"], int) == 1
    assert par.sum() > 40 and np.mean(np.asarray(t["li_rel"], float)[par]) == pytest.approx(1.0, rel=1e-9)
    line = fit_image(load_measurement(files))
    for k in ("ti3_fraction", "r_oo_nm"):
        assert np.allclose(np.asarray(t[k], float), line.columns[k], rtol=1e-9, equal_nan=True), k


def test_fit_ranges_can_be_set_and_are_checked(simdir, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["fit", str(simdir), "--out", str(out), "--no-plot", "--ti-range", "445", "475", "--o-max", "570"]) == 0
    s = json.loads((out / "summary.json").read_text())["settings"]
    assert s["ti_fit_ev"] == [445.0, 475.0] and s["o_max_ev"] == 570.0
    assert main(["fit", str(simdir), "--out", str(tmp_path / "bad"), "--ti-range", "460", "475"]) == 2
    assert "--ti-range 460 475" in capsys.readouterr().err
