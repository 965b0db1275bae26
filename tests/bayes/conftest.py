import dataclasses

import numpy as np
import pytest

from sreels.config import Detector, Instrument, Scenario
from sreels.forward.simulate import simulate, window_models
from sreels.inference.bayes.data import from_simulation
from sreels.inference.bayes.fit import fit_bayes
from sreels.inference.bayes.params import default_values
from sreels.inference.bayes.priors import build_priors

#: A shorter slit (80 rows, y = -45..405 nm) keeps the default test run fast; it still holds
#: the Pt edge, the Ti3+ boundary and the whole electrode.
ROWS = 80


@pytest.fixture(scope="session")
def small():
    sc = dataclasses.replace(Scenario(), rows=ROWS)
    # the Bayesian model's own data: single scattering (DualEELS data are made so first, see test_dualeels)
    inst, det = Instrument(plural_scattering=False, lowloss_window=False), Detector()
    models = window_models(inst)
    priors = build_priors(inst)
    tv = default_values(sc, inst)
    truth = np.array([tv[n] for n in priors.pset.names])
    return {"scenario": sc, "instrument": inst, "detector": det, "models": models, "priors": priors,
            "truth": truth}


@pytest.fixture(scope="session")
def small_fit(small):
    sim = simulate(small["scenario"], small["instrument"], small["detector"], rng=11, models=small["models"])
    fit = fit_bayes(from_simulation(sim), small["priors"], sample=False)
    return sim, fit
