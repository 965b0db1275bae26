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


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread_per_worker():
    """Under pytest-xdist (the default ``-n auto``) every worker is a process: one BLAS thread each,
    so that N workers on N cores do not fight over 2N threads (which makes small eigenproblems
    10-100x slower, measured)."""
    import os

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    from sreels.resources import single_threaded_blas

    with single_threaded_blas():
        yield
