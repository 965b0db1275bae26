"""`sreels demo`, the README's main job: simulate, write, read back, invert, report."""

import json
import re

import pytest

from sreels.cli import main


def _z_values(text):
    return [float(z) for z in re.findall(r"\s([+-]\d+\.\d+)\s*$", text, flags=re.M)]


def test_demo_writes_everything_and_recovers_the_study_numbers(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seed", "7"]) == 0
    text = capsys.readouterr().out
    for f in ("simulation/low.hspy", "simulation/high.hspy", "simulation/truth.csv", "simulation/spectrum_images.png",
              "fit/profiles.csv", "fit/summary.json", "fit/profiles.png", "fit/residuals.png"):
        assert (out / f).is_file(), f
    s = json.loads((out / "fit" / "summary.json").read_text())
    # the study's numbers come back (Yamamoto et al. 2014: 400 nm electrode, boundary ~160 nm, c_max 8.5)
    assert s["electrode_width_nm"] == pytest.approx(400, abs=3)
    assert s["ti_boundary_nm"] == pytest.approx(161, abs=1.5)
    # (the DualEELS default: c_Li errors carry the plural tail's noise and model systematic, ~0.3 at c_Li 8.5)
    assert abs(s["li_max_rel"] - 8.5) < 3 * s["li_max_rel_err"] and s["li_max_rel_err"] < 0.5
    # the printed z of the six derived numbers are those of honest errors (|z| < 4)
    z = _z_values(text.split("quantity", 1)[1].split("per-row pulls", 1)[0])
    assert len(z) == 6 and max(abs(v) for v in z) < 4, z


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert main(["demo", "--out", str(tmp_path), "--overwrite"]) == 2
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_demo_replaces_an_earlier_demo_only_when_asked(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "simulation").mkdir(parents=True)
    (out / "simulation" / "old.txt").write_text("earlier demo")
    assert main(["demo", "--out", str(out)]) == 2  # not without --overwrite (README: nothing is overwritten)
    assert "--overwrite" in capsys.readouterr().err and (out / "simulation" / "old.txt").is_file()


@pytest.mark.slow
def test_demo_bayes_puts_both_error_bars_side_by_side(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--bayes"]) == 0
    text = capsys.readouterr().out
    assert (out / "bayes" / "posterior.nc").is_file() and "err ratio" in text
    b = json.loads((out / "bayes" / "summary.json").read_text())
    assert b["converged"] and b["ti_boundary_nm"] == pytest.approx(161.06, abs=0.2)
