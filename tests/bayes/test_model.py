"""The image model against the forward model: noise-free round trips at tight tolerance."""

import numpy as np
import pytest

from sreels.forward.detector import apply_psf
from sreels.forward.simulate import simulate
from sreels.inference.bayes.data import deconvolve, from_simulation
from sreels.inference.bayes.likelihood import Likelihood
from sreels.inference.bayes.model import ImageModel


@pytest.fixture(scope="module")
def noise_free(small):
    sim = simulate(small["scenario"], small["instrument"], small["detector"], noise_free=True,
                   models=small["models"])
    data = from_simulation(sim)
    return sim, data, Likelihood(ImageModel(data, small["priors"].pset))


def test_noise_free_round_trip_at_truth(small, noise_free):
    """At the true parameters the model reproduces the forward model's image to < 0.05 sigma per bin."""
    sim, data, like = noise_free
    amps, pred, _ = like.fit_rows(small["truth"])
    for wd, p, v in zip(data.windows, pred, data.variance):
        r = (wd.data - p) / np.sqrt(v)
        assert np.max(np.abs(r)) < 0.05, wd.window.name
    # the marginalised amplitudes are the physical ones: background and host amount = t / 100 nm
    # in the parent (no grain near the last rows), 2x background and no host in the Pt collector
    parent = sim.profiles.host_fraction[-1] * sim.profiles.thickness_nm[-1] / 100.0
    np.testing.assert_allclose(amps[-1, 2], parent, rtol=1e-4)
    np.testing.assert_allclose(amps[0, :2], 2.0, rtol=1e-4)
    assert abs(amps[0, 2]) < 1e-4


def test_taylor_shift_matches_exact_fourier_shift(small, noise_free):
    _, data, like = noise_free
    m = like.model
    th = np.repeat(small["truth"][None], 3, 0)
    th[:, m.pset.index("bow_ev")] = [0.0, 0.1, -0.15]  # |delta| up to 0.1 eV: Taylor path
    prof = {k: v @ m.blur.T for k, v in m.profiles(th).items() if k != "r_oo_nm"}
    for k in m.kernels:
        x1, y1 = k.edges(prof, np.full(3, 0.5))
        x2, y2 = k.edges_exact(prof, np.full(3, 0.5))
        scale = np.sqrt(np.abs(x2).max())
        assert np.max(np.abs(x1 - x2)) / scale < 0.02
        assert np.max(np.abs(y1 - y2)) / scale < 0.02


def test_whitening_inverts_the_psf_and_whitens_the_noise(small):
    rng = np.random.default_rng(3)
    lam = np.full((40, 512), 400.0)
    decay = small["detector"].psf_decay
    counts = apply_psf(rng.poisson(lam).astype(float), decay)
    sl = slice(100, 400)
    white, fac, _ = deconvolve(counts, decay, sl, 1)
    np.testing.assert_allclose(deconvolve(apply_psf(lam, decay), decay, sl, 1)[0], lam, rtol=1e-10)
    x = white[:, sl] - lam[:, sl]
    # Poisson variance restored (the PSF had cut it to sum(k^2) ~ 0.35) and neighbours uncorrelated
    assert 0.95 < x.var() / 400.0 < 1.05
    assert abs(np.mean(x[:, 1:] * x[:, :-1]) / x.var()) < 0.03
    assert fac.shape == (40, 300) and np.all(fac > 1)


def test_vectorised_likelihood_matches_single_evaluations(small, noise_free):
    _, _, like = noise_free
    rng = np.random.default_rng(5)
    th = small["truth"] + 1e-3 * rng.standard_normal((4, small["truth"].size)) * np.abs(small["truth"] + 0.01)
    batch = like(th)
    single = np.array([like(t[None])[0] for t in th])
    np.testing.assert_allclose(batch, single, rtol=1e-9)
    assert np.argmax(like(np.vstack([small["truth"], th]))) == 0
