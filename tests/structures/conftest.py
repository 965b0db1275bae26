"""Shared fixtures: the measured-data folder, skipped with a reason when absent."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir():
    if not DATA.is_dir():
        pytest.skip(f"measured spectra folder {DATA} (../shared/data from the repo root) is absent")
    return DATA
