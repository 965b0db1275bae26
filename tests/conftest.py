from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The measured reference data beside the project (never copied into it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"measured reference data not found at {SHARED_DATA} (it lives beside the project)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _agg_backend(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield
