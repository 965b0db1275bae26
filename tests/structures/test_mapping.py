"""R(c_Li) mappings for the forward model."""

import numpy as np
import pytest

from sreels.errors import SreelsInputError
from sreels.structures.mapping import MODELS, r_oo_nm_from_li, vegard_endpoints


def test_linear_law_endpoints_and_vectorised():
    li = np.array([[1.0, 8.5], [4.75, 0.0]])
    r = r_oo_nm_from_li(li)
    assert r.shape == li.shape
    np.testing.assert_allclose(r[0], [0.280, 0.310])
    assert r[1, 0] == pytest.approx(0.295)
    assert r[1, 1] < 0.280  # extrapolated below the parent
    assert r_oo_nm_from_li(3.0, r_parent_nm=0.27, r_max_nm=0.29, li_max_rel=3.0) == pytest.approx(0.29)


def test_vegard_end_members():
    from sreels.structures import nasicon

    r0, r2, src = vegard_endpoints()
    # the computed end members (rescaled), not the study's quoted values
    assert "computed" in src
    (c0, c2), _ = nasicon.r_oo_nm_from_x(np.array([0.0, 2.0]))
    assert (r0, r2) == pytest.approx((c0, c2), abs=1e-12)
    assert r0 == pytest.approx(0.272, abs=0.003) and 0.282 < r2 < 0.292
    r = r_oo_nm_from_li(np.array([1.0, 2.0, 3.0, 5.0]), model="vegard")
    np.testing.assert_allclose(r[:3], [r0, (r0 + r2) / 2, r2])
    assert r[3] == pytest.approx(r0 + 2 * (r2 - r0))  # linear extrapolation beyond x = 2
    assert np.all(np.diff(r) > 0)


def test_vegard_falls_back_to_the_study_without_computed_structures(monkeypatch):
    from sreels.structures import nasicon

    monkeypatch.setattr(nasicon, "available", lambda: False)
    r0, r2, src = vegard_endpoints()
    assert (r0, r2) == (0.272, 0.289) and "study" in src
    with pytest.raises(SreelsInputError, match="computed NASICON"):
        r_oo_nm_from_li(1.0, model="structures")


def test_bad_model_and_input():
    with pytest.raises(SreelsInputError) as exc:
        r_oo_nm_from_li(1.0, model="quadratic")
    assert "quadratic" in str(exc.value) and all(m in str(exc.value) for m in MODELS)
    with pytest.raises(SreelsInputError, match="li_rel"):
        r_oo_nm_from_li(-1.0)
    with pytest.raises(SreelsInputError, match="parameters"):
        r_oo_nm_from_li(1.0, model="linear", slope=2)
