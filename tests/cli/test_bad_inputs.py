"""Every bad input of issue 11 is a one-line SreelsInputError (exit 2) or an honest exit code."""

import json

import numpy as np
import pytest

from sreels.cli import main
from sreels.config import Scenario, config_from_dict, load_config
from sreels.errors import SreelsInputError
from sreels.inference.load import load_measurement, read_file


def _one_line_error(capsys, *needles):
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.strip().splitlines() if ln and not ln.startswith("sreels fit:  ")]
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _fit(path, tmp_path, *extra):
    return main(["fit", str(path), "--energy-offset", "420", "--dispersion", "0.1", "--out",
                 str(tmp_path / "fit"), "--no-plot", *extra])


# ------------------------------------------------------------------ .npy inputs
def _write_bad_npy(kind, path):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        np.save(path, np.ones((20, 2048)))
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "object":
        np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    elif kind == "text":
        np.save(path, np.array([["1", "2"]]))
    elif kind == "no_rows":
        np.save(path, np.zeros((0, 2048)))
    elif kind == "4d":
        np.save(path, np.ones((2, 3, 4, 2048)))
    elif kind == "garbage":
        path.write_bytes(b"hello world, not numpy")


@pytest.mark.parametrize("kind, needle", [
    ("empty", "not a readable .npy"), ("truncated", "truncated .npy"), ("object", "type object"),
    ("text", "expected real numbers"), ("no_rows", "empty array of shape (0, 2048)"),
    ("4d", "shape (2, 3, 4, 2048)"), ("garbage", "not a readable .npy")])
def test_bad_npy_is_a_clear_error(tmp_path, capsys, kind, needle):
    p = tmp_path / f"{kind}.npy"
    _write_bad_npy(kind, p)
    assert _fit(p, tmp_path) == 2
    _one_line_error(capsys, str(p), needle)
    assert not (tmp_path / "fit").exists()


def test_4d_hspy_is_refused_with_its_shape(tmp_path):
    from rsciio.hspy import file_writer
    data = np.ones((2, 3, 4, 64))
    axes = [{"name": n, "units": "nm", "size": s, "navigate": True, "scale": 1.0, "offset": 0.0}
            for n, s in zip("abc", data.shape[:3])]
    axes.append({"name": "E", "units": "eV", "size": 64, "navigate": False, "scale": 0.1, "offset": 420.0})
    f = tmp_path / "four.hspy"
    file_writer(str(f), {"data": data, "axes": axes, "metadata": {"General": {"title": "4d"}},
                         "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
                         "learning_results": {}, "models": {},
                         "package_info": {"name": "hyperspy", "version": "2.0"}})
    with pytest.raises(SreelsInputError, match=r"shape \(2, 3, 4, 64\).*line scan.*2-D map"):
        read_file(f)


def test_singleton_map_axis_is_a_line_scan_with_its_length_axis():
    from sreels.inference.load import from_signal_dict
    sig = {"data": np.ones((1, 5, 64)), "axes": [
        {"name": "x", "units": "nm", "size": 1, "navigate": True, "scale": 3.0, "offset": 0.0},
        {"name": "y", "units": "nm", "size": 5, "navigate": True, "scale": 7.0, "offset": 10.0},
        {"name": "E", "units": "eV", "size": 64, "navigate": False, "scale": 0.1, "offset": 420.0}]}
    w = from_signal_dict(sig, "s")
    assert w.nav_shape == (5,) and w.position.scale_nm == 7.0 and w.position.offset_nm == 10.0


def test_huge_values_are_refused(tmp_path, capsys):
    p = tmp_path / "huge.npy"
    np.save(p, np.full((5, 2048), 1e30))
    assert _fit(p, tmp_path) == 2
    _one_line_error(capsys, "beyond", "1e+30")


