"""Words agree with behaviour: the reference documents every output column, status flag and
command; --help gives the defaults; README and CLI agree."""

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from sreels.cli import COMMANDS, build_parser
from sreels.config import Scenario
from sreels.forward.simulate import simulate
from sreels.inference.fast import fit_image
from sreels.inference.report import profile_table
from tests.inference.fasthelpers import windows_of

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "reference.rst").read_text()
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def result():
    return fit_image(windows_of(simulate(Scenario(rows=40), rng=2)))


def test_every_profiles_column_is_documented(result):
    for col in profile_table(result):
        base = col[:-4] if col.endswith("_err") and f"``{col}``" not in REFERENCE else col
        assert f"``{base}``" in REFERENCE, f"profiles.csv column {col} is not in docs/reference.rst"


def test_every_status_flag_is_documented(result):
    flags = {f for s in result.status for f in str(s).split("|")}
    assert flags  # ok and no_ti/no_o (the Pt rows)
    for f in flags:
        edge = re.match(r"(li|ti|o)_(\w+)$", f)
        documented = f"``{f}``" in REFERENCE or (edge and f"``{{li,ti,o}}_{edge.group(2)}``" in REFERENCE)
        assert documented, f"status flag {f} is not in docs/reference.rst"


def test_every_command_is_in_the_reference_and_the_readme():
    for name in COMMANDS:
        assert f".. clihelp:: {name}" in REFERENCE
        assert f"sreels {name}" in README


@pytest.mark.parametrize("command", ["simulate", "fit", "demo", "plan"])
def test_help_states_every_default(command):
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for a in sub._actions:
        if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and not a.required:
            assert "default" in (a.help or ""), f"{command} {a.option_strings[0]}: default {a.default!r} not stated"


def test_help_names_only_things_that_exist():
    parser = build_parser("simulate")
    sub = next(a for a in parser._actions if a.dest == "command").choices["simulate"]
    text = sub.format_help()
    for path in re.findall(r"(examples/[\w.]+)", text):
        assert (ROOT / path).exists(), path


def test_readme_builds_the_docs_the_way_ci_does():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "sphinx-build -W -b html docs docs/_build/html" in README
    assert "sphinx-build -W -b html docs" in ci and ".[test,docs]" in ci


def test_dir_lists_the_api():
    import sreels
    assert {"simulate", "fit_image", "load_measurement", "Scenario"} <= set(dir(sreels))
    assert np.all([callable(getattr(sreels, n)) for n in sreels.__all__])
