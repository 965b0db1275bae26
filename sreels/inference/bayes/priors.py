"""Priors: small callables returning log-density, settable from TOML.

A priors file has up to three tables (every key optional)::

    [model]
    ti3_mode = "threshold"          # or "position"

    [priors]
    li_max_rel = {dist = "uniform", lo = 1.0, hi = 40.0}
    resolution_fwhm_ev = {dist = "normal", mu = 0.5, sigma = 0.1}
    r_oo_parent_nm = {dist = "truncnormal", mu = 0.28, sigma = 0.01, lo = 0.2, hi = 0.4}

    [fixed]
    peak_a_gain_ti3 = 0.0           # held at this value, not sampled

Every prior has a finite support (``lo``/``hi``; a normal without bounds gets +-8 sigma)
so that the optimiser's bounds and the sampler's support agree.  Defaults are broad
uniform priors on the physical parameters and weakly informative ones on the
nuisances (the instrument's nominal resolution +- 0.2 eV).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from ...config import Instrument, read_toml
from ...errors import SreelsInputError
from .params import PHYSICAL, ParameterSet, make_parameter_set, nuisance_names



@dataclass(frozen=True)
class Uniform:
    """Flat on [lo, hi]: log p = -log(hi - lo)."""

    lo: float
    hi: float

    def __call__(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.lo) & (x <= self.hi)
        return np.where(inside, -np.log(self.hi - self.lo), -np.inf)

    @property
    def centre(self):
        return 0.5 * (self.lo + self.hi)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws."""
        return rng.uniform(self.lo, self.hi, size)