def test_same_file_twice_is_refused(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["simulate", "--out", str(sim), "--rows", "20", "--seed", "1"]) == 0
    capsys.readouterr()
    rc = main(["fit", str(sim / "high.hspy"), str(tmp_path / "sim" / ".." / "sim" / "high.hspy"),
               "--out", str(tmp_path / "f"), "--no-plot"])
    assert rc == 2
    _one_line_error(capsys, "given twice")
    with pytest.raises(SreelsInputError, match="given twice"):
        load_measurement([sim / "low.hspy", sim / "low.hspy"])


# ------------------------------------------------------------------ exit codes
@pytest.mark.parametrize("fill", [0.0, 100.0])
def test_every_row_failed_is_exit_4(tmp_path, capsys, fill):
    p = tmp_path / "flat.npy"
    np.save(p, np.full((6, 2048), fill))
    assert _fit(p, tmp_path) == 4
    err = capsys.readouterr().err
    assert "not one of the 6 rows could be fitted" in err
    assert (tmp_path / "fit" / "profiles.csv").is_file()


def test_a_measured_image_is_exit_0(tmp_path, capsys):
    sim = tmp_path / "sim"
    assert main(["simulate", "--out", str(sim), "--rows", "20", "--seed", "1"]) == 0
    assert main(["fit", str(sim), "--out", str(tmp_path / "f"), "--no-plot"]) == 0


# ------------------------------------------------------------------ scenarios
def _toml(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, needles", [
    ("[scenario]\npeak_a_shift_ti3_ev = nan\n", ["peak_a_shift_ti3_ev = nan", "[-10, 10]"]),
    ("[scenario]\nli_max_rel = inf\n", ["li_max_rel = inf"]),
    ("[scenario]\ngrains = [{center_nm = nan, width_nm = 40.0, fraction = 0.3}]\n", ["center_nm = nan"]),
    ("[scenario]\nrows = 1.5\n", ["rows = 1.5", "integer"]),
    ("[scenario]\nr_oo_parent_nm = 0.0\n", ["r_oo_parent_nm = 0.0", "[0.15, 0.6]"]),
    ("[instrument]\nwindows = [{name = 5, offset_ev = 420.0}]\n", ["name = 5"]),
    ("[instrument]\nwindows = [{name = \"w\", offset_ev = 420.0, edges = 3}]\n", ["edges = 3"]),
    ("[instrument]\nwindows = [{name = \"w\", offset_ev = 420.0, channels = 1e8}]\n", ["channels = 100000000",
                                                                                        "[64, 65536]"]),
    ("[instrument]\nresolution_fwhm_ev = -1.0\n", ["resolution_fwhm_ev = -1.0"]),
    ("[detector]\ngain_counts_per_e = nan\n", ["gain_counts_per_e = nan"]),
    ("[scenario]\nprofile_table = \"absent.csv\"\n", ["absent.csv", "does not exist"]),
])
def test_bad_scenario_is_one_line_error(tmp_path, capsys, text, needles):
    rc = main(["simulate", "--scenario", str(_toml(tmp_path, text)), "--out", str(tmp_path / "o")])
    assert rc == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("rows, needles", [
    ("100000000", ["Scenario.rows = 100000000", "[2, 1e+07]"]),
    ("100000", ["simulating 100000 rows", "GiB", "--max-memory"])])
def test_too_many_rows_is_refused_before_allocating(tmp_path, capsys, rows, needles):
    rc = main(["simulate", "--rows", rows, "--out", str(tmp_path / "o"), "--max-memory", "1"])
    assert rc == 2
    _one_line_error(capsys, *needles)


def test_memory_limit_can_be_raised(tmp_path, capsys):
    assert main(["simulate", "--rows", "30", "--out", str(tmp_path / "o"), "--max-memory", "0.0001"]) == 2
    capsys.readouterr()
    assert main(["simulate", "--rows", "30", "--out", str(tmp_path / "o"), "--max-memory", "4"]) == 0


