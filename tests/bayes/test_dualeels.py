"""The Bayesian path on DualEELS images: plural scattering by forward convolution with each row's
measured low loss (:mod:`sreels.inference.bayes.plural`, experimental, ``plural=True``).  Noise-free
checks only: the MAP pulls on noisy images are measured by validation/16_bayes_dualeels_pulls.py and
are not yet within target (c_Li errors too narrow), so there is no pull test here."""

import dataclasses

import numpy as np
import pytest

from sreels.config import Detector, Instrument, Scenario
from sreels.forward.simulate import simulate, window_models
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.likelihood import Likelihood
from sreels.inference.bayes.model import ImageModel
from sreels.inference.bayes.params import default_values
from sreels.inference.bayes.priors import build_priors

ROWS = 40


@pytest.fixture(scope="module")
def dual():
    """A noise-free DualEELS image (default instrument: plural scattering, low-loss window), t/lambda ~0.57,
    prepared with and without its low loss."""
    sc = dataclasses.replace(Scenario(), rows=ROWS)
    inst = Instrument()
    sim = simulate(sc, inst, Detector(), noise_free=True, models=window_models(inst))
    pr = build_priors(inst)
    tv = default_values(sc, inst)
    truth = np.array([tv[n] for n in pr.pset.names])
    like = Likelihood(ImageModel(from_simulation(sim, plural=True), pr.pset))
    single = Likelihood(ImageModel(from_simulation(sim), pr.pset))
    return like, single, pr, truth


def _rms(like, theta):
    _, pred, _ = like.fit_rows(theta)
    return [float(np.sqrt(np.mean(((wd.data - p) ** 2 * w)[wd.mask])))
            for wd, p, w in zip(like.data.windows, pred, like.w)]


def test_noise_free_dualeels_image_is_described_at_the_truth(dual):
    """At the true parameters the plural model leaves whitened residuals of a few hundredths of the
    shot noise in both windows; the single-scattering model on the same image leaves > 0.2 sigma, so
    the test fails if the plural convolution, the Li-K tail or the extra background columns are dropped."""
    like, single, pr, truth = dual
    assert len(like.data.plural) == 2 and like.data.plural[0].tail is not None
    assert like.data.plural[1].kernel_tf is not None
    rms = _rms(like, truth)
    assert max(rms) < 0.04, rms
    rms1 = _rms(single, truth)
    assert min(rms1) > 0.2, rms1


def test_noise_free_round_trip_along_each_study_parameter(dual):
    """-2 ln L along one parameter at a time (the others at the truth) is a parabola whose minimum lies
    within 0.15 of its own standard deviation of the truth, for the parameters behind the study's numbers
    (a noise-free round trip of the plural model at t/lambda 0.57)."""
    like, _, pr, truth = dual
    names = ["electrode_width_nm", "li_max_rel", "li_rise_nm", "ti3_li_threshold_rel", "r_oo_parent_nm",
             "r_oo_slope_nm", "peak_a_ev"]
    js = [pr.pset.names.index(n) for n in names]
    # curvature from +-h (relative 1e-3), then 9 points over +-2 sd: all in two batched calls
    h = 1e-3 * np.maximum(np.abs(truth[js]), 1e-3)
    th = np.tile(truth, (3 * len(js), 1))
    for i, j in enumerate(js):
        th[3 * i:3 * i + 3, j] += np.array([-h[i], 0.0, h[i]])
    ll = like(th, profile=True).reshape(len(js), 3)
    sd = np.sqrt(h ** 2 / (2 * ll[:, 1] - ll[:, 0] - ll[:, 2]))
    x = np.linspace(-2, 2, 9)
    th = np.tile(truth, (9 * len(js), 1))
    for i, j in enumerate(js):
        th[9 * i:9 * i + 9, j] += x * sd[i]
    m2 = -2 * like(th, profile=True).reshape(len(js), 9)
    best = np.array([-c[1] / (2 * c[0]) for c in (np.polyfit(x, m, 2) for m in m2)])  # in sd
    assert np.all(np.abs(best) < 0.15), dict(zip(names, np.round(best, 3)))


def test_without_the_low_loss_the_model_is_the_single_scattering_one(dual):
    """By default (plural=False, as without a low-loss window) the single-scattering data: no plural terms."""
    _, single, _, _ = dual
    assert single.data.plural == ()
    assert single.n_cols == len(single.data.windows) + 2
