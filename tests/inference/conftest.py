import pytest

from tests.inference.fasthelpers import fit_all


@pytest.fixture(scope="session")
def fitted():
    """Each scenario simulated with a fixed seed and inverted once for the whole session."""
    return fit_all()
