import numpy as np
import pytest

from sreels.config import Instrument
from sreels.errors import SreelsInputError
from sreels.inference.bayes.priors import TruncNormal, Uniform, build_priors, load_priors


def test_defaults_cover_every_free_parameter():
    p = build_priors(Instrument())
    assert p.pset.ti3_mode == "threshold"
    assert len(p.pset.names) == 18 and "edge_scale_high" not in p.pset.names  # high is the reference
    b = p.bounds
    assert np.all(b[:, 0] < b[:, 1])


def test_toml_priors_fixed_and_mode(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[model]\nti3_mode = "position"\n[priors]\nli_max_rel = {dist = "uniform", lo = 2, hi = 12}\n'
                 'r_oo_parent_nm = {dist = "normal", mu = 0.28, sigma = 0.01}\n[fixed]\npeak_a_gain_ti3 = 0.0\n')
    p = load_priors(f, Instrument())
    assert p.pset.ti3_mode == "position" and "ti3_boundary_nm" in p.pset.names
    assert "peak_a_gain_ti3" not in p.pset.names and p.pset.fixed == {"peak_a_gain_ti3": 0.0}
    assert p.dists["li_max_rel"] == Uniform(2.0, 12.0)
    assert isinstance(p.dists["r_oo_parent_nm"], TruncNormal)
    th = np.array([[p.dists[n].centre for n in p.pset.names]])
    assert np.isfinite(p(th)).all()
    th[0, p.pset.index("li_max_rel")] = 13.0
    assert p(th)[0] == -np.inf


@pytest.mark.parametrize("text, match", [
    ("[priors]\nli_max = {dist = 'uniform', lo = 1, hi = 2}\n", "did you mean 'li_max_rel'"),
    ("[priors]\nli_max_rel = {dist = 'cauchy', lo = 1, hi = 2}\n", "expected one of"),
    ("[priors]\nli_max_rel = {dist = 'uniform', lo = 3, hi = 2}\n", "lo < hi"),
    ("[fixed]\nbow_ev = 'x'\n", "finite number"),
    ("[model]\nti3_mode = 'nearest'\n", "ti3_mode"),
    ("[sampler]\nwalkers = 3\n", "unknown table"),
])
def test_bad_priors_are_named(tmp_path, text, match):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(SreelsInputError, match=match):
        load_priors(f, Instrument())
