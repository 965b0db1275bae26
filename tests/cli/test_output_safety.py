"""--overwrite replaces only a previous sreels result; results appear whole or not at all."""

import json
import os
import shutil
from pathlib import Path

import pytest

from sreels import signals
from sreels.cli import main
from sreels.errors import SreelsInputError
from sreels.outdir import MANIFEST, check_replaceable, clean_stale, output_directory


def _result(tmp_path, name="res"):
    out = tmp_path / name
    with output_directory(out) as tmp:
        (tmp / "a.csv").write_text("x\n1\n")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.json").write_text("{}")
    return out


def _leftovers(parent):
    return sorted(p.name for p in Path(parent).iterdir() if ".sreels-" in p.name)


def test_result_has_a_manifest_of_its_files(tmp_path):
    out = _result(tmp_path)
    files = json.loads((out / MANIFEST).read_text())["files"]
    assert set(files) == {"a.csv", "sub/b.json"}
    assert files["a.csv"]["bytes"] == 4
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces_a_previous_result(tmp_path):
    out = _result(tmp_path)
    with output_directory(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "new.txt"]
    assert _leftovers(tmp_path) == []


def test_existing_folder_without_overwrite_is_refused(tmp_path):
    out = _result(tmp_path)
    with pytest.raises(SreelsInputError, match="exists; choose another or pass --overwrite"):
        with output_directory(out):
            pass


@pytest.mark.parametrize("extra", ["notes.txt", "raw/scan.dm4"])
def test_overwrite_refuses_a_folder_with_user_files_and_keeps_them(tmp_path, extra):
    out = _result(tmp_path)
    (out / extra).parent.mkdir(exist_ok=True)
    (out / extra).write_text("precious")
    with pytest.raises(SreelsInputError, match=f"did not write: {extra}"):
        with output_directory(out, overwrite=True) as tmp:
            (tmp / "x").write_text("x")
    assert (out / extra).read_text() == "precious" and (out / "a.csv").is_file()
    assert _leftovers(tmp_path) == []


def test_overwrite_refuses_a_folder_sreels_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(SreelsInputError, match=r"not a sreels result.*notes\.txt"):
        with output_directory(out, overwrite=True):
            pass
    assert (out / "notes.txt").read_text() == "precious"


def test_overwrite_refuses_a_result_whose_file_was_edited(tmp_path):
    out = _result(tmp_path)
    (out / "a.csv").write_text("x\n2\n")
    with pytest.raises(SreelsInputError, match="changed since sreels wrote them: a.csv"):
        check_replaceable(out)


def test_overwrite_refuses_the_folder_holding_an_input(tmp_path):
    out = _result(tmp_path)
    with pytest.raises(SreelsInputError, match="holds the input"):
        check_replaceable(out, [out / "a.csv"])
    with pytest.raises(SreelsInputError, match="holds the input"):
        check_replaceable(out, [out])


def test_overwrite_refuses_the_working_folder_and_its_parents(tmp_path, monkeypatch):
    out = _result(tmp_path)
    monkeypatch.chdir(out)
    with pytest.raises(SreelsInputError, match="is the working folder"):
        check_replaceable(Path("."))
    monkeypatch.chdir(out / "sub")
    with pytest.raises(SreelsInputError, match="working folder or contains it"):
        check_replaceable(out)


def test_cli_fit_into_its_own_input_folder_keeps_the_inputs(tmp_path, capsys, monkeypatch):
    sim = tmp_path / "sim"
    assert main(["simulate", "--out", str(sim), "--rows", "20", "--seed", "1"]) == 0
    before = {p.name: p.stat().st_size for p in sim.iterdir()}
    rc = main(["fit", str(sim), "--out", str(sim), "--overwrite", "--no-plot"])
    err = capsys.readouterr().err
    assert rc == 2 and "holds the input(s)" in err and "high.hspy" in err
    assert {p.name: p.stat().st_size for p in sim.iterdir()} == before


def test_cli_out_dot_overwrite_keeps_the_working_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("precious")
    rc = main(["simulate", "--out", ".", "--overwrite", "--rows", "20"])
    assert rc == 2 and "working folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli_user_files_in_out_survive_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["simulate", "--out", str(out), "--rows", "20", "--seed", "2"]) == 0
    (out / "notes.txt").write_text("precious")
    rc = main(["simulate", "--out", str(out), "--rows", "20", "--overwrite"])
    assert rc == 2 and "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious"
    (out / "notes.txt").unlink()
    assert main(["simulate", "--out", str(out), "--rows", "20", "--overwrite", "--seed", "3"]) == 0
    assert json.loads((out / "run.json").read_text())["rng"]["seed"] == 3


def test_out_below_a_file_is_one_line_error(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc = main(["simulate", "--out", str(f / "out"), "--rows", "20"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_place_is_one_line_error(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc = main(["simulate", "--out", str(ro / "out"), "--rows", "20"])
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_out_in_an_impossible_place_is_one_line_error(capsys):
    rc = main(["simulate", "--out", "/proc/sreels-test-absent/out", "--rows", "20"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot create output folder" in err and len(err.strip().splitlines()) == 1


def test_disk_full_during_the_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SreelsInputError, match="No space left on device.*nothing was written"):
        with output_directory(out) as tmp:
            (tmp / "part").write_text("half")
            raise OSError(28, "No space left on device")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_too_little_free_space_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(SreelsInputError, match="not enough disk space"):
        with output_directory(tmp_path / "out", expected_bytes=10**6):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_swallowed_signal_still_stops_the_publication(tmp_path, monkeypatch):
    """A C extension may swallow the KeyboardInterrupt; the recorded signal still aborts."""
    monkeypatch.setattr(signals, "_pending", 15)
    with pytest.raises(signals.Interrupted):
        with output_directory(tmp_path / "out") as tmp:
            (tmp / "a").write_text("a")
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_folder_of_a_dead_process_is_removed(tmp_path, capsys):
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.sreels-tmp-{pid}-abcd1234"
    stale.mkdir()
    (stale / "low.hspy").write_bytes(b"\0" * 1000)
    alive = tmp_path / f".out.sreels-tmp-{os.getpid()}-live0000"
    alive.mkdir()
    other = tmp_path / ".out.mine"
    other.mkdir()
    assert clean_stale(tmp_path / "out") == [stale]
    assert not stale.exists() and alive.exists() and other.exists()
    assert "removed" in capsys.readouterr().err
