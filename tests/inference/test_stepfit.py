"""sreels.inference.stepfit (lmfit's leastsq path for derive's step fits, without lmfit's import) gives
derive's numbers as lmfit does: values and errors within 1e-9 relative; the Ti3+/Ti4+ boundary's error
(the Richards fit's boundary is an expression of its parameters) within 1e-6, because lmfit
differentiates that expression numerically (uncertainties.wrap) where stepfit does it analytically."""

import numpy as np
import pytest

from sreels.forward.profiles import li_step
from sreels.inference.derived import derive


def _profiles(rng, asym: float = 0.0, two_bumps: bool = False):
    """Per-row columns of an interface: c_Li an erfc step (6.5x, 400 nm), Ti3+ a step at ~160 nm (made
    asymmetric by ``asym``), R_OO rising with c_Li; Gaussian noise of the stated errors."""
    y = np.arange(-20.0, 1200.0, 10.0)
    li = 1 + 5.5 * li_step(y, 400.0, 40.0)
    if two_bumps:
        li = li + 4.0 * np.exp(-0.5 * ((y - 800) / 60) ** 2)
    f3 = 0.5 * (1 - np.tanh((y - 160.0) / 25.0)) ** (1 + asym) / 2 ** asym
    r = 0.280 + 0.004 * (li - 1) / 5.5
    le, fe, re_ = np.full(y.size, 0.08), np.full(y.size, 0.03), np.full(y.size, 0.0015)
    cols = {"li_rel": li + rng.normal(0, 1, y.size) * le, "li_rel_err": le, "li_norm_rel_err": np.full(y.size, 0.01),
            "ti3_fraction": f3 + rng.normal(0, 1, y.size) * fe, "ti3_fraction_err": fe,
            "r_oo_nm": r + rng.normal(0, 1, y.size) * re_, "r_oo_nm_err": re_,
            "parent": (y > 900).astype(float)}
    return y, cols, y >= 0


@pytest.mark.parametrize("seed, asym, two_bumps", [(0, 0.0, False), (1, 0.6, False), (2, 1.5, False),
                                                    (3, 0.0, True)])
def test_derive_without_lmfit_equals_lmfit(seed, asym, two_bumps):
    y, cols, ok = _profiles(np.random.default_rng(seed), asym, two_bumps)
    a = derive(y, cols, ok)
    b = derive(y, cols, ok, lmfit=False)
    assert a["notes"] == b["notes"]
    assert set(a) == set(b)
    finite = [k for k in a if k != "notes" and np.isfinite(a[k])]
    assert len(finite) >= (4 if two_bumps else 12) and all(np.isfinite(b[k]) for k in finite)
    assert all(np.isnan(b[k]) for k in a if k != "notes" and k not in finite)
    for k in finite:
        tol = 1e-6 if k in ("ti_boundary_nm_err", "li_at_ti_boundary_rel_err") else 1e-9
        assert b[k] == pytest.approx(a[k], rel=tol, abs=1e-300), k
    if two_bumps:  # the c_Li step withheld (at a bound) or its errors scaled: both paths say the same
        assert any("not one step" in n or "ended at a bound" in n for n in a["notes"])


def test_stepfit_fit_result_equals_lmfit():
    """One Richards fit (three bounded parameters, an expression parameter): best values, errors, covariance,
    reduced chi^2, success as lmfit's Model.fit."""
    import lmfit

    from sreels.inference import stepfit
    from sreels.inference.derived import _ti_richards

    rng = np.random.default_rng(7)
    y = np.linspace(0, 400, 60)
    e = np.full(y.size, 0.02)
    f = _ti_richards(y, 150.0, 20.0, 2.5) + rng.normal(0, 1, y.size) * e
    out = []
    for M in (lmfit.Model, stepfit.Model):
        m = M(_ti_richards)
        p = m.make_params(centre_nm=dict(value=140.0, min=0.0, max=400.0), width_nm=dict(value=15.0, min=0.1, max=400),
                          nu=dict(value=1.0, min=0.05, max=20.0))
        p.add("boundary_nm", expr="centre_nm - width_nm * log((2**nu - 1) / nu)")
        out.append(m.fit(f, p, y=y, weights=1 / e, scale_covar=False))
    a, b = out
    assert a.success and b.success
    for k in ("centre_nm", "width_nm", "nu"):
        assert b.params[k].value == pytest.approx(a.params[k].value, rel=1e-12)
        assert b.params[k].stderr == pytest.approx(a.params[k].stderr, rel=1e-9)
    assert b.params["boundary_nm"].value == pytest.approx(a.params["boundary_nm"].value, rel=1e-12)
    assert b.params["boundary_nm"].stderr == pytest.approx(a.params["boundary_nm"].stderr, rel=1e-6)
    np.testing.assert_allclose(b.covar, a.covar, rtol=1e-9)
    assert (b.redchi, b.nfree) == pytest.approx((a.redchi, a.nfree), rel=1e-12)
    with pytest.raises(NotImplementedError):
        stepfit.Parameters().add("x", expr="a + b")
