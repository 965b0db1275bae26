"""The CLI front ends, driven through their own argparse parsers."""

import argparse
import json

import pytest

from sreels.structures import commands


def _run(kind, argv, capsys):
    p = argparse.ArgumentParser()
    getattr(commands, f"configure_{kind}")(p)
    rc = getattr(commands, f"run_{kind}")(p.parse_args(argv))
    return rc, capsys.readouterr()


def test_structures_json(capsys):
    rc, out = _run("structures", ["--json"], capsys)
    assert rc == 0
    rows = json.loads(out.out)
    rutile = next(r for r in rows if r["name"] == "TiO2_rutile")
    assert {"name", "oo_octahedral_edge_nm", "oo_nearest_nm", "cation"} <= set(rutile)
    assert rutile["oo_octahedral_edge_nm"] == pytest.approx(0.2768, abs=2e-4)


def test_structures_bad_cif(tmp_path, capsys):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif")
    rc, out = _run("structures", [str(bad)], capsys)
    assert rc == 2 and "bad.cif" in out.err


def test_calibrate_fallback_json(monkeypatch, capsys):
    """No measured set found anywhere (none given): the literature fallback, said in the note."""
    import sreels.structures.measured as measured
    monkeypatch.setattr(measured, "find_data_dir", lambda start=None: None)
    rc, out = _run("calibrate", ["--json"], capsys)
    assert rc == 0
    rep = json.loads(out.out)
    assert {"C_ev_nm2", "C_err_ev_nm2", "points"} <= set(rep)
    assert {"name", "delta_e_ev", "delta_e_err_ev", "r_nm", "r_err_nm"} <= set(rep["points"][0])
    assert "not found" in rep["note"]


def test_calibrate_absent_data_dir_is_an_error(tmp_path, capsys):
    """An explicit --data-dir that does not exist is an error naming it, not a silent fallback."""
    rc, out = _run("calibrate", ["--json", "--data-dir", str(tmp_path / "none")], capsys)
    assert rc == 2 and str(tmp_path / "none") in out.err and "no such folder" in out.err
    assert out.out == ""


def test_calibrate_measured_writes_figures(data_dir, tmp_path, capsys):
    rc, out = _run("calibrate", ["--out", str(tmp_path / "o")], capsys)
    assert rc == 0 and "C = " in out.out
    assert (tmp_path / "o" / "calibration.json").is_file()
    assert (tmp_path / "o" / "calibration.png").stat().st_size > 1000
    assert (tmp_path / "o" / "spectra.png").is_file()


def test_the_fits_rule_range_is_the_refined_oxides_octahedral_edges():
    """R_RULE_NM (the O-O distances beyond which the fast path gives no R_OO for a measured spectrum) is the span of
    the refined reference oxides' mean octahedral edges, to 0.1 pm (fails if a structure is added or changed without
    it)."""
    from sreels.inference.commands import R_RULE_NM
    from sreels.structures import oo

    edges = [oo.oo_distances(oo.load_builtin(k), b.cation, k).oo_octahedral_edge_nm for k, b in oo.BUILTIN.items()]
    assert R_RULE_NM == pytest.approx((min(edges), max(edges)), abs=1e-4)
