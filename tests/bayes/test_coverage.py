"""Coverage (fixed truth, new noise): the full study is validation/05_bayes_coverage.py.

The first test is the small version that runs by default (~20 s); the others are slow
(minutes): ``pytest -m slow tests/bayes``.
"""

import numpy as np
import pytest
from scipy.stats import norm

from sreels.forward.simulate import simulate
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.fit import fit_bayes
from sreels.inference.bayes.params import DERIVED, derived


@pytest.mark.slow  # 23 s: the default suite keeps the MAP pull and CRLB tests of tests/bayes/test_fit.py
def test_small_coverage_of_the_map_intervals(small):
    """16 images of 80 rows: the 18 pulls (MAP - truth) / sd pooled (288) are standard normal
    (sd 1 +- 0.15, mean 0 +- 0.2) and MAP +- sd / +- 1.96 sd cover 68 +- 10 % / 95 +- 4.5 %
    (binomial se 2.7 % / 1.3 %, widened for the correlation of pulls within an image)."""
    pr, truth = small["priors"], small["truth"]
    z = []
    for i in range(16):
        sim = simulate(small["scenario"], small["instrument"], small["detector"], rng=900 + i,
                       models=small["models"])
        m = fit_bayes(from_simulation(sim), pr, sample=False).map
        z.append((m.theta - truth) / m.sd)
    z = np.ravel(z)
    assert abs(z.std() - 1) < 0.15 and abs(z.mean()) < 0.2, (z.mean(), z.std())
    c1, c2 = np.mean(np.abs(z) <= 1), np.mean(np.abs(z) <= norm.ppf(0.975))
    assert abs(c1 - 0.68) < 0.10 and abs(c2 - 0.95) < 0.045, (c1, c2)


@pytest.mark.slow
def test_laplace_intervals_cover_at_nominal_rates(small):
    """40 images of 80 rows: MAP +- z sd covers the truth 68 +- 8 % and 95 +- 5 % (pooled over
    parameters: 18 x 40 intervals; binomial se with per-image correlation ~ 3 %)."""
    pr, truth = small["priors"], small["truth"]
    inside1, inside2 = [], []
    for i in range(40):
        sim = simulate(small["scenario"], small["instrument"], small["detector"], rng=300 + i,
                       models=small["models"])
        m = fit_bayes(from_simulation(sim), pr, sample=False).map
        z = np.abs(m.theta - truth) / m.sd
        inside1.append(z <= norm.ppf(0.84))
        inside2.append(z <= norm.ppf(0.975))
    c1, c2 = np.mean(inside1), np.mean(inside2)
    assert abs(c1 - 0.68) < 0.08 and abs(c2 - 0.95) < 0.05, (c1, c2)


@pytest.mark.slow
def test_posterior_intervals_cover_the_derived_numbers(small):
    """12 images with short emcee runs: the 95 % intervals of the derived numbers hold the truth
    in >= 85 % of 72 cases and the 68 % intervals in 50-85 %."""
    pr, truth = small["priors"], small["truth"]
    dt = derived(pr.pset.as_dict(truth), pr.pset.ti3_mode)
    keys = [k for k in DERIVED if k != "electrode_width_nm"]
    in68, in95 = [], []
    for i in range(12):
        sim = simulate(small["scenario"], small["instrument"], small["detector"], rng=600 + i,
                       models=small["models"])
        fit = fit_bayes(from_simulation(sim), pr, np.random.default_rng(i), walkers=24, max_steps=120,
                        min_ess=300, progress=False)
        d = derived(pr.pset.as_dict(fit.samples.flat), pr.pset.ti3_mode)
        for k in keys:
            q = np.percentile(d[k], [2.5, 16, 84, 97.5])
            in68.append(q[1] <= dt[k] <= q[2])
            in95.append(q[0] <= dt[k] <= q[3])
    assert 0.5 <= np.mean(in68) <= 0.85 and np.mean(in95) >= 0.85, (np.mean(in68), np.mean(in95))
