"""Our files in the ecosystem: HyperSpy/exspy open the images with everything a model needs,
and the noise variance they estimate from our metadata is the detector's."""

import warnings

import numpy as np
import pytest

from sreels.config import Scenario
from sreels.forward.output import write_simulation
from sreels.forward.simulate import simulate

SC = Scenario(rows=40)


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("eco") / "sim"
    write_simulation(simulate(SC, rng=11), d)
    return d


def _load(path):
    hs = pytest.importorskip("hyperspy.api")
    pytest.importorskip("exspy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hs.load(str(path))


def test_hspy_metadata_is_complete(simdir):
    from rsciio.hspy import file_reader
    for name, elements in (("low", {"Ge", "Ti", "Li", "Al", "Si", "P"}), ("high", {"Ti", "O"})):
        md = file_reader(str(simdir / f"{name}.hspy"))[0]["metadata"]
        tem = md["Acquisition_instrument"]["TEM"]
        assert tem["beam_energy"] == 300.0 and tem["convergence_angle"] == 0.0
        assert tem["Detector"]["EELS"]["collection_angle"] == 10.0 and tem["Detector"]["EELS"]["exposure"] > 0
        assert set(md["Sample"]["elements"]) == elements
        vlm = md["Signal"]["Noise_properties"]["Variance_linear_model"]
        assert vlm["gain_factor"] == 1.55 and 0 < vlm["correlation_factor"] < 1 and vlm["gain_offset"] > 0


def test_exspy_builds_a_model_from_our_file(simdir):
    s = _load(simdir / "high.hspy")
    assert type(s).__name__ == "EELSSpectrum"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = s.inav[30].create_model(GOS="hydrogenic")  # the default GOSH tables are a download
        m.fit()
    names = [c.name for c in m]
    assert "Ti_L3" in names and "O_K" in names and "PowerLaw" in names
    assert m.components.O_K.intensity.value > 0


def test_exspy_noise_variance_is_the_detectors(simdir):
    """The variance HyperSpy estimates from our metadata equals the pixel variance of the
    detector readout around the noise-free image (chi2 per pixel ~ 1, 40 x 2048 pixels)."""
    s = _load(simdir / "high.hspy")
    s.estimate_poissonian_noise_variance(expected_value=None)
    expected = simulate(SC, rng=11, noise_free=True).windows["high"].counts
    var = (expected * 1.55 + s.metadata.Signal.Noise_properties.Variance_linear_model.gain_offset) * \
        s.metadata.Signal.Noise_properties.Variance_linear_model.correlation_factor
    est = s.metadata.Signal.Noise_properties.variance.data
    assert np.allclose(np.median(est / var), 1.0, atol=0.02)  # from the data ~ from the truth
    sim = simulate(SC, rng=11).windows["high"].counts
    chi2 = np.mean((sim - expected) ** 2 / var)
    assert 0.95 < chi2 < 1.05
    # gain 1 (HyperSpy's default without our metadata) would be wrong by the gain
    assert not 0.95 < np.mean((sim - expected) ** 2 / (expected + 9.0)) < 1.05
