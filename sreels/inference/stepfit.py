"""lmfit's ``Model.fit`` (method ``leastsq``) for the few step fits of :mod:`.derived`, without lmfit.

``sreels plan`` runs :func:`.derived.derive` once on the fast path's answer for the noise-free image;
importing lmfit (it pulls scipy.stats and pandas) cost ~1.3 s of its ~7 s, the fits themselves ~0.05 s.
This module does what lmfit 1.3 does for these fits, step by step, so that the numbers are the same
(tests/inference/test_stepfit.py: equal to lmfit within 1e-9 relative, values and errors):

- every parameter has two finite bounds and is mapped to an internal variable by lmfit's MINUIT-style
  transform x = min + (sin(u) + 1) (max - min) / 2 (``Parameter.setup_bounds``; values clipped to the bounds);
- ``scipy.optimize.leastsq`` (MINPACK lmdif) on the residual (data - model) * weights with lmfit's
  settings (ftol = xtol = 1.5e-8, gtol = 0, epsfcn = 1e-10, factor = 100, maxfev = 2 x 2000 (n + 1));
- the covariance cov_x of the internal variables scaled to the external ones by the transform's
  gradient (``Minimizer._int2ext_cov_x``); no scaling by the reduced chi^2 (``scale_covar=False``, the
  only mode :mod:`.derived` uses); stderr = sqrt of its diagonal;
- a parameter given by an expression (``add(name, expr=...)``) takes its value from the fitted ones and
  its error by the delta method with the covariance (lmfit: the ``uncertainties`` package, the same
  linear propagation); only the expressions :mod:`.derived` writes are accepted.

Only the attributes :mod:`.derived` reads exist (``params[name].value/stderr/min/max/vary``,
``success``, ``redchi``, ``nfree``, ``covar``).  lmfit stays the project's fitter elsewhere.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np

#: The expressions :mod:`.derived` writes: text -> (value(p), gradient(p) over the names in ``args``).
_EXPRESSIONS = {
    "centre_nm - width_nm * log((2**nu - 1) / nu)": (
        ("centre_nm", "width_nm", "nu"),
        lambda c, w, nu: c - w * np.log((2 ** nu - 1) / nu),
        lambda c, w, nu: np.array([1.0, -np.log((2 ** nu - 1) / nu),
                                   -w * (2 ** nu * np.log(2.0) / (2 ** nu - 1) - 1.0 / nu)])),
}


class Parameter:
    def __init__(self, name, value=None, min=-np.inf, max=np.inf, vary=True, expr=None):  # noqa: A002
        self.name, self.min, self.max, self.vary, self.expr = name, float(min), float(max), bool(vary), expr
        self.stderr = None
        self.value = value

    @property
    def value(self):
        return self._val

    @value.setter
    def value(self, v):   # lmfit's setter: clipped to the bounds
        self._val = None if v is None else float(np.clip(v, self.min, self.max))


class Parameters(dict):
    def add(self, name, value=None, min=-np.inf, max=np.inf, vary=True, expr=None):  # noqa: A002
        if expr is not None and expr not in _EXPRESSIONS:
            raise NotImplementedError(f"stepfit: expression {expr!r} not supported")
        self[name] = Parameter(name, value, min, max, vary and expr is None, expr)


class FitResult:
    def __init__(self, params, success, chisqr, nfree, covar):
        self.params, self.success, self.nfree, self.covar = params, success, nfree, covar
        self.chisqr = chisqr
        self.redchi = chisqr / max(1, nfree)


class Model:
    """``Model(func)``: ``func(x, *params)`` with the independent variable first, as lmfit's Model."""

    def __init__(self, func):
        self.func = func
        names = list(inspect.signature(func).parameters)
        self.independent, self.param_names = names[0], names[1:]

    def make_params(self, **kw) -> Parameters:
        p = Parameters()
        for name in self.param_names:
            h = kw.get(name, {})
            h = h if isinstance(h, dict) else {"value": h}
            p.add(name, **h)
        return p

    def fit(self, data, params, weights=None, scale_covar=True, **kw):
        from scipy.optimize import leastsq

        if scale_covar:
            raise NotImplementedError("stepfit: only scale_covar=False (what sreels.inference.derived uses)")
        x = kw.pop(self.independent)
        if kw:
            raise TypeError(f"stepfit: unexpected arguments {list(kw)}")
        data = np.asarray(data, np.float64)
        weights = None if weights is None else np.asarray(weights, np.float64)
        params = copy.deepcopy(params)
        free = [n for n in self.param_names if params[n].vary]
        bad = [n for n in free if not (np.isfinite(params[n].min) and np.isfinite(params[n].max))]
        if bad:
            raise NotImplementedError(f"stepfit: parameters {bad} need two finite bounds")
        lo = np.array([params[n].min for n in free])
        hi = np.array([params[n].max for n in free])

        def external(u):
            return [float(np.clip(a + (np.sin(v) + 1) * (b - a) / 2.0, a, b)) for v, a, b in zip(u, lo, hi)]

        def residual(u):
            vals = dict(zip(free, external(u)))
            model = self.func(x, **{n: vals.get(n, params[n].value) for n in self.param_names})
            if not np.all(np.isfinite(model)):
                raise ValueError("The model function generated NaN values and the fit aborted")
            diff = data - model
            if weights is not None:
                diff *= weights
            return np.asarray(diff, np.float64).ravel()

        u0 = []
        for n, a, b in zip(free, lo, hi):
            v = float(np.arcsin(2 * (params[n].value - a) / (b - a) - 1))
            u0.append(0.0 if abs(v) < 1e-15 else v)
        maxfev = 2000 * (len(free) + 1)
        calls = [0]

        def counted(u):
            calls[0] += 1
            if calls[0] > maxfev:   # lmfit aborts the fit after max_nfev evaluations
                raise _Aborted(u)
            return residual(u)

        with np.errstate(all="ignore"):
            try:
                best, cov, _, _, ier = leastsq(counted, np.array(u0), Dfun=None, full_output=1, col_deriv=0,
                                               ftol=1.5e-8, xtol=1.5e-8, gtol=0.0, maxfev=2 * maxfev,
                                               epsfcn=1.e-10, factor=100, diag=None)
            except _Aborted as ab:
                best, cov, ier = ab.u, None, -1
            resid = residual(best)
        for n, v in zip(free, external(best)):
            params[n].value = v
        nfree = resid.size - len(free)
        covar = None
        if cov is not None:
            g = np.array([np.cos(v) * (b - a) / 2.0 for v, a, b in zip(best, lo, hi)])
            covar = cov * np.outer(g, g)
            for p in params.values():
                p.stderr = 0.0
            for i, n in enumerate(free):
                params[n].stderr = float(np.sqrt(covar[i, i]))
        errorbars = covar is not None and all(params[n].stderr > 0 for n in free)
        for p in params.values():
            if p.expr is not None:
                names, f, grad = _EXPRESSIONS[p.expr]
                args = [params[n].value for n in names]
                p.value = f(*args)
                if errorbars and all(n in free for n in names):
                    idx = [free.index(n) for n in names]
                    gr = grad(*args)
                    p.stderr = float(np.sqrt(gr @ covar[np.ix_(idx, idx)] @ gr))
        return FitResult(params, ier in (1, 2, 3, 4), float((resid ** 2).sum()), nfree, covar)


class _Aborted(Exception):
    def __init__(self, u):
        super().__init__("too many function evaluations")
        self.u = np.array(u, copy=True)
