"""R_OO(x) of Li(1+x)Ti2(PO4)3 from the computed NASICON structures, with its uncertainty.

The structures (``data/LixTi2PO43_x*.cif``) were relaxed with the universal potential CHGNet
by ``validation/relax_nasicon.py`` (cell and positions, several Li arrangements per x, the
lowest-energy one kept); ``data/nasicon_series.json`` is that script's summary (arrangement
spreads, the rescaling to the published LiTi2(PO4)3 cell, the reference oxides).  Nothing here
imports torch: the package only reads those files.

Mean TiO6 octahedral edge R(x) (the study's definition, :mod:`.oo`):

``raw``
    of the relaxed structure (lowest-energy arrangement).
``rescaled`` (used by default)
    the relaxed cell strained so that the x = 0 cell is the published one (a = 8.513,
    c = 20.878 A, JCPDS 35-0754): the potential's bias measured on LiTi2(PO4)3 itself is
    removed; the same strain is applied at every x.

Uncertainty of R(x) (:func:`budget`), in quadrature:

* ``arrangement``: standard deviation of the edge over the relaxed Li arrangements at that x;
* ``transfer``: the potential's bias is not the same in every compound (Ti3+ vs Ti4+, other
  frameworks): the prediction standard deviation of a new compound's bias from the (relaxed /
  refined) edge ratios of the n reference oxides in ``data/`` (rutile, anatase, corundum,
  SrTiO3, rock salts, ...), s sqrt(1 + 1/n) with s their standard deviation, times R;
* ``cell``: the published LiTi2(PO4)3 c spans 20.84-20.91 A between refinements (as quoted in
  issue 15): +-0.17 % of R.

The potential's bias, quoted (:meth:`NasiconSeries.bias_interval`): the oxides' mean ratio - 1 with
the prediction interval of a new compound, mean +- t(n-1) s sqrt(1 + 1/n) (Student's t: the mean and
s are estimated from the n oxides).  It is tested on held-out oxides by leave-one-out
(:meth:`NasiconSeries.leave_one_out`): each oxide against the interval from the other n - 1.

The expansion R(x) - R(x0) (:func:`expansion`) has no ``cell`` term; its ``transfer`` term
assumes the potential's bias may drift linearly with x by up to the compound-to-compound
scatter over the end members' interval (dx = 2): sigma_t R(x) abs(x - x0) / 2.  It grows with
the extrapolation beyond the computed series, as it should.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from ..errors import SreelsInputError
from .oo import data_dir

SERIES_JSON = "nasicon_series.json"
#: Relative spread of the published LiTi2(PO4)3 c (20.84-20.91 A, half range / mean), issue 15.
CELL_REL_ERR = 0.035 / 20.875


@dataclass(frozen=True)
class NasiconSeries:
    """The computed series, arrays over x (shape (n,)).

    x : Li(1+x)Ti2(PO4)3
    edge_nm, edge_rescaled_nm : mean TiO6 edge, raw and rescaled (see module docstring)
    arrangement_std_nm : spread of the rescaled edge over Li arrangements (0 where one)
    n_arrangements : relaxed arrangements per x
    oxide_ratios : {name: relaxed / refined mean octahedral edge}
    potential_bias : raw / rescaled edge of LiTi2(PO4)3 - 1 (the potential's own bias there)
    meta : the summary file as read
    """

    x: np.ndarray
    edge_nm: np.ndarray
    edge_rescaled_nm: np.ndarray
    arrangement_std_nm: np.ndarray
    n_arrangements: np.ndarray
    oxide_ratios: dict
    potential_bias: float
    meta: dict

    @property
    def transfer_rel_err(self) -> float:
        """Prediction standard deviation of a new compound's bias, s sqrt(1 + 1/n), s the standard deviation
        of the n reference oxides' edge ratios (the bias' compound-to-compound scatter)."""
        r = np.array(list(self.oxide_ratios.values()))
        return float(r.std(ddof=1) * np.sqrt(1.0 + 1.0 / r.size)) if r.size > 1 else 0.01

    def bias_interval(self, confidence: float = 0.95, leave_out: str | None = None) -> tuple:
        """The potential's relative bias on a new oxide's mean octahedral edge: (mean, lo, hi) of the
        reference oxides' ratios - 1 (without ``leave_out``), the interval mean +- t s sqrt(1 + 1/n) with
        t the two-sided ``confidence`` quantile of Student's t with n - 1 degrees of freedom."""
        from scipy import stats

        r = np.array([v for k, v in self.oxide_ratios.items() if k != leave_out]) - 1.0
        if r.size < 3:
            raise SreelsInputError(f"{r.size} reference oxides: a prediction interval needs at least 3")
        half = stats.t.ppf(0.5 + confidence / 2.0, r.size - 1) * r.std(ddof=1) * np.sqrt(1.0 + 1.0 / r.size)
        return float(r.mean()), float(r.mean() - half), float(r.mean() + half)

    def leave_one_out(self, confidence: float = 0.95) -> dict:
        """Each reference oxide held out: {name: (its bias, lo, hi, inside, z)}, the interval of
        :meth:`bias_interval` from the other oxides and z = (bias - their mean) / (their prediction sd)."""
        out = {}
        for name, ratio in self.oxide_ratios.items():
            m, lo, hi = self.bias_interval(confidence, leave_out=name)
            others = np.array([v for k, v in self.oxide_ratios.items() if k != name]) - 1.0
            sd = others.std(ddof=1) * np.sqrt(1.0 + 1.0 / others.size)
            b = ratio - 1.0
            out[name] = (float(b), lo, hi, bool(lo <= b <= hi), float((b - m) / sd))
        return out

    def slope_nm_per_li(self, rescaled: bool = True) -> float:
        """Least-squares slope of R(x) (nm per Li per formula unit) over the series."""
        y = self.edge_rescaled_nm if rescaled else self.edge_nm
        return float(np.polyfit(self.x, y, 1)[0])