@dataclass(frozen=True)
class TruncNormal:
    """Normal(mu, sigma) restricted to [lo, hi] (unnormalised inside: constants do not matter)."""

    mu: float
    sigma: float
    lo: float
    hi: float

    def __call__(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.lo) & (x <= self.hi)
        return np.where(inside, -0.5 * ((x - self.mu) / self.sigma) ** 2, -np.inf)

    @property
    def centre(self):
        return float(np.clip(self.mu, self.lo, self.hi))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (scipy's truncated normal)."""
        from scipy.stats import truncnorm
        a, b = (self.lo - self.mu) / self.sigma, (self.hi - self.mu) / self.sigma
        return truncnorm.rvs(a, b, loc=self.mu, scale=self.sigma, size=size, random_state=rng)


def _default_priors(instrument: Instrument) -> dict:
    p = {
        "electrode_width_nm": Uniform(20.0, 3000.0),
        "li_max_rel": Uniform(1.0, 40.0),
        "li_rise_nm": Uniform(2.0, 800.0),
        "ti3_li_threshold_rel": Uniform(0.0, 40.0),
        "ti3_li_width_rel": Uniform(0.005, 5.0),
        "ti3_boundary_nm": Uniform(0.0, 3000.0),
        "ti3_width_nm": Uniform(0.5, 500.0),
        "r_oo_parent_nm": Uniform(0.20, 0.40),
        "r_oo_slope_nm": Uniform(-0.05, 0.05),
        "peak_a_ev": Uniform(530.0, 546.0),
        "peak_a_shift_electrode_ev": Uniform(-5.0, 5.0),
        "peak_a_shift_ti3_ev": Uniform(-5.0, 5.0),
        "peak_a_gain_electrode": Uniform(-0.9, 3.0),
        "peak_a_gain_ti3": Uniform(-0.9, 3.0),
        "drift_ev": Uniform(-2.0, 2.0),
        "bow_ev": Uniform(-1.0, 1.0),
        "resolution_fwhm_ev": TruncNormal(instrument.resolution_fwhm_ev, 0.2, 0.05, 3.0),
    }
    for w in instrument.windows:
        p[f"background_r_{w.name}"] = Uniform(0.5, 8.0)
        p[f"edge_scale_{w.name}"] = Uniform(0.1, 10.0)
    return p


@dataclass(frozen=True)
class Priors:
    """Independent priors for the free parameters of ``pset``."""

    pset: ParameterSet
    dists: dict

    def __call__(self, theta) -> np.ndarray:
        """Sum of log-priors; theta (B, P) -> (B,) (or (P,) -> scalar)."""
        theta = np.asarray(theta, dtype=float)
        out = np.zeros(theta.shape[:-1])
        for i, n in enumerate(self.pset.names):
            out = out + self.dists[n](theta[..., i])
        return out

    @property
    def bounds(self) -> np.ndarray:
        """(P, 2) support of every free parameter."""
        return np.array([[self.dists[n].lo, self.dists[n].hi] for n in self.pset.names])

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(size, P) independent draws from the priors of the free parameters."""
        return np.column_stack([self.dists[n].sample(rng, size) for n in self.pset.names])

    def residuals(self, theta) -> np.ndarray:
        """sqrt(-2 log prior) terms for least squares (0 for flat priors)."""
        out = []
        for i, n in enumerate(self.pset.names):
            d = self.dists[n]
            if isinstance(d, TruncNormal):
                out.append((theta[i] - d.mu) / d.sigma)
        return np.array(out)


def _parse_dist(name: str, spec) -> object:
    if not isinstance(spec, dict) or "dist" not in spec:
        raise SreelsInputError(f"priors.{name} = {spec!r}: expected a table like "
                               "{dist = \"uniform\", lo = ..., hi = ...}")
    kind = spec["dist"]
    keys = {"uniform": {"lo", "hi"}, "normal": {"mu", "sigma", "lo", "hi"},
            "truncnormal": {"mu", "sigma", "lo", "hi"}}
    if kind not in keys:
        raise SreelsInputError(f"priors.{name}.dist = {kind!r}: expected one of {sorted(keys)}")
    extra = set(spec) - keys[kind] - {"dist"}
    if extra:
        raise SreelsInputError(f"priors.{name}: unknown key(s) {sorted(extra)} for dist {kind!r}")
    try:
        vals = {k: float(v) for k, v in spec.items() if k != "dist"}
    except (TypeError, ValueError):
        raise SreelsInputError(f"priors.{name} = {spec!r}: expected numbers") from None
    if kind == "uniform":
        if not {"lo", "hi"} <= set(vals):
            raise SreelsInputError(f"priors.{name}: a uniform prior needs lo and hi")
        d = Uniform(vals["lo"], vals["hi"])
    else:
        if not {"mu", "sigma"} <= set(vals) or vals["sigma"] <= 0:
            raise SreelsInputError(f"priors.{name}: a normal prior needs mu and sigma > 0, got {spec!r}")
        d = TruncNormal(vals["mu"], vals["sigma"], vals.get("lo", vals["mu"] - 8 * vals["sigma"]),
                        vals.get("hi", vals["mu"] + 8 * vals["sigma"]))
    if not (np.isfinite(d.lo) and np.isfinite(d.hi) and d.lo < d.hi):
        raise SreelsInputError(f"priors.{name}: expected finite lo < hi, got lo={d.lo}, hi={d.hi}")
    return d


def build_priors(instrument: Instrument, data: dict | None = None) -> Priors:
    """Priors (and the parameter set) from a parsed TOML mapping (None -> defaults)."""
    data = dict(data or {})
    unknown = set(data) - {"model", "priors", "fixed"}
    if unknown:
        raise SreelsInputError(f"priors file: unknown table(s) {sorted(unknown)}; expected [model], "
                               "[priors], [fixed]")
    model = dict(data.get("model", {}))
    extra = set(model) - {"ti3_mode"}
    if extra:
        raise SreelsInputError(f"[model]: unknown key(s) {sorted(extra)}; expected ti3_mode")
    mode = model.get("ti3_mode", "threshold")
    valid = set(PHYSICAL["threshold"]) | set(PHYSICAL["position"]) | set(nuisance_names(instrument))
    for table in ("priors", "fixed"):
        for key in data.get(table, {}):
            if key not in valid:
                near = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise SreelsInputError(f"[{table}] unknown parameter {key!r}{hint}")
    fixed = {}
    for k, v in data.get("fixed", {}).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise SreelsInputError(f"fixed.{k} = {v!r}: expected a finite number")
        fixed[k] = float(v)
    pset = make_parameter_set(instrument, mode, fixed)
    dists = _default_priors(instrument)
    for k, spec in data.get("priors", {}).items():
        dists[k] = _parse_dist(k, spec)
    return Priors(pset, {n: dists[n] for n in pset.names})


def load_priors(path, instrument: Instrument) -> Priors:
    """Read a priors TOML file (None -> defaults)."""
    if path is None:
        return build_priors(instrument)
    return build_priors(instrument, read_toml(path, "priors"))