def test_fit_memory_is_estimated_before_reading(tmp_path, capsys):
    p = tmp_path / "img.npy"
    np.save(p, np.ones((400, 2048)))
    assert _fit(p, tmp_path, "--max-memory", "0.3") == 2
    _one_line_error(capsys, "fitting 400 rows", "--chunk-rows")


@pytest.mark.parametrize("table, needle", [
    ("y_nm,li_rel,r_oo_nm\n0,5,0.0\n2000,1,0.28\n", "r_oo_nm = 0.0"),
    ("y_nm,li_rel,alpo4_fraction\n0,5,2\n2000,1,0\n", "alpo4_fraction = 2.0"),
    ("", "non-empty lines"),
    ("y_nm,li_rel\n0,5\n2000\n", "line 3 has 1 fields"),
    ("y_nm,li_rel\n0,five\n2000,1\n", "li_rel = 'five'"),
    ("y_nm,li_rel,r_oo\n0,5,0.3\n2000,1,0.3\n", "unknown column 'r_oo'"),
    ("y_nm,ti3_fraction\n0,0.5\n2000,0\n", "missing li_rel"),
])
def test_bad_profile_table_is_refused_by_column(tmp_path, table, needle):
    import sreels.forward.simulate as fs
    t = tmp_path / "p.csv"
    t.write_text(table)
    with pytest.raises(SreelsInputError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        fs.simulate(Scenario(rows=20, first_row_nm=0.0, profile_table=str(t)), rng=0)


def test_scenario_api_refuses_wrong_types():
    for bad in ({"rows": "ten"}, {"grains": [1]}, {"ti3_mode": 3}, {"profile_table": 5}):
        with pytest.raises(SreelsInputError):
            Scenario(**bad)
    with pytest.raises(SreelsInputError, match="table of tables"):
        config_from_dict([1, 2])
    with pytest.raises(SreelsInputError, match="does not exist"):
        load_config("/nonexistent/scenario.toml")


# ------------------------------------------------------------------ seeds
@pytest.mark.parametrize("seed", ["-1", "abc"])
def test_bad_seed_is_a_usage_error(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--seed", seed, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--seed" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [str(2**70), None])
def test_seed_of_any_size_is_stored(tmp_path, capsys, seed):
    from rsciio.hspy import file_reader
    out = tmp_path / "o"
    assert main(["simulate", "--rows", "20", "--out", str(out)] + (["--seed", seed] if seed else [])) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "rsciio" not in err
    recorded = json.loads((out / "run.json").read_text())["rng"]["seed"]
    if seed:
        assert recorded == 2**70
    md = file_reader(str(out / "high.hspy"))[0]["metadata"]["sreels"]
    assert int(md["seed"]) == recorded


# ------------------------------------------------------------------ structures
def test_partial_occupancy_cif_is_refused(tmp_path, capsys):
    cif = tmp_path / "mixed.cif"
    cif.write_text("""data_x
_cell_length_a 4.59
_cell_length_b 4.59
_cell_length_c 2.96
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 42/m n m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Ti1 Ti 0.0 0.0 0.0 0.4
Li1 Li 0.0 0.0 0.0 0.6
O1 O 0.30479 0.30479 0.0 1.0
""")
    assert main(["structures", str(cif)]) == 2
    err = capsys.readouterr()
    assert "partial or mixed occupancy" in err.err and "Li 0.6 + Ti 0.4" in err.err and err.out == ""


def test_huge_supercell_is_refused_at_once(tmp_path, capsys):
    import time
    head = ("data_big\n_cell_length_a 100\n_cell_length_b 100\n_cell_length_c 100\n_cell_angle_alpha 90\n"
            "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
            "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n")
    rng = np.random.default_rng(0)
    rows = "".join(f"O{i} O {x:.5f} {y:.5f} {z:.5f}\n" for i, (x, y, z) in enumerate(rng.random((93750, 3))))
    cif = tmp_path / "big.cif"
    cif.write_text(head + rows)
    t0 = time.perf_counter()
    assert main(["structures", str(cif)]) == 2
    assert time.perf_counter() - t0 < 10
    assert "93750 atom sites" in capsys.readouterr().err


def test_max_atoms_is_validated(capsys, tmp_path):
    cif = tmp_path / "x.cif"
    cif.write_text("data_x\n")
    assert main(["structures", str(cif), "--max-atoms", "0"]) == 2
    assert "--max-atoms 0" in capsys.readouterr().err


def test_ctrl_c_inside_a_command_is_one_line_130(monkeypatch, capsys):
    import sreels.structures.commands as sc

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(sc, "_structures", interrupted)
    assert main(["structures"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "sreels structures: interrupted by SIGINT; no partial output left"


def test_unexpected_error_is_one_line_exit_1(monkeypatch, capsys):
    import sreels.structures.commands as sc

    def broken(*a, **k):
        raise ZeroDivisionError("boom")
    monkeypatch.setattr(sc, "_structures", broken)
    assert main(["structures"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: ZeroDivisionError: boom" in err[0]


def test_line_scan_without_length_unit_says_rows_not_nm(tmp_path, capsys):
    from rsciio.hspy import file_reader
    sim = tmp_path / "sim"
    assert main(["simulate", "--out", str(sim), "--rows", "30", "--seed", "4"]) == 0
    p = tmp_path / "high.npy"
    np.save(p, file_reader(str(sim / "high.hspy"))[0]["data"])
    capsys.readouterr()
    assert _fit(p, tmp_path) == 0
    out = capsys.readouterr().out
    assert "high.npy: the position axis has no length unit" in out
    summary = json.loads((tmp_path / "fit" / "summary.json").read_text())
    assert "no length unit" in json.dumps(summary)


def test_overflowing_row_gets_nan_covariance_not_svd_error():
    """Found by Hypothesis (the fit of small negative counts): one row with a singular normal
    matrix sent the covariance to ``pinv``, whose SVD then failed on another row whose model had
    overflowed (LinAlgError for the whole image); now only the overflowing row is unconverged."""
    from sreels.inference.batchfit import levenberg_marquardt
    x = np.linspace(0.0, 1.0, 20)

    def model(p, idx):  # row 0: two identical columns (singular); row 1: the model overflowed (NaN)
        m = (p[:, :1] + p[:, 1:2]) * np.ones_like(x)[None, :]
        J = np.ones(m.shape + (2,))
        J = np.where((idx == 1)[:, None, None], np.nan, J)
        return m, J
    y = np.full((2, x.size), 3.0)
    res = levenberg_marquardt(model, np.zeros((2, 2)), y, np.ones_like(y))
    assert not res.converged[1] and np.isnan(res.cov[1]).all()
    assert np.isfinite(res.cov[0]).all()
    assert res.params[0].sum() == pytest.approx(3.0, abs=1e-3)


def test_absurd_ti_shift_gives_no_l2_l3_ratio_instead_of_memory_error():
    """Found by Hypothesis on spiky data: a fitted shift of ~1e14 eV made the Ti-L continuum be
    evaluated on a grid of 1e16 points (MemoryError); that row now has no ratio."""
    from types import SimpleNamespace

    from sreels.config import Instrument
    from sreels.inference.fast import l2_l3_ratio
    e = np.arange(440.0, 480.0, 0.5)
    vals = {"delta": np.array([0.2, -2.76e14]), "Ti4+": np.array([1.0, 1.0]), "Ti3+": np.array([0.0, 0.0]),
            "log_a": np.array([0.0, 0.0]), "r": np.array([3.0, 3.0])}
    fit = SimpleNamespace(energy=e, value=vals.__getitem__, data=np.ones((2, e.size)), ref_scale=1.0, e_ref=450.0)
    ratio = l2_l3_ratio(fit, Instrument(), np.zeros(2))
    assert np.isnan(ratio[1]) and ratio.shape == (2,)