@functools.lru_cache(maxsize=1)
def load_series() -> NasiconSeries:
    """The computed series from ``data/nasicon_series.json``; the edges are re-measured on the
    shipped CIFs (the kept arrangement per x) and must agree with the summary.

    Raises
    ------
    SreelsInputError
        If the summary or a CIF it names is missing, or they disagree.
    """
    from .oo import octahedral_edges_nm, read_structure

    path = data_dir() / SERIES_JSON
    if not path.is_file():
        raise SreelsInputError(f"{path.name} not found in {data_dir()}: the computed NASICON structures are not "
                               "installed (run validation/relax_nasicon.py)")
    meta = json.loads(path.read_text())
    rows = sorted(meta["series"], key=lambda e: e["x"])
    x = np.array([e["x"] for e in rows], float)
    edge = []
    for e in rows:
        cif = data_dir() / e["file"]
        r = float(octahedral_edges_nm(read_structure(cif), "Ti", e["file"]).mean())
        if abs(r - e["edge_nm"]) > 1e-5:
            raise SreelsInputError(f"{cif.name}: mean TiO6 edge {r:.5f} nm, but {path.name} says {e['edge_nm']:.5f}")
        edge.append(r)
    edge = np.array(edge)
    resc = np.array([e["edge_rescaled_nm"] for e in rows])
    arr = np.array([e.get("edge_rescaled_std_nm", 0.0) for e in rows])
    i0 = int(np.argmin(np.abs(x)))
    return NasiconSeries(x=x, edge_nm=edge, edge_rescaled_nm=resc, arrangement_std_nm=arr,
                         n_arrangements=np.array([e["n_arrangements"] for e in rows]),
                         oxide_ratios={o["name"]: o["ratio"] for o in meta.get("oxides", [])},
                         potential_bias=float(edge[i0] / resc[i0] - 1.0), meta=meta)


def available() -> bool:
    return (data_dir() / SERIES_JSON).is_file()


def _interp(xq, x, y):
    """Piecewise-linear in x inside the series, the least-squares line of the last three points beyond
    its ends (extrapolation, as the study's electrode reaches far beyond the computed x)."""
    xq = np.asarray(xq, float)
    out = np.interp(xq, x, y)
    hi, lo = xq > x[-1], xq < x[0]
    if hi.any():
        k, c = np.polyfit(x[-3:], y[-3:], 1)
        out = np.where(hi, y[-1] + k * (xq - x[-1]), out)
    if lo.any():
        k, c = np.polyfit(x[:3], y[:3], 1)
        out = np.where(lo, y[0] + k * (xq - x[0]), out)
    return out


def r_oo_nm_from_x(x, rescaled: bool = True, series: NasiconSeries | None = None):
    """Mean TiO6 edge R (nm) of Li(1+x)Ti2(PO4)3 and its uncertainty; any shape.

    Returns
    -------
    (r_nm, r_err_nm) : ndarrays of the shape of ``x``
    """
    s = series or load_series()
    y = s.edge_rescaled_nm if rescaled else s.edge_nm
    r = _interp(x, s.x, y)
    b = budget(x, s)
    err = np.sqrt(b["arrangement"] ** 2 + b["transfer"] ** 2 + b["cell"] ** 2) if rescaled else \
        np.sqrt(b["arrangement"] ** 2 + (r * s.potential_bias) ** 2)
    return r, err


def budget(x, series: NasiconSeries | None = None) -> dict:
    """The three uncertainty terms (nm) of the rescaled R(x) at ``x`` (see the module docstring)."""
    s = series or load_series()
    r = _interp(x, s.x, s.edge_rescaled_nm)
    arr = np.interp(np.asarray(x, float), s.x, s.arrangement_std_nm)  # held at the ends beyond the series
    return {"arrangement": arr, "transfer": r * s.transfer_rel_err, "cell": r * CELL_REL_ERR}


def expansion(x, x0: float, series: NasiconSeries | None = None):
    """R(x) - R(x0) (nm) and its uncertainty: arrangement spreads of both ends and a drift of the
    potential's bias with x (module docstring)."""
    s = series or load_series()
    x = np.asarray(x, float)
    r1, r0 = _interp(x, s.x, s.edge_rescaled_nm), _interp(x0, s.x, s.edge_rescaled_nm)
    a1 = np.interp(x, s.x, s.arrangement_std_nm)
    a0 = np.interp(np.asarray(x0, float), s.x, s.arrangement_std_nm)
    drift = s.transfer_rel_err * r1 * np.abs(x - x0) / 2.0
    return r1 - r0, np.sqrt(a1 ** 2 + a0 ** 2 + drift ** 2)


def x_for_expansion(delta_nm, delta_err_nm, x0: float, series: NasiconSeries | None = None):
    """The x at which R(x) - R(x0) equals ``delta_nm``, and its error (from delta's error and the
    expansion's own); inverts :func:`expansion` on a fine grid (R rises with x)."""
    s = series or load_series()
    grid = np.linspace(min(s.x[0], x0) - 2.0, s.x[-1] + 20.0, 4001)
    d, de = expansion(grid, x0, s)
    if np.any(np.diff(d) <= 0):
        raise SreelsInputError("the computed R(x) does not rise monotonically: cannot invert it")
    dq = np.asarray(delta_nm, float)
    xq = np.interp(dq, d, grid)
    slope = np.gradient(d, grid)
    k = np.interp(xq, grid, slope)
    err_model = np.interp(xq, grid, de)
    return xq, np.hypot(np.asarray(delta_err_nm, float), err_model) / k
